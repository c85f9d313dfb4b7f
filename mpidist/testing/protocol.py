"""What torch's runner does in each spawned child, done by a long-lived MPI rank.

torch's ``MultiProcessTestCase`` starts one process per rank per test. The
parent ran ``setUp``; each child runs the classmethod ``_run(rank, test_name,
file_name, pipe)``, which builds a *fresh* instance (no ``setUp``) and calls
``run_test``: seed the RNGs, run the body, turn a skip into
``sys.exit(TEST_SKIPS["generic"])`` and an exception into
``sys.exit(TEST_ERROR_EXIT_CODE)``. Subclasses override ``_run`` to start their
own process group (``TestDistBackend``: ``init_process_group(file://...)``, a
file barrier, the body, a barrier, ``destroy_process_group``, ``sys.exit(0)``).
The parent then judges the exit codes (``_check_return_codes``): any child
that errored fails the test; otherwise the *first* process's code decides --
a ``TEST_SKIPS`` code skips, the expected code (0, or
``special_return_code_checks``) passes, a test in ``skip_return_code_checks``
passes whatever the codes.

Here every rank is such a child: ``run_as_child`` calls the class's own
``_run`` as torch's child would, catches its ``SystemExit`` (the "exit code"),
keeps the body's real exception or skip (a better report than an exit code),
drops whatever process group the test left (a child's would die with it), and
judges the code as the parent does. What differs from the child only because
this process lives on -- environment variables, ``torch.backends`` flags,
c10d's debug level and backends registered with ``dist.Backend.register_backend``
that a test or its ``setUp`` changed -- ``Snapshot`` puts back after the test.

The first process's code deciding is kept by the merge: rank 0's call report
carries ``ROOT_DECIDES``, so a rank that skipped or ended oddly while rank 0
passed does not turn torch's pass into a failure; a rank that errored still
fails the test, as in torch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import unittest
from dataclasses import dataclass, field
from typing import Any, Callable

from ..bootstrap.store import launch_env
from ..errors import UnsupportedCollective
from . import backends

__all__ = ["ChildError", "Snapshot", "child_running", "fork_with", "judge_exit", "run_as_child",
           "run_fresh", "run_test", "seed_like_torch", "skip_for_exit"]

TORCH_MODULE = "torch.testing._internal.common_distributed"


@dataclass
class _Child:
    """What the body did inside ``run_test`` (torch's child keeps it in its log)."""

    error: BaseException | None = None
    skip: unittest.SkipTest | None = None


_child: list[_Child] = []  # the test in flight, while its ``_run`` runs


def child_running() -> bool:
    """Whether ``_run`` is running (the test method's wrapper then runs the body)."""
    return bool(_child)


def skip_for_exit(code: Any) -> unittest.SkipTest | None:
    """The skip torch's parent raises for a child's exit ``code``, if it is one."""
    torch_cd = sys.modules.get(TORCH_MODULE)
    for skip in getattr(torch_cd, "TEST_SKIPS", {}).values():
        if code == skip.exit_code:
            return unittest.SkipTest(skip.message)
    return None


def _exit_code(code: Any) -> int:
    """``SystemExit.code`` as the process's exit status (None -> 0, text -> 1)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def destroy_groups() -> None:
    """Drop the default group (and with it every subgroup) a test left behind, and
    leave torch's group counter at 0, where a fresh child process has it.

    torch names each new group by that counter and puts the name in its store keys;
    ``destroy_process_group`` sets it back to 0, but a rank whose ``init_process_group``
    failed (after naming the group) has no group to destroy. Its counter would stay one
    ahead of the others', and the next test's default groups would wait for each other
    under different names until the timeout (seen under Open MPI 5 on 2 busy cores).
    """
    import torch.distributed as dist

    if not dist.is_available():
        return
    if dist.is_initialized():
        with contextlib.suppress(AssertionError, ValueError, RuntimeError):
            dist.destroy_process_group()
    world = getattr(sys.modules.get("torch.distributed.distributed_c10d"), "_world", None)
    if not dist.is_initialized() and isinstance(getattr(world, "group_count", None), int):
        world.group_count = 0  # type: ignore[union-attr]


def seed_like_torch() -> None:
    """Every rank the same seed before a body, as torch's children get."""
    common_utils = sys.modules.get("torch.testing._internal.common_utils")
    if common_utils is not None:
        common_utils.set_rng_seed()


def run_test(self: Any, test_name: str, parent_pipe: Any = None) -> None:
    """torch's ``MultiProcessTestCase.run_test`` without a process to exit.

    The body's skip or exception is kept for the report and leaves ``_run`` as
    torch's child does, through ``sys.exit`` with torch's codes, so code after
    ``run_test`` in a subclass's ``_run`` (its barrier, its
    ``destroy_process_group``) is skipped exactly as it is under torch.
    """
    seed_like_torch()
    os.environ["TORCH_SHOW_CPP_STACKTRACES"] = "1"
    if not _child:  # called outside mpidist's protocol: just the body
        getattr(self, test_name)()
        return
    child = _child[-1]
    torch_cd = sys.modules[TORCH_MODULE]
    try:
        getattr(self, test_name)()
    except unittest.SkipTest as exc:
        child.skip = exc
        sys.exit(torch_cd.TEST_SKIPS["generic"].exit_code)
    except UnsupportedCollective as exc:  # the test cannot run on mpidist's MPI group
        child.skip = unittest.SkipTest(str(exc))
        sys.exit(torch_cd.TEST_SKIPS["generic"].exit_code)
    except Exception as exc:
        child.error = exc
        sys.exit(torch_cd.MultiProcessTestCase.TEST_ERROR_EXIT_CODE)
    if self.destroy_pg_upon_exit:
        destroy_groups()


#: runs torch's child protocol in a forked child instead (isolation; ``fork_with``)
_fork: list[Callable[[dict[str, Any]], dict[str, Any]]] = []


class ChildError(Exception):
    """The body failed in a forked child; the message is its traceback (torch's
    parent reports a child's failure the same way: the text it sent)."""


def fork_with(fork: Callable[[dict[str, Any]], dict[str, Any]] | None) -> None:
    """Run the next ``run_as_child`` calls through ``fork`` (None: in this process).
    ``fork`` takes ``run_fresh``'s arguments and returns ``code``, ``error``,
    ``skip`` and ``died`` (``isolation``)."""
    _fork[:] = [fork] if fork is not None else []


def run_fresh(cls: type, rank: int, name: str, file_name: str,
              fake_pg: bool) -> tuple[int, _Child]:
    """torch's child: the class's ``_run`` (a fresh instance, ``run_test``); its exit
    code and what the body did. The process group is gone after."""
    child = _Child()
    _child.append(child)
    code: int = 0
    try:
        cls._run(rank, name, file_name, None, fake_pg=fake_pg)  # type: ignore[attr-defined]
    except SystemExit as exc:
        code = _exit_code(exc.code)
    finally:
        _child.pop()
        destroy_groups()
    return code, child


def run_as_child(self: Any, fn: Callable[[], None] | None = None) -> int:
    """Run the test the way torch's child runs it: the class's ``_run`` with this
    rank, the test's name and the agreed ``file_name`` -- here, or forked.

    Raises the body's exception or skip as the body raised it (a forked body's as
    ``ChildError`` with its traceback; a forked child that timed out, or rank 0's
    that died without the exit code ``fn`` expects, as ``ChildError`` saying how),
    and whatever ``_run`` itself raises; returns the child's exit code otherwise.
    """
    __tracebackhide__ = True  # the report shows the child's traceback, not this frame
    name = self.id().rsplit(".", 1)[-1]
    fake_pg = bool(getattr(self, "fake_pg", False))
    if _fork:
        answer = _fork[0]({"rank": self.rank, "name": name, "file_name": self.file_name,
                           "fake_pg": fake_pg})
        code = int(answer["code"])
        expected = getattr(self, "special_return_code_checks", {}).get(fn, 0)
        # torch's parent: a child that timed out fails the test; of the others' exit
        # codes only the first process's counts (``judge_exit``)
        if answer.get("ended") == "timeout" or (
                answer.get("ended") == "died" and code != expected and self.rank == 0):
            raise ChildError(answer["died"])
        if answer.get("error") is not None:
            raise ChildError(answer["error"])
        if answer.get("skip") is not None:
            raise unittest.SkipTest(answer["skip"])
        return code
    code, child = run_fresh(type(self), self.rank, name, self.file_name, fake_pg)
    if child.error is not None:
        raise child.error
    if child.skip is not None:
        raise child.skip
    return code


def judge_exit(self: Any, fn: Callable[[], None], code: int) -> unittest.SkipTest | None:
    """torch's ``_check_return_codes`` for this rank's exit ``code`` (no error).

    Returns the skip to raise, or None for a pass; raises AssertionError where
    torch's parent fails the test. A rank other than 0 never fails here: torch
    reads the first process's code only (the merge does the same).
    """
    if fn in getattr(self, "skip_return_code_checks", ()):
        return None
    skip = skip_for_exit(code)
    if skip is not None:
        return skip
    expected = getattr(self, "special_return_code_checks", {}).get(fn, 0)
    if code != expected and self.rank == 0:
        raise AssertionError(f"Expected exit code {expected} but got {code} "
                             f"(rank {self.rank}'s torch test process)")
    return None


# -- what a long-lived rank must put back -------------------------------------------

_BACKEND_FLAGS = (
    ("torch.backends.cudnn", ("enabled", "benchmark", "deterministic", "allow_tf32")),
    ("torch.backends.cuda.matmul", ("allow_tf32", "allow_fp16_reduced_precision_reduction")),
    ("torch.backends.mkldnn", ("enabled",)),
)


#: torchrun's variables that a child of torch's runner never has: RANK (its rank is the
#: class's ``self.rank``) and those of a node's agent
TORCH_CHILD_LACKS = ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                     "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "NODE_RANK")


def launch_environment(names: tuple[str, ...] | None = None) -> None:
    """Put torchrun's variables (or ``names`` of them) back as the launcher set them
    (unset where it did not): mpidist exports the world's for torchrun-style code,
    which torch's runner's process never had (``LocalRankTest.testWithoutEnv`` expects
    no ``LOCAL_RANK``)."""
    for name, value in launch_env().items():
        if names is not None and name not in names:
            continue
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class Snapshot:
    """The environment and ``torch.backends`` flags before a torch-class test.

    torch's children start from the parent's environment at spawn time and
    default flags; whatever a test (or its ``setUp``, which runs in the parent)
    changes dies with them. A rank runs every test in one process, so
    ``restore`` undoes it.
    """

    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    flags: list[tuple[Any, str, Any]] = field(default_factory=list)
    registry: backends.Registry | None = None
    debug_level: Any = None

    def __post_init__(self) -> None:
        if "torch" not in sys.modules:
            return
        for module_name, names in _BACKEND_FLAGS:
            owner = _resolve(module_name)
            for name in names:
                with contextlib.suppress(Exception):
                    self.flags.append((owner, name, getattr(owner, name)))
        if "torch.distributed" in sys.modules:
            backends.watch()
            self.registry = backends.Registry()  # backends a test registers
            # c10d's debug level is process state set from the environment once
            # (set_debug_level_from_env); DETAIL wraps every later group in a checker
            self.debug_level = _resolve("torch.distributed").get_debug_level()

    def restore(self) -> None:
        """Put back every variable and flag as it was."""
        for key in [k for k in os.environ if k not in self.environ]:
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        for owner, name, value in self.flags:
            with contextlib.suppress(Exception):
                if getattr(owner, name) != value:
                    setattr(owner, name, value)
        if self.registry is not None:
            self.registry.restore()
        if self.debug_level is not None:
            dist = _resolve("torch.distributed")
            if dist.get_debug_level() != self.debug_level:
                dist.set_debug_level(self.debug_level)


@functools.cache  # once per process, not once per test
def _resolve(dotted: str) -> Any:
    import importlib

    head, _, attr = dotted.rpartition(".")
    with contextlib.suppress(ImportError):
        return importlib.import_module(dotted)
    return getattr(importlib.import_module(head), attr)
