"""Who writes what a session leaves behind: rank 0, from the merged results.

Every rank runs the same pytest session with the same plugins and the same
command line, so every plugin that writes a file (``--html``, ``--report-log``,
``--json-report``, ``--junitxml``, pytest's cache, ``--log-file``, a database)
would write it once per rank, and the last rank to finish -- one that logged
nothing -- would win. The ecosystem already has a word for "not the process that
reports": pytest-xdist's workers carry ``config.workerinput``, and pytest itself
(junitxml, the cache, stepwise) and the reporting plugins (pytest-html,
pytest-reportlog, pytest-json-report) open nothing where it is set. So ranks > 0
and every isolation template carry it, set before any plugin's
``pytest_configure``: a plugin that is right under pytest-xdist is right under
mpidist, one mpidist never heard of included. Rank 0 plays xdist's controller:
it replays each test's merged reports into pytest's hooks (``replay``), so its
writers see every test once, with its merged outcome.

What the word sets off in plugins that read more than its presence is met here:
its keys (``workerid`` ``gwN``, as conftests parse it; ``workercount``;
rank 0's ``testrunuid`` and ``mainargv``; the ordering plugins' seeds, rank 0's,
adopted once rank 0 has drawn them: ``collection``); pytest-cov would start its
xdist worker engine (it stays in its one-process mode: ``companions``);
pytest-rerunfailures would connect to its xdist controller's socket (it keeps its
one-process status database: the pipeline decides reruns). Beyond the
convention, what plugins write without asking: pytest's cache (pytest-random-order
writes its seed on workers), ``--log-file`` (pytest's logging plugin opens it on
every process) and expecttest's ``EXPECTTEST_ACCEPT=1`` rewrite of a test's
source. hypothesis's example database is ``examples``'.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

__all__ = ["SEEDS", "adopt", "not_the_writer", "quiet_expecttest", "rank0_state"]

#: the seeds ordering plugins take from an xdist controller; rank 0's replace these
#: placeholders once drawn (``CollectionAgreement.adopt_rank0_cache_state``)
SEEDS = ("randomly_seed", "random_order_seed")


def not_the_writer(config: pytest.Config, workerid: str, count: int) -> None:
    """Make this process a reader of the session, never a writer of its artefacts.
    Before any ``pytest_configure``: plugins decide there. ``testrunuid`` and the
    seeds are rank 0's once it has drawn them (``adopt``)."""
    option = config.option
    config.workerinput = {  # type: ignore[attr-defined]
        "workerid": workerid, "workercount": count, "testrunuid": "",
        "mainargv": list(sys.argv),
        **{name: getattr(option, name) for name in SEEDS if hasattr(option, name)},
    }
    config.workeroutput = {}  # type: ignore[attr-defined]
    option.xmlpath = None  # (junitxml checks workerinput too; older pytest did not)
    if _option_or_ini(config, "log_file"):
        option.log_file = os.devnull
    from _pytest.cacheprovider import Cache

    Cache.set = _no_cache_write  # type: ignore[method-assign]
    _one_process_cov(config)
    _one_process_rerunfailures()


def rank0_state(config: pytest.Config) -> dict[str, Any]:
    """Rank 0: what the other ranks adopt once rank 0's plugins have configured:
    a run id, the seeds rank 0's ordering plugins drew, and hypothesis's seed."""
    import secrets
    import uuid

    option = config.option
    return {"testrunuid": uuid.uuid4().hex, "hypothesis_seed": secrets.randbits(63),
            **{name: getattr(option, name) for name in SEEDS if hasattr(option, name)}}


def adopt(config: pytest.Config, state: dict[str, Any]) -> None:
    """Ranks > 0: take rank 0's run id and seeds (``rank0_state``)."""
    option = config.option
    for name in SEEDS:  # pytest-randomly and pytest-random-order reseed with these
        if name in state and hasattr(option, name):
            setattr(option, name, state[name])
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        workerinput.update({k: v for k, v in state.items() if k != "hypothesis_seed"})


def _no_cache_write(self: Any, key: str, value: object) -> None:
    """pytest's ``Cache.set`` in a process that is not the writer: only rank 0's
    cache persists (--lf, --nf, --sw, plugins' seeds, mpidist's durations)."""


def _option_or_ini(config: pytest.Config, name: str) -> Any:
    value = getattr(config.option, name, None)
    if value is None:
        try:
            value = config.getini(name)
        except ValueError:
            return None
    return value


def _one_process_cov(config: pytest.Config) -> None:
    """pytest-cov reads ``workerinput`` as "an xdist worker": it would start the engine
    that reports to xdist's controller. It keeps its one-process engine; its data goes
    to rank 0 over MPI (``companions.share_coverage``)."""
    plugin = config.pluginmanager.get_plugin("_cov")
    if plugin is not None and hasattr(plugin, "_is_worker"):
        plugin._is_worker = lambda session: False


def _one_process_rerunfailures() -> None:
    """pytest-rerunfailures, with xdist installed, connects a worker to its controller's
    status socket (from ``workerinput``). The pipeline decides reruns on rank 0, so a
    worker keeps the one-process status database."""
    module = sys.modules.get("pytest_rerunfailures")
    if module is not None and hasattr(module, "HAS_PYTEST_HANDLECRASHITEM"):
        setattr(module, "HAS_PYTEST_HANDLECRASHITEM", False)  # noqa: B010


def quiet_expecttest() -> None:
    """Under ``EXPECTTEST_ACCEPT=1`` expecttest rewrites the test's source with the new
    output; in a process that is not the writer, the test passes as rank 0's does and
    leaves the file to rank 0. Called once the test modules are imported."""
    module = sys.modules.get("expecttest")
    if module is not None and hasattr(module, "_accept_output"):
        setattr(module, "_accept_output", _leave_to_rank0)  # noqa: B010


def _leave_to_rank0(*args: Any, **kwargs: Any) -> None:
    """expecttest's ``_accept_output`` where rank 0 alone rewrites the source."""
