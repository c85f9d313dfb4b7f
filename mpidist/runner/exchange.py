"""Move each rank's per-test record to the group's root, and the root's verdict back.

Per test, on the group's communicator (mpidist's private one for the world):

1. every rank that has a full payload posts an ``Isend`` of it to the root;
2. ``Igather`` of the fixed-size ``Record``s (payload length + phase durations),
   a tree in every MPI, so cost grows like log P;
3. the root posts ``Irecv`` only for ranks whose record announced a payload;
4. only for a test that needs one (see ``TestPipeline``), the root ``Ibcast``s a
   small verdict (stop now? fail now? run again?): after replaying when a rank
   failed (``-x`` and plugins decide on the logged report), before replaying
   when every rank passed and only pytest's and mpidist's reporters listen.
   Without a verdict the other ranks ``send`` and go on, and the root
   ``post_gather``s and ``collect``s later.

Every wait is ``wait_all``: ``Testall`` and ``sched_yield`` in a loop.
"""

from __future__ import annotations

import os
import time
from array import array
from typing import TYPE_CHECKING, Sequence, overload

from ..report.codec import Record

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["Exchange", "Outbox", "Record", "wait_all"]

_PAYLOAD_TAG = 7001


def wait_all(requests: Sequence[MPI.Request], within: float | None = None) -> bool:
    """Block until ``requests`` complete, giving the core away while waiting;
    with ``within``, for at most that many seconds (for a side thread while the
    job ends). Whether they completed.

    A blocking ``Waitall`` spins: with ranks not bound to cores (``--bind-to
    none``, Open MPI's ``--oversubscribe``, containers), the rank that waits can
    sit on the core of the rank it waits for. Measured on the real-shaped
    suite (docs/performance.md): unbound, 1.24x pytest-mpi's time with a
    spinning wait and 1.14x with this one; bound, the same. No sleep: a
    sleep's overshoot made each hand-off 2-6x slower. ``Testall`` releases
    the GIL, so a watchdog thread keeps running.
    """
    from mpi4py import MPI

    requests = list(requests)
    testall, yield_ = MPI.Request.Testall, os.sched_yield
    deadline = None if within is None else time.monotonic() + within
    while not testall(requests):
        if deadline is not None and time.monotonic() > deadline:
            return False
        yield_()
    return True


class Outbox:
    """Sends posted and not yet known complete, each with the buffers it reads:
    MPI reads a buffer until its request completes, so it must stay referenced."""

    def __init__(self) -> None:
        self._held: list[tuple[list[MPI.Request], object]] = []

    def hold(self, requests: list[MPI.Request], buffers: object) -> None:
        """Keep ``buffers`` until ``requests`` complete; drop what completed meanwhile."""
        self._held = [(rs, b) for rs, b in self._held if not all(r.Test() for r in rs)]
        self._held.append((requests, buffers))

    def settle(self) -> None:
        """Wait until every held send completed."""
        held, self._held = self._held, []
        wait_all([request for requests, _ in held for request in requests])


class Exchange:
    """The per-test gather/verdict protocol over one communicator (root: rank 0 of it)."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._records = array("d", bytes(8 * Record.SIZE * self.size))
        self._mine = array("d")
        self._outbox = Outbox()

    def gather(
        self, record: Record, payload: bytes | None
    ) -> list[tuple[Record, bytes | None]] | None:
        """Collective: the root gets every rank's ``(record, payload)``; others None."""
        if self.rank != 0:
            self.send(record, payload)
            self.settle()
            return None
        return self.collect(self.post_gather(record))

    def send(self, record: Record, payload: bytes | None) -> None:
        """A rank other than the root: post this test's record (and payload) and go
        on; the buffers stay referenced until ``settle``."""
        from mpi4py import MPI

        comm = self.comm
        mine = record.to_array()
        requests = [comm.Igather([mine, MPI.DOUBLE], None, root=0)]
        if payload is not None:
            requests.append(comm.Isend([payload, MPI.BYTE], dest=0, tag=_PAYLOAD_TAG))
        requests[0].Test()  # starts the gather now in MPIs that progress only inside calls
        self._outbox.hold(requests, (mine, payload))

    def settle(self) -> None:
        """Wait until every posted ``send`` completed (the root has collected them)."""
        self._outbox.settle()

    def post_gather(self, record: Record) -> MPI.Request:
        """The root: post this test's gather; ``collect`` finishes it."""
        from mpi4py import MPI

        mine = record.to_array()
        self._mine = mine  # referenced until the gather completes
        return self.comm.Igather([mine, MPI.DOUBLE], [self._records, MPI.DOUBLE], root=0)

    @overload
    def collect(self, request: MPI.Request) -> list[tuple[Record, bytes | None]]: ...
    @overload
    def collect(self, request: MPI.Request,
                wait: float) -> list[tuple[Record, bytes | None]] | None: ...

    def collect(self, request: MPI.Request,
                wait: float | None = None) -> list[tuple[Record, bytes | None]] | None:
        """The root: wait for the gather ``post_gather`` posted, then the payloads
        (``wait``: at most that many seconds, polling; None if they did not come)."""
        from mpi4py import MPI

        comm = self.comm
        if not wait_all([request], within=wait):
            return None
        records = self._records
        received = [Record.from_array(records[r * Record.SIZE:(r + 1) * Record.SIZE])
                    for r in range(self.size)]
        buffers: dict[int, bytearray] = {}
        requests = []
        for rank in range(1, self.size):
            if received[rank].payload_len:
                buffers[rank] = bytearray(received[rank].payload_len)
                requests.append(
                    comm.Irecv([buffers[rank], MPI.BYTE], source=rank, tag=_PAYLOAD_TAG))
        if not wait_all(requests, within=wait):
            for late in requests:
                late.Cancel()
            return None
        return [(received[rank], bytes(buffers[rank]) if rank in buffers else None)
                for rank in range(self.size)]

    def verdict(self, flags: Sequence[int]) -> list[int]:
        """Collective: every rank gets the root's ``flags`` (small ints)."""
        buf, request = self.post_verdict(flags)
        wait_all([request])
        return list(buf)

    def post_verdict(self, flags: Sequence[int]) -> tuple[array[int], MPI.Request]:
        """``verdict`` without the wait: the root sends and goes on (it must
        ``wait_all`` the request before its next collective on this communicator).
        One ``Test`` starts the send now in MPIs that progress only inside calls."""
        from mpi4py import MPI

        buf = array("i", flags)
        request = self.comm.Ibcast([buf, MPI.INT], root=0)
        request.Test()
        return buf, request
