"""torch's MultiProcessTestCase family, unchanged, with MPI ranks in place of spawned processes.

torch's classes spawn ``world_size`` processes per test (or per class for
``MultiProcContinuousTest``), run the test in each with ``self.rank`` set,
and join them. Under ``--with-mpi`` every MPI rank already runs every test,
so ``install()`` re-points the spawning and joining methods of torch's base
classes (never the user's subclasses):

* ``_spawn_processes`` sets ``self.rank`` and an agreed ``self.file_name``
  (and an agreed TEMP_DIR where ``setUp`` made one, for torch's file barrier)
  instead of starting processes (for ``MultiProcContinuousTest``: once per
  class, with its ``_init_pg``);
* the method wrapper installed by ``__init__`` does what torch's child does
  (``protocol``: the class's own ``_run``, a fresh instance, ``run_test``) and
  judges its exit as torch's parent does: ``sys.exit(TEST_SKIPS[...].exit_code)``
  becomes the matching ``unittest.SkipTest`` (pytest calls a ``SystemExit`` a failure).

A class whose ``world_size`` is smaller than the MPI world runs on ranks
``0..world_size-1``; the others sit it out (``SatOut``, which the merge
leaves out of the outcome and the report names). A larger one is skipped on
every rank with the reason. Nothing here imports torch's testing modules:
``install`` runs only when a collected test class already did.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import os
import shutil
import sys
import tempfile
import types
import unittest
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import runtime
from . import protocol
from .skips import scope

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["SatOut", "install", "is_spawning_class", "participate", "ran_as_child", "sat_out"]

class SatOut(unittest.SkipTest):
    """This rank is not one of the test's ``world_size`` ranks."""


@dataclass
class _State:
    shared_dir: str = ""
    tests: int = 0  # tests begun, the same count on every rank
    sat_out: bool = False  # this rank sat out the test in flight
    left_early: bool = False  # this rank left the body through a TEST_SKIPS exit code
    groups: dict[tuple[str, int], MPI.Comm] = field(default_factory=dict)  # its ranks
    tag: str = ""  # the packed group whose tests ``tests`` counts ("": the world)
    protocol: bool = False  # the test in flight ran through torch's child protocol
    leftovers: list[str] = field(default_factory=list)  # agreed directories to remove
    previous: list[str] = field(default_factory=list)  # the test before's, removed next
    cleanup: bool = False  # the removal at exit is registered
    root: bool = False  # this rank is rank 0 of the world or group of the test in flight


_state = _State()


def _torch() -> types.ModuleType | None:
    return sys.modules.get(protocol.TORCH_MODULE)


def _spawning_bases_of(cls: type | None) -> tuple[type, ...]:
    """torch's spawning bases when ``cls`` derives from one of them, else ()."""
    if not isinstance(cls, type):  # a plain test function's item: no lookups
        return ()
    torch_cd = _torch()
    bases = tuple(getattr(torch_cd, name) for name in ("MultiProcessTestCase",
                  "MultiProcContinuousTest") if hasattr(torch_cd, name))
    return bases if bases and issubclass(cls, bases) else ()


def derives_from_spawning(cls: type | None) -> bool:
    """Whether ``cls`` inherits torch's spawning machinery (``install`` is then needed)."""
    return bool(_spawning_bases_of(cls))


def runs_in_parent(cls: type | None) -> bool:
    """Whether a spawning-derived ``cls`` runs its tests in torch's parent process after
    all: a class below torch's bases defines ``join_or_run`` (``LocalDTensorTestBase``:
    one process, a fake group; torch's runner kills the children it starts unjoined)."""
    bases = _spawning_bases_of(cls)
    for klass in cls.__mro__ if bases else ():  # type: ignore[union-attr]
        if klass in bases:
            return False
        if "join_or_run" in vars(klass):
            return True
    return False


def is_spawning_class(cls: type | None) -> bool:
    """Whether ``cls`` is one of torch's process-spawning test classes."""
    return derives_from_spawning(cls) and not runs_in_parent(cls)


def is_solo_torch_class(cls: type | None) -> bool:
    """Whether ``cls`` is a torch test class that torch's runner runs in its own single
    process: a subclass of torch's ``common_utils.TestCase`` that spawns no ranks --
    plain tests, ranks as threads (``MultiThreadedTestCase``, ``DTensorOpTestBase``),
    one process with a fake group (local-tensor classes). mpidist runs such a test on
    one rank, with no default group and the launch's torchrun variables, as there."""
    utils = sys.modules.get("torch.testing._internal.common_utils")
    base = getattr(utils, "TestCase", None)
    return (isinstance(cls, type) and isinstance(base, type) and issubclass(cls, base)
            and not is_spawning_class(cls))


def world_size_of(cls: type) -> int | None:
    """A spawning class's ``world_size`` read without an instance (torch's is a
    property, ``4`` unless overridden); None when it needs one (it is then read at
    run time, and the test runs on the world with the ranks above it sitting out)."""
    attr: Any = inspect.getattr_static(cls, "world_size", None)
    try:
        getter = attr.fget if isinstance(attr, property) else None
        value = getter(object.__new__(cls)) if getter is not None else attr
    except Exception:  # reads state its __init__ or setUp makes
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def sat_out() -> bool:
    """Whether this rank sat out the test in flight (reset by ``begin``)."""
    return _state.sat_out


def ran_as_child() -> bool:
    """Whether the test in flight ran through torch's child protocol (``_run``):
    then, as in torch, the first process's outcome decides unless a rank errored."""
    return _state.protocol


def left_early() -> bool:
    """Whether this rank left the test in flight through torch's skip exit code: if the
    other ranks did not, they are in the body (likely a collective) without it."""
    return _state.left_early


def _remove(paths: list[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _remove_leftovers() -> None:
    _remove(_state.previous + _state.leftovers)


def begin() -> None:
    """The session starts a test (on every rank, so the count agrees); rank 0 removes
    the directories agreed on two tests ago. After a test without a verdict rank 0
    may start the next one while another rank still finishes it (runner.pipeline);
    once rank 0 begins test k + 2 it has passed the body agreement of k + 1, which
    every rank reaches only after test k."""
    _state.sat_out = _state.left_early = _state.protocol = False
    rt = runtime.current()
    if rt.tag != _state.tag:  # a packed group's ranks count from its first test
        if _state.root:  # its last group is gone (collectively): none of it is in use
            _remove(_state.previous + _state.leftovers)
        _state.previous, _state.leftovers = [], []
        _state.tag, _state.tests = rt.tag, 0
    _state.root = rt.world.rank == 0
    _state.tests += 1
    if _state.root:
        _remove(_state.previous)
    _state.previous, _state.leftovers = _state.leftovers, []


def group_comm(world_size: int) -> MPI.Comm:
    """Collective over the world (once per size): the communicator of ranks
    ``0..world_size-1``, COMM_NULL elsewhere (the world: a packed group's, there)."""
    from mpi4py import MPI

    rt = runtime.current()
    key = (rt.tag, world_size)
    if key not in _state.groups:
        rank = rt.world.rank
        _state.groups[key] = rt.comm.Split(0 if rank < world_size else MPI.UNDEFINED, rank)
    return _state.groups[key]


def participate(world_size: int, what: str) -> int:
    """This rank's rank in a test of ``world_size`` ranks (its MPI rank).

    Collective over the world. Raises ``unittest.SkipTest`` on every rank if
    the world is too small, ``SatOut`` on the ranks the test does not use.
    """
    world = runtime.current().world
    if world_size > world.size:
        raise unittest.SkipTest(
            f"{what} needs world_size {world_size}, the MPI world has {world.size} ranks")
    group_comm(world_size)  # collective: every rank, before any sits out
    if world.rank >= world_size:
        _state.sat_out = True
        raise SatOut(f"sat out: {what} runs on {world_size} of {world.size} ranks")
    return world.rank


def shared_file(tag: str) -> str:
    """A path the test's ranks agree on without talking: job, group, test count, tag."""
    rt = runtime.current()
    base = _state.shared_dir or tempfile.gettempdir()
    group = rt.tag.replace("/", ".")  # "p3.g1." in a packed group, "" for the world
    return os.path.join(base, f"mpidist-{rt.signer.job_id()}-{group}{_state.tests}-{tag}")


def _run_here(self: Any, fn: Callable[[], Any]) -> None:
    """Run a ``MultiProcContinuousTest`` body as this rank, the way its worker does."""
    protocol.seed_like_torch()
    try:
        fn()
    except SystemExit as exc:
        skip = protocol.skip_for_exit(exc.code)
        if skip is not None:
            _state.left_early = True
            raise skip from None
        if exc.code not in (0, None):
            raise AssertionError(f"rank {self.rank} called sys.exit({exc.code!r})") from None


def _in_scope(world_size: int, fn: Callable[[], None]) -> None:
    with scope(group_comm(world_size), list(range(world_size))):
        fn()


# -- MultiProcessTestCase / DistributedTestBase ------------------------------------

def _spawn_processes(self: Any) -> None:
    if runs_in_parent(type(self)):  # torch's children would be killed unjoined: none
        return
    world_size = int(self.world_size)
    rank = participate(world_size, type(self).__name__)
    old = getattr(self, "file_name", None)
    if old and os.path.exists(old):  # setUp's NamedTemporaryFile: ours replaces it
        os.remove(old)
    self.rank = rank
    self.file_name = shared_file("file")
    os.environ["WORLD_SIZE"] = str(world_size)
    protocol.launch_environment(protocol.TORCH_CHILD_LACKS)  # MASTER_*: env:// joins our store
    # the testing plugin's Snapshot puts the world's back after the test
    _share_temp_dir()


def _share_temp_dir() -> None:
    """torch's ``initialize_temp_directories`` (``TestDistBackend.setUp``) made this
    rank a TEMP_DIR of its own; torch's children all inherit the parent's one, and
    its file barrier and ``file://`` INIT_METHOD live there. Point every rank of
    the test at one agreed directory of the same shape instead."""
    torch_cd = _torch()
    mine = getattr(getattr(torch_cd, "tmp_dir", None), "name", None)
    if not mine or os.environ.get("TEMP_DIR") != mine:
        return
    agreed = shared_file("TEMP_DIR")
    for sub in ("barrier", "test_dir", "init_dir"):
        os.makedirs(os.path.join(agreed, sub), exist_ok=True)
    if not _state.cleanup and _state.root:
        _state.cleanup = True
        atexit.register(_remove_leftovers)  # the last tests', at the end of the session
    _state.leftovers.append(agreed)
    os.environ["TEMP_DIR"] = agreed
    init = os.environ.get("INIT_METHOD", "")
    if init.startswith("file://" + mine):
        os.environ["INIT_METHOD"] = "file://" + agreed + init[len("file://" + mine):]


def _gone_from_barriers() -> None:
    """This rank left torch's protocol early (an error or an exit code): torch's child
    would be gone and its parent would end the others. Here the others live on, waiting
    in the file barrier of TEMP_DIR (``Barrier.sync``, 10 s) for a rank that never comes;
    mark this rank as past every barrier, so they finish the test now and report it,
    not a peer failure that ends the job."""
    if not _state.leftovers or os.environ.get("TEMP_DIR") != _state.leftovers[-1]:
        return
    agreed = _state.leftovers[-1]
    staged = os.path.join(agreed, f".gone-{os.getpid()}")  # outside barrier/: never half-read
    with contextlib.suppress(OSError):
        with open(staged, "w") as out:
            out.write(str(2**62))
        os.replace(staged, os.path.join(agreed, "barrier", str(os.getpid())))


def _join_or_run(self: Any, fn: Callable[[], None]) -> Callable[[], None]:
    torch_cd = _torch()
    main = torch_cd.MultiProcessTestCase.MAIN_PROCESS_RANK  # type: ignore[union-attr]

    @functools.wraps(fn)
    def wrapper(self: Any) -> None:
        if protocol.child_running():  # inside _run: this is the child's body
            fn()
            return
        if self.rank == main:  # setUp never called _spawn_processes: torch runs nothing
            return
        _state.protocol = True
        _in_scope(int(self.world_size), lambda: _as_child(self, fn))

    return types.MethodType(wrapper, self)


def _as_child(self: Any, fn: Callable[[], None]) -> None:
    try:
        code = protocol.run_as_child(self, fn)
    except BaseException:
        _gone_from_barriers()
        raise
    if code:
        _gone_from_barriers()
    skip = protocol.judge_exit(self, fn, code)
    if skip is not None:
        _state.left_early = True
        raise skip


# -- MultiProcContinuousTest: one process group per class ----------------------------

def _continuous_spawn(cls: Any, world_size: int) -> None:
    cls.rank = participate(int(world_size), cls.__name__)
    cls.world_size = int(world_size)
    cls.rdvz_file = shared_file(f"{cls.__name__}-rdvz")
    cls._init_skip = None
    try:
        cls._init_pg(cls.rank, cls.world_size, cls.rdvz_file)
    except SystemExit as exc:
        skip = protocol.skip_for_exit(exc.code)
        if skip is None:
            raise
        cls._init_skip = str(skip)


def _continuous_set_up(self: Any) -> None:
    cls = type(self)
    unittest.TestCase.setUp(self)
    cls._ensure_processes_spawned()  # SatOut / SkipTest propagate: unittest skips
    if getattr(cls, "_init_skip", None):
        raise unittest.SkipTest(cls._init_skip)
    self.rank = cls.rank
    if cls.poison_pill:
        raise unittest.SkipTest(f"Previous test failed, skipping {self.id()}")


def _continuous_wrap(self: Any, fn: Callable[[], None]) -> Callable[[], None]:
    @functools.wraps(fn)
    def wrapper(self: Any) -> None:
        cls = type(self)
        try:
            _in_scope(cls.world_size, lambda: _run_here(self, fn))
        except unittest.SkipTest:
            raise
        except BaseException:
            cls.poison_pill = True  # as torch: the rest of the class is skipped
            raise

    return types.MethodType(wrapper, self)


def _continuous_tear_down_class(base: type) -> Callable[[Any], None]:
    def tear_down_class(cls: Any) -> None:
        if cls.__dict__.get("_processes_spawned"):
            protocol.destroy_groups()
            cls._processes_spawned = False
            rdvz = cls.__dict__.get("rdvz_file")
            if rdvz and cls.rank == 0 and os.path.exists(rdvz):
                os.remove(rdvz)
        super(base, cls).tearDownClass()  # type: ignore[arg-type]

    return tear_down_class


def install(shared_dir: str = "") -> bool:
    """Point torch's spawning classes at MPI ranks (idempotent); False if torch's
    testing module is not loaded. ``shared_dir``: where agreed files go."""
    torch_cd = _torch()
    if torch_cd is None:
        return False
    _state.shared_dir = shared_dir
    if getattr(torch_cd, "_mpidist_installed", False):
        return True
    mptc = torch_cd.MultiProcessTestCase
    mptc._spawn_processes = _spawn_processes
    mptc.join_or_run = _join_or_run
    mptc.run_test = protocol.run_test
    continuous = getattr(torch_cd, "MultiProcContinuousTest", None)
    if continuous is not None:
        continuous._spawn_processes = classmethod(_continuous_spawn)
        continuous.setUp = _continuous_set_up
        continuous._worker_run_main_wait = _continuous_wrap
        continuous.tearDownClass = classmethod(_continuous_tear_down_class(continuous))
    setattr(torch_cd, "_mpidist_installed", True)  # noqa: B010
    return True
