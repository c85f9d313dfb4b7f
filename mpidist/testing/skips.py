"""Collective skips: a test is skipped on every rank when any rank must skip it.

torch's decorators decide per process (``sys.exit(75)`` in one rank), which
under mpirun leaves the other ranks running the body into a collective that
never completes. Here every decorator computes this rank's reason (or None),
the ranks running the test exchange them, and if any rank has one, every
rank raises the same ``unittest.SkipTest`` naming the ranks and their
reasons. ``unittest.SkipTest`` is a skip for pytest functions and unittest
methods alike. Without mpidist's runtime (plain pytest, torch's own spawning)
the decision is local, as torch's is.

The ranks that decide together are the test's ranks: the whole world, or the
ranks a MultiProcessTestCase with a smaller ``world_size`` runs on (``scope``).
"""

from __future__ import annotations

import functools
import os
import unittest
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from .. import runtime
from ..backends.mpi4py import stand_in
from ..bootstrap import probes

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = [
    "collective_skip",
    "has_efa",
    "requires_efa",
    "requires_gloo",
    "requires_mpi",
    "requires_multicast_support",
    "requires_nccl",
    "requires_nccl_version",
    "requires_ucc",
    "requires_world_size",
    "scope",
    "skip_if_lt_x_gpu",
    "skip_if_no_gpu",
    "skip_if_odd_worldsize",
    "skip_if_small_worldsize",
    "current_world_size",
]

F = TypeVar("F", bound=Callable[..., Any])

# (communicator of the test's ranks, their world ranks); None: the whole world
_scope: tuple[MPI.Comm, list[int]] | None = None


@contextmanager
def scope(comm: MPI.Comm, world_ranks: list[int]) -> Iterator[None]:
    """Decide skips among ``world_ranks`` (over ``comm``) instead of the whole world;
    torch's ``"mpi"`` groups (mpidist's stand-in) are made among them too."""
    global _scope
    previous, _scope = _scope, (comm, world_ranks)
    mpi_world = stand_in.set_world(comm)
    try:
        yield
    finally:
        _scope = previous
        stand_in.set_world(mpi_world)


def _deciders() -> tuple[MPI.Comm, list[int]] | None:
    if _scope is not None:
        return _scope
    if not runtime.is_initialized():
        return None
    rt = runtime.current()
    return rt.comm, list(range(rt.world.size))


def current_world_size() -> int:
    """Ranks running the current test (the world, or a MultiProcessTestCase's group)."""
    deciders = _deciders()
    if deciders is not None:
        return len(deciders[1])
    return int(os.environ.get("WORLD_SIZE", "1"))


def collective_skip(reason: str | None) -> None:
    """Collective over the test's ranks: raise ``unittest.SkipTest`` on all of them
    if any passes a reason; the message names which ranks and why."""
    deciders = _deciders()
    if deciders is None:
        if reason is not None:
            raise unittest.SkipTest(reason)
        return
    comm, ranks = deciders
    reasons = comm.allgather(reason)
    if all(r is None for r in reasons):
        return
    world = runtime.current().world
    by_reason: dict[str, list[int]] = {}
    for index, text in enumerate(reasons):
        if text is not None:
            by_reason.setdefault(text, []).append(ranks[index])
    raise unittest.SkipTest("; ".join(
        f"{text} (on {world.describe_ranks(on)})" for text, on in by_reason.items()))


def _skip_unless(check: Callable[[], str | None]) -> Callable[[F], F]:
    """Decorator: at call time, ``check()`` gives this rank's skip reason or None."""
    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            collective_skip(check())
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def skip_if_lt_x_gpu(x: int, *, allow_cpu: bool = False) -> Callable[[F], F]:
    """Skip unless this rank's node has at least ``x`` CUDA devices (``allow_cpu``: or
    none at all, to run the CPU path)."""
    def check() -> str | None:
        n = probes.cuda_devices()
        if n >= x or (allow_cpu and n == 0):
            return None
        return f"Need at least {x} CUDA device{'s' if x > 1 else ''} (this node has {n})"

    return _skip_unless(check)


def skip_if_no_gpu(func: F) -> F:
    """Skip unless every rank of this node can have a CUDA device of its own."""
    def check() -> str | None:
        n = probes.cuda_devices()
        if n == 0:
            return "CUDA is not available."
        if runtime.is_initialized():
            local = runtime.current().world.local_size
            if n < local:
                return f"Need a CUDA device per rank: {local} ranks on this node, {n} devices"
        return None

    return _skip_unless(check)(func)


def _backend(name: str, attr: str) -> Callable[[F], F]:
    def check() -> str | None:
        import torch.distributed as dist

        if getattr(dist, attr)():
            return None
        return f"c10d was not compiled with the {name} backend"

    return _skip_unless(check)


def requires_gloo() -> Callable[[F], F]:
    """Skip unless this torch build has gloo."""
    return _backend("Gloo", "is_gloo_available")


def requires_nccl() -> Callable[[F], F]:
    """Skip unless this torch build has NCCL."""
    return _backend("NCCL", "is_nccl_available")


def requires_ucc() -> Callable[[F], F]:
    """Skip unless this torch build has UCC."""
    return _backend("UCC", "is_ucc_available")


def requires_mpi() -> Callable[[F], F]:
    """Skip unless this torch build has its MPI backend (for MPI on stock torch use
    mpidist's ``mpi4py`` backend, which needs no decorator)."""
    return _backend("MPI", "is_mpi_available")


def requires_nccl_version(version: tuple[int, ...], msg: str) -> Callable[[F], F]:
    """Skip unless torch's NCCL is at least ``version``."""
    def check() -> str | None:
        found = probes.nccl_version()
        if found is None:
            return "c10d was not compiled with the NCCL backend"
        if found < tuple(version):
            return (f"Requires NCCL version greater than or equal to: {version}, found: "
                    f"{found}, reason: {msg}")
        return None

    return _skip_unless(check)


def requires_multicast_support() -> Callable[[F], F]:
    """Skip unless CUDA device 0 of this node supports multicast (NVLS) for symmetric
    memory; the reason says what is missing."""
    def check() -> str | None:
        probe = probes.multicast()
        return None if probe else f"multicast support is not available: {probe.detail}"

    return _skip_unless(check)


def has_efa() -> bool:
    """Whether this node has AWS EFA (libfabric's efa provider answers), as torch's
    ``has_efa``; ``mpidist.probes.efa().detail`` says why not."""
    return probes.efa().ok


def requires_efa() -> Callable[[F], F]:
    """Skip unless this node has EFA; the reason says what was looked at."""
    def check() -> str | None:
        probe = probes.efa()
        return None if probe else f"EFA is not available: {probe.detail}"

    return _skip_unless(check)


def requires_world_size(n: int) -> Callable[[F], F]:
    """Skip unless the test runs on at least ``n`` ranks."""
    def check() -> str | None:
        size = current_world_size()
        return None if size >= n else f"needs a world of {n} ranks, this one has {size}"

    return _skip_unless(check)


def _mpi_backend() -> bool:
    if runtime.is_initialized() and runtime.current().backend in ("mpi", "mpi4py"):
        return True
    return os.environ.get("BACKEND") == "mpi"


def skip_if_small_worldsize(func: F) -> F:
    """torch's rule: skip below 8 ranks, except on the MPI backends."""
    def check() -> str | None:
        size = current_world_size()
        return None if _mpi_backend() or size >= 8 else \
            f"Skipped due to small world size ({size} < 8)."

    return _skip_unless(check)(func)


def skip_if_odd_worldsize(func: F) -> F:
    """torch's rule: skip on an odd number of ranks, except on the MPI backends."""
    def check() -> str | None:
        size = current_world_size()
        return None if _mpi_backend() or size % 2 == 0 else \
            f"Skipped due to odd world size ({size})."

    return _skip_unless(check)(func)
