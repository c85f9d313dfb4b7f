"""Timing over MPI: collectives (slowest rank's time) and node-to-node ping-pong."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["idle_barrier", "ping_pong", "time_collective"]


def time_collective(comm: MPI.Comm, fn: Callable[[], object], warmup: int, iters: int,
                    sync: Callable[[], None] = lambda: None) -> float:
    """Seconds per call of ``fn`` (a collective): the slowest rank's mean over ``iters``."""
    from mpi4py import MPI

    for _ in range(warmup):
        fn()
    sync()
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    elapsed = (time.perf_counter() - start) / iters
    return float(comm.allreduce(elapsed, op=MPI.MAX))


def ping_pong(comm: MPI.Comm, peer: int, nbytes: int, iters: int, lead: bool) -> float:
    """Seconds per round trip of ``nbytes`` with ``peer`` (both sides call it; the
    ``lead`` side sends first and times)."""
    import numpy as np

    buf = np.zeros(nbytes, dtype=np.uint8)

    def exchange(tag: int) -> None:
        if lead:
            comm.Send(buf, peer, tag)
            comm.Recv(buf, peer, tag)
        else:
            comm.Recv(buf, peer, tag)
            comm.Send(buf, peer, tag)

    for _ in range(2):  # connection set-up and first touch, out of the timing
        exchange(7)
    start = time.perf_counter()
    for _ in range(iters):
        exchange(8)
    return (time.perf_counter() - start) / iters


def idle_barrier(comm: MPI.Comm, poll: float = 0.0005) -> None:
    """A barrier that sleeps while it waits.

    ``comm.Barrier`` busy-polls in Open MPI and MPICH. A node that is not in the
    round's pair then takes a core from the pair being measured wherever nodes share
    cores (namespaces on one host, oversubscribed VMs): on a 2-core host, a healthy
    link measured half its peers' bandwidth twice. Waiting here costs at most ``poll``
    per round."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(poll)
