"""torch's child protocol in a forked child: the testing layer's part of isolation.

Under ``--mpi-isolate`` a test of torch's ``MultiProcessTestCase`` family runs as
without it -- the rank does ``setUp`` (its rank, the agreed ``file_name`` and
TEMP_DIR), judges the exit code and tears down -- except that the child's work,
the class's ``_run`` (a fresh instance, the body, the process group the class
starts itself), runs in a child forked from the rank's warm template
(``isolation``) instead of in the rank. That is torch's own process per rank
per test, without torch's cost of spawning and importing it: global state the
body leaves (an RPC agent, RRef contexts, module globals) dies with the child.

``MultiProcContinuousTest`` is not forked: it keeps one group per class on
purpose. ``run_child`` is the entry the template's child calls.
"""

from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

from . import compat, protocol

if TYPE_CHECKING:
    import pytest

__all__ = ["ENTRY", "forker", "run_child", "runs_in_children"]

ENTRY = "mpidist.testing.forked:run_child"


def runs_in_children(cls: type | None) -> bool:
    """Whether torch's runner runs each test of ``cls`` in children (``_run``)."""
    base = getattr(sys.modules.get(protocol.TORCH_MODULE), "MultiProcessTestCase", None)
    return (compat.is_spawning_class(cls) and isinstance(base, type)
            and isinstance(cls, type) and issubclass(cls, base))


def forker(item: pytest.Item) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """What forks the item's torch child, or None when the item is not isolated so."""
    from ..runner.markers import ISOLATED

    isolation: Any = item.config.pluginmanager.get_plugin("mpidist-isolation")
    if isolation is None or item.stash.get(ISOLATED, "") != "torch":
        return None

    def fork(call: dict[str, Any]) -> dict[str, Any]:
        return dict(isolation.run_torch(item, {"entry": ENTRY, "torch": call}))

    return fork


def run_child(item: pytest.Item, request: dict[str, Any]) -> dict[str, Any]:
    """In the template's child: torch's ``_run`` for the request's rank and test;
    the exit code, the body's traceback and its skip reason."""
    compat.install()  # mpidist's run_test: it keeps the body's exception for the report
    call = request["torch"]
    code, child = protocol.run_fresh(getattr(item, "cls"), call["rank"], call["name"],  # noqa: B009
                                     call["file_name"], call["fake_pg"])
    error = child.error
    return {"code": code, "skip": str(child.skip) if child.skip is not None else None,
            "error": ("".join(traceback.format_exception(error)).rstrip()
                      if error is not None else None)}
