"""The testing layer's own pytest plugin: torch's spawning classes under ``--with-mpi``.

Registered through its own pytest11 entry point, so the runner never imports
the testing layer. Inert without ``--with-mpi``. With it:

* before pytest makes the items (and instances) of a torch spawning class --
  whose ``__init__`` wraps each test method with the spawn-and-join logic --
  ``compat.install`` re-points torch's base classes at MPI ranks;
* around every test: ``compat.begin`` (per-test state, torchrun's variables
  back to the world's), and the default group mpidist started goes down before
  a torch spawning class (which starts its own) and comes back before the next
  other test;
* each call report says (``CALL_MARKS``, set once the body ends) whether this
  rank sat the test out (``SAT_OUT``: the merge leaves it out), left the body
  through torch's skip exit code (``LEFT_EARLY``: the watchdog treats it as a
  failure, so ranks waiting for it get ``--mpi-peer-grace`` instead of a hang),
  or ran torch's child protocol (``ROOT_DECIDES``: the first rank's outcome is
  the test's unless a rank failed, as torch's ``_check_return_codes`` reads the
  first process's code);
* a torch class's test leaves the environment and ``torch.backends`` flags as
  it found them (``protocol.Snapshot``): its children would have taken their
  changes with them; DTensor's memos are dropped where a rank goes between a
  real group's test and a local-tensor one (``memos``), which torch runs in
  different processes.
"""

from __future__ import annotations

from typing import Any, Generator

import pytest

from ..bootstrap import settings
from ..bootstrap.settings import setting
from ..report.results import CALL_MARKS, LEFT_EARLY, ROOT_DECIDES, SAT_OUT

__all__: list[str] = []


def _active(config: pytest.Config) -> bool:
    """Under ``--with-mpi`` in a rank (an isolation template has no MPI, no runtime)."""
    from ..isolation.template import in_template

    return bool(config.getoption("with_mpi", False)) and not in_template()


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> None:
    if not (_active(collector.config) and isinstance(obj, type)):
        return
    from . import compat  # only under --with-mpi: the testing package loads then

    if compat.derives_from_spawning(obj):
        compat.install(setting(collector.config, settings.SHARED_DIR))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A torch spawning class's ``world_size`` sizes its tests (``placement.sizes``)."""
    if not _active(config):
        return
    from ..isolation.rank import TORCH_CHILD
    from ..placement.sizes import TORCH_SIZE
    from . import compat, forked

    sizes: dict[type, int | None] = {}
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is None:
            continue
        if cls not in sizes:
            sizes[cls] = (compat.world_size_of(cls) if compat.is_spawning_class(cls) else
                          1 if compat.is_solo_torch_class(cls) else None)
        size = sizes[cls]
        if size is not None:
            item.stash[TORCH_SIZE] = size  # a marker (mpi(ranks=), parallel) still wins
            item.stash[TORCH_CHILD] = forked.runs_in_children(cls)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    if _active(item.config):
        from .. import runtime
        from . import compat, forked, memos, protocol

        compat.begin()
        cls = getattr(item, "cls", None)
        memos.switch("parent" if compat.runs_in_parent(cls) else "ranks")
        if compat.is_spawning_class(cls):
            runtime.release_default_group()  # this world's or packed group's
            snapshot = protocol.Snapshot()  # what torch's child would not have seen
            protocol.fork_with(forked.forker(item))  # None: the child's work runs here
            try:
                return (yield)
            finally:
                protocol.fork_with(None)
                snapshot.restore()
        if compat.is_solo_torch_class(cls) and item.get_closest_marker("mpi") is None:
            # as in torch's runner's own process: no default group (``dist.is_initialized``
            # is False, and the test may start one), the launch's torchrun variables
            runtime.release_default_group(leftover=True)
            snapshot = protocol.Snapshot()
            protocol.launch_environment()
            try:
                return (yield)
            finally:
                snapshot.restore()
        elif runtime.current().released:
            runtime.restore_default_group()  # collective: every rank is here
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    if not _active(item.config):
        return (yield)
    from . import compat

    try:
        return (yield)
    finally:  # read by the pipeline when it makes this rank's result
        marks = ((SAT_OUT,) if compat.sat_out() else ()) + (  # SatOut is a skip
            (LEFT_EARLY,) if compat.left_early() else ()) + (
            (ROOT_DECIDES,) if compat.ran_as_child() else ())
        if marks:
            item.stash[CALL_MARKS] = marks
