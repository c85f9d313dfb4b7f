"""Move each rank's per-test record to the group's root, and the root's verdict back.

Per test, on the group's communicator (mpidist's private one for the world):

1. every rank that has a full payload posts an ``Isend`` of it to the root;
2. ``Igather`` of the fixed-size ``Record``s (payload length + phase durations),
   a tree in every MPI, so cost grows like log P;
3. the root posts ``Irecv`` only for ranks whose record announced a payload;
4. the root ``Ibcast``s a small verdict (stop now? fail now? run again?):
   after replaying when a rank failed (``-x`` and plugins decide on the logged
   report), before replaying when every rank passed and only pytest's and
   mpidist's reporters listen (they stop a session on failures only; see
   ``TestPipeline``), so the other ranks start the next test while the root
   writes the report.

Nonblocking operations are used so that the payload sends and the record
gather overlap; every wait is then one blocking ``Waitall``.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from .results import PHASES

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["Exchange", "Record", "wait_all"]

_PAYLOAD_TAG = 7001


@dataclass
class Record:
    """The fixed-size part of a rank's result: what the root always receives.

    Attributes:
        payload_len: bytes of the full payload that follows (0: compact, none).
        durations: phase -> seconds, for the phases this rank ran.
        subtests: how many subtests ran (compact: all of them passed).
        digest: 48 bits identifying those subtests (``results.subtest_digest``).
    """

    payload_len: int = 0
    durations: dict[str, float] = field(default_factory=dict)
    subtests: int = 0
    digest: int = 0

    #: doubles on the wire: length, one per phase, subtest count, digest
    SIZE = 3 + len(PHASES)

    def to_array(self) -> array[float]:
        return array("d", [float(self.payload_len)]
                     + [self.durations.get(when, math.nan) for when in PHASES]
                     + [float(self.subtests), float(self.digest)])

    @classmethod
    def from_array(cls, values: Sequence[float]) -> Record:
        n = len(PHASES)
        durations = {when: values[1 + i] for i, when in enumerate(PHASES)
                     if not math.isnan(values[1 + i])}
        return cls(int(values[0]), durations, int(values[1 + n]), int(values[2 + n]))


def wait_all(requests: Sequence[MPI.Request]) -> None:
    """Block until ``requests`` complete.

    Measured here (benchmarks/bench_scaling.py, 2-8 ranks on 2 cores): a
    blocking wait beats sleep-polling by 2-6x per test, because Open MPI
    yields the core when oversubscribed and hands off without a sleep's
    overshoot. mpi4py releases the GIL while blocked, so a watchdog thread
    keeps running.
    """
    from mpi4py import MPI

    MPI.Request.Waitall(list(requests))


class Exchange:
    """The per-test gather/verdict protocol over one communicator (root: rank 0 of it)."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._records = array("d", bytes(8 * Record.SIZE * self.size))

    def gather(
        self, record: Record, payload: bytes | None
    ) -> list[tuple[Record, bytes | None]] | None:
        """Collective: the root gets every rank's ``(record, payload)``; others None."""
        from mpi4py import MPI

        comm = self.comm
        mine = record.to_array()
        if self.rank != 0:
            requests = [comm.Igather([mine, MPI.DOUBLE], None, root=0)]
            if payload is not None:
                requests.append(comm.Isend([payload, MPI.BYTE], dest=0, tag=_PAYLOAD_TAG))
            wait_all(requests)
            return None
        records = self._records
        wait_all([comm.Igather([mine, MPI.DOUBLE], [records, MPI.DOUBLE], root=0)])
        received = [Record.from_array(records[r * Record.SIZE:(r + 1) * Record.SIZE])
                    for r in range(self.size)]
        buffers: dict[int, bytearray] = {}
        requests = []
        for rank in range(1, self.size):
            if received[rank].payload_len:
                buffers[rank] = bytearray(received[rank].payload_len)
                requests.append(
                    comm.Irecv([buffers[rank], MPI.BYTE], source=rank, tag=_PAYLOAD_TAG))
        wait_all(requests)
        return [(received[rank], payload if rank == 0 else
                 (bytes(buffers[rank]) if rank in buffers else None))
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
