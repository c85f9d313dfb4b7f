"""The Work a collective returns: MPI requests in flight, and what to do after them.

``async_op=False`` runs the blocking MPI call (the fastest path) and returns a
finished Work; ``async_op=True`` starts the non-blocking call (``I*``) and
returns a Work whose ``wait`` completes it, so communication overlaps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.distributed as dist
from mpi4py import MPI

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["DONE", "MPIWork", "all_of"]

class MPIWork(dist._Work):  # type: ignore[misc,name-defined]  # private in torch's stubs
    """A collective's handle: MPI requests still in flight, and what to do after.

    ``wait`` completes the requests, then runs the finishers (copy back to
    non-contiguous outputs, divide for AVG, unpack a gather). A blocking call
    returns one with nothing in flight.
    """

    def __init__(
        self,
        what: str,
        outputs: list[Tensor],
        requests: Sequence[MPI.Request] = (),
        finish: Sequence[Callable[[], None]] = (),
        status: MPI.Status | None = None,
    ) -> None:
        super().__init__()
        self.what = what
        self.outputs = outputs
        self.requests = list(requests)
        self.finishers = list(finish)
        self.status = status
        self.done = not self.requests
        if self.done:
            self._finish()

    def _finish(self) -> None:
        for finish in self.finishers:
            finish()
        self.finishers = []

    def wait(self, timeout: timedelta | None = None) -> bool:
        if self.done:
            return True
        limit = timeout.total_seconds() if isinstance(timeout, timedelta) else 0.0
        if limit <= 0:
            MPI.Request.Waitall(self.requests, self._statuses())
        else:
            deadline = MPI.Wtime() + limit
            while not MPI.Request.Testall(self.requests, self._statuses()):
                if MPI.Wtime() > deadline:
                    raise RuntimeError(f"mpi4py backend: {self.what} timed out after "
                                       f"{limit:g} s")
        self.done = True
        self._finish()
        return True

    def _statuses(self) -> list[MPI.Status] | None:
        return [self.status] if self.status is not None else None

    def is_completed(self) -> bool:
        if not self.done and MPI.Request.Testall(self.requests, self._statuses()):
            self.done = True
            self._finish()
        return self.done

    def is_success(self) -> bool:
        return self.is_completed()

    def exception(self) -> None:
        return None

    def result(self) -> list[Tensor]:
        self.wait()
        return self.outputs

    def synchronize(self) -> None:
        self.wait()

    def get_future(self) -> torch.futures.Future[list[Tensor]]:
        """A future holding the outputs; it completes when the collective does."""
        self.wait()
        future: torch.futures.Future[list[Tensor]] = torch.futures.Future()
        future.set_result(self.outputs)
        return future

    def _source_rank(self) -> int:
        self.wait()
        return self.status.Get_source() if self.status is not None else -1

    source_rank = _source_rank


#: the finished Work every blocking fast-path call returns (nothing in it varies)
DONE = MPIWork("done", [])


def all_of(what: str, outputs: list[Tensor], works: list[MPIWork]) -> MPIWork:
    requests = [r for w in works for r in w.requests]
    finishers = [f for w in works for f in w.finishers]
    for work in works:
        work.done, work.finishers = True, []
    return MPIWork(what, outputs, requests, finishers)

