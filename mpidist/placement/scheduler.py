"""Rank 0 hands packed tests to groups as they ask for them, and takes their results.

Dynamic, as pytest-xdist's load scheduling: a group that finishes asks for
the next test of its size, so one slow test never idles the others. Rank 0
is itself in a group and runs tests, so it serves the others from a thread
(MPI_THREAD_MULTIPLE; else between its own tests) that never touches pytest:
results wait in ``inbox`` until the main thread replays them. A group's
root asks one test ahead (it must know the next item for pytest's fixture
teardown). Every message is a fixed int array or the JSON the codec writes,
on a communicator of its own.
"""

from __future__ import annotations

import json
import threading
import time
from array import array
from collections import deque
from typing import TYPE_CHECKING, Any, Sequence

from ..runner.exchange import Outbox, wait_all
from .planner import Cut

if TYPE_CHECKING:
    from mpi4py import MPI

    from ..safety.watchdog import Watchdog

__all__ = ["END", "Client", "Scheduler", "first_index"]

END = -1  #: "no more tests for your group in this phase"
_ASK, _ANSWER, _RESULT = 1, 2, 3


def first_index(number: int) -> int:
    """The watchdog's number for the first attempt of handed-out test ``number``
    (apart from the world's tests' 1, 2, ...; reruns take the next ones)."""
    return (1 << 24) + number * 1024


class Scheduler:
    """Rank 0's queues, one per size, longest test first.

    Args:
        comm: the scheduling communicator (a duplicate of the world's).
        items: the session's items (indices refer to them).
        watchdog: rank 0's, told which tests other groups run.
        attempts: how many times each item may run (1 + its reruns).
        timeouts: each item's time limit (for the report, if its group hangs).
        maxfail: stop handing out tests after this many failed results (0: never).
    """

    def __init__(self, comm: MPI.Comm, items: Sequence[Any], watchdog: Watchdog,
                 attempts: Sequence[int], timeouts: Sequence[float], maxfail: int) -> None:
        self.comm, self.items, self.watchdog = comm, items, watchdog
        self.attempts, self.timeouts, self.maxfail = attempts, timeouts, maxfail
        self.inbox: deque[dict[str, Any]] = deque()  # parsed results, for the main thread
        self.stopped = False
        self._queues: dict[int, deque[int]] = {}
        self._cuts: list[Cut] = []
        self._main = 0
        self._ended: set[int] = set()
        self._out: dict[int, int] = {}  # handed to other groups, no result yet: number -> index
        self._number = 0
        self._failures = 0
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, queues: dict[int, list[int]]) -> None:
        self._queues = {size: deque(order) for size, order in queues.items() if order}

    def sizes_left(self) -> list[int]:
        with self._lock:
            return [] if self.stopped else sorted(k for k, q in self._queues.items() if q)

    def start_phase(self, cuts: list[Cut]) -> None:
        with self._lock:
            self._cuts, self._main, self._ended = cuts, cuts[0][0], set()

    def stop(self) -> None:
        """-x/--maxfail/--sw or a stop on rank 0: no more tests for anyone."""
        self.stopped = True

    def next_for(self, gid: int) -> tuple[int, int]:
        """The next test for group ``gid``: (item index, number), or (END, 0)."""
        with self._lock:
            size, ranks = self._cuts[gid]
            main_done = all(g in self._ended for g, (k, _) in enumerate(self._cuts)
                            if k == self._main)
            queue = self._queues.get(size)
            if self.stopped or not queue or (size != self._main and main_done):
                self._ended.add(gid)
                return END, 0
            index = queue.popleft()
            self._number += 1
            if ranks[0] != 0:
                self._out[self._number] = index
                self.watchdog.watch(first_index(self._number), self.attempts[index],
                                    self.items[index], self.timeouts[index], ranks)
            return index, self._number

    def awaited(self) -> set[int]:
        """Item indices handed to other groups whose (last) result has not come."""
        with self._lock:
            return set(self._out.values())

    def serving(self) -> bool:
        """Whether a thread receives results (else only ``poll`` on the main thread)."""
        return self._thread is not None

    def phase_done(self) -> bool:
        with self._lock:
            return len(self._ended) == len(self._cuts) and not self._out

    # -- serving other groups -------------------------------------------------------

    def start(self) -> None:
        from mpi4py import MPI

        if MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self._thread = threading.Thread(target=self._serve, name="mpidist-scheduler",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._quit.set()
        if self._thread is not None:
            self._thread.join()

    def poll(self) -> None:
        """Answer what has arrived (the main thread, when there is no serving thread)."""
        if self._thread is None:
            while self._serve_one():
                pass

    def _serve(self) -> None:
        while not self._quit.is_set():
            if not self._serve_one():
                time.sleep(0.0005)

    def _serve_one(self) -> bool:
        from mpi4py import MPI

        status = MPI.Status()
        if not self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            return False
        source, tag = status.Get_source(), status.Get_tag()
        if tag == _ASK:
            gid = array("i", [0])
            self.comm.Recv([gid, MPI.INT], source, _ASK)
            self.comm.Send([array("q", self.next_for(gid[0])), MPI.INT64_T], source, _ANSWER)
            return True
        data = bytearray(status.Get_count(MPI.BYTE))
        self.comm.Recv([data, MPI.BYTE], source, _RESULT)
        result = json.loads(data)
        number = int(result["number"])
        with self._lock:
            if result["last"]:  # (a rerun follows a result marked "rerun")
                self._out.pop(number, None)
            if result["failed"]:
                self._failures += 1
                if self.maxfail and self._failures >= self.maxfail:
                    self.stopped = True
        self.inbox.append(result)
        if result["last"]:
            self.watchdog.unwatch(first_index(number))
        return True


class Client:
    """A group root's side (rank > 0): ask for work, send results."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self._outbox = Outbox()

    def ask(self, gid: int) -> tuple[int, int]:
        from mpi4py import MPI

        answer = array("q", [0, 0])
        request = self.comm.Irecv([answer, MPI.INT64_T], 0, _ANSWER)
        self.comm.Send([array("i", [gid]), MPI.INT], 0, _ASK)
        wait_all([request])
        return int(answer[0]), int(answer[1])

    def send(self, data: bytes) -> None:
        from mpi4py import MPI

        self._outbox.hold([self.comm.Isend([data, MPI.BYTE], 0, _RESULT)], data)

    def settle(self) -> None:
        """Wait until rank 0 has every result this root sent."""
        self._outbox.settle()
