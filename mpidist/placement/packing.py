"""The packed run: the world's tests first, then phases of sized tests side by side.

Registered by the session under ``--with-mpi``; it takes over pytest's run
loop only when some test is sized (``placement.sizes``). Tests of the whole
world run first, in collection order, through the pipeline as before. Then,
phase by phase (``placement.planner``): every rank learns from rank 0 which
sizes still have tests, cuts the world into groups the same way, and enters
its group (``placement.subworld``); each group's root asks rank 0's
``Scheduler`` for tests and tells its ranks which to run; the pipeline runs
each one on the group, and a root other than rank 0 sends the merged result
to rank 0, which replays it -- so the report, JUnit and ``-x`` see every test
once, whichever group ran it. Rank 0 records each test's duration in pytest's
cache, for the next run's longest-first order.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
import traceback
from array import array
from typing import TYPE_CHECKING, Any, Sequence

import pytest
from _pytest.reports import TestReport

from .. import runtime
from ..history.recorder import history_path, open_history
from ..report.codec import result_of, to_json
from ..report.output import OUTPUT
from ..report.replay import replay
from ..runner.exchange import wait_all
from ..runner.markers import item_timeout
from ..runner.reruns import reruns_of
from ..runner.stops import stop_like_the_root
from ..safety.watchdog import Hang
from .planner import cut, order
from .scheduler import END, Client, Scheduler, first_index
from .sizes import SIZE, WORLD
from .subworld import SubWorld, enter, leave

if TYPE_CHECKING:
    from ..runner.pipeline import TestPipeline
    from ..safety.watchdog import Watchdog

__all__ = ["Packer"]

_CACHE_KEY = "mpidist/durations"


class Packer:
    """The plugin object that runs a session with sized tests."""

    def __init__(self, config: pytest.Config, pipeline: TestPipeline, watchdog: Watchdog,
                 pack: bool) -> None:
        self.config, self.pipeline, self.watchdog, self.pack = config, pipeline, watchdog, pack
        self.durations: dict[str, float] = {}  # rank 0: this run's, of sized tests
        self._sized: set[str] = set()  # their node ids (only their order uses durations)
        self._items: list[pytest.Item] = []
        self._index: dict[int, int] = {}  # id(item) -> its index
        self._numbers: dict[int, int] = {}  # index -> the number it was handed out as
        self._sched: Scheduler | None = None  # rank 0, while the phases run
        self._replaying = threading.Lock()  # the main thread's drain, or the job's end
        self._ended = False  # the job is ending: the report is being written elsewhere

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        if report.nodeid in self._sized and str(report.outcome) != "rerun":
            self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + \
                report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.durations and runtime.current().world.rank == 0:
            cache.set(_CACHE_KEY, {**self._cached_durations(), **self.durations})

    def _cached_durations(self) -> dict[str, float]:
        """The durations rank 0 saved in pytest's cache after the last run."""
        cache = getattr(self.config, "cache", None)
        known = cache.get(_CACHE_KEY, {}) if cache is not None else {}
        return known if isinstance(known, dict) else {}

    def _known_durations(self) -> dict[str, float]:
        """What placement orders by: the cache's durations, under each test's median over
        its recent runs in the history file (``history``)."""
        known = self._cached_durations()
        path = history_path(self.config)
        if path is not None and path.exists():
            history = open_history(path, lambda line: print(line, file=sys.stderr))
            if history is not None:
                with contextlib.closing(history), contextlib.suppress(sqlite3.Error):
                    known = {**known, **history.durations()}
        return known

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        items = session.items
        if not any(item.stash.get(SIZE, WORLD) for item in items):
            return None  # pytest's own loop
        if session.testsfailed and not self.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} errors during collection")
        if self.config.option.collectonly:
            return True
        whole = [item for item in items if not item.stash.get(SIZE, WORLD)]
        self._sized = {item.nodeid for item in items if item.stash.get(SIZE, WORLD)}
        for i, item in enumerate(whole):
            item.ihook.pytest_runtest_protocol(
                item=item, nextitem=whole[i + 1] if i + 1 < len(whole) else None)
            _raise_stop(session)
        self._items, self._index = items, {id(item): i for i, item in enumerate(items)}
        try:
            self._packed(session)
        except Exception as exc:  # any: the others wait for this rank in a collective
            self._end_the_job(exc)
        _raise_stop(session)
        return True

    def _packed(self, session: pytest.Session) -> None:
        rt = runtime.current()
        world, world_group = rt.world, self.pipeline.group
        comm = rt.comm.Dup()
        sched = self._sched = self._scheduler(comm) if world.rank == 0 else None
        client = Client(comm) if world.rank else None
        phase = 0
        try:
            while True:
                phase += 1
                head: Any = None
                if sched is not None:
                    self._drain(sched)
                    if session.shouldfail or session.shouldstop:
                        sched.stop()
                    head = (sched.sizes_left(), str(session.shouldfail or ""),
                            str(session.shouldstop or ""))
                sizes, fail, stop = comm.bcast(head, root=0)
                if world.rank:
                    stop_like_the_root(session, bool(fail), bool(stop))
                if not sizes:
                    break
                cuts = cut(sizes, world.nodes, self.pack)
                if sched is not None:
                    sched.start_phase(cuts)
                sub = enter(cuts, f"p{phase}")
                if sub is not None:
                    gid = next(i for i, (_, ranks) in enumerate(cuts) if world.rank in ranks)
                    self._run_group(sub, gid, sched, client)
                    self.pipeline.use(world_group)
                leave(sub)
                if client is not None:
                    client.settle()
                while sched is not None and not sched.phase_done():
                    sched.poll()
                    self._drain(sched)
                    time.sleep(0.001)
                wait_all([comm.Ibarrier()])
        finally:
            if sched is not None:
                sched.close()
                self._drain(sched)
                self._sched = None
        comm.Free()
        if rt.requested.strip().lower() != "none":
            runtime.restore_default_group()  # collective: the world's group again

    def _end_the_job(self, exc: Exception) -> None:
        """This rank cannot go on with the phases (its group's process group failed to
        start, say) while the other ranks wait for it in a collective: say why here,
        then end this rank so the report names it -- a rank > 0 exits and its keeper
        posts how it died, rank 0 reports itself -- never a silent hang."""
        world = self.watchdog.world
        how = f"the packed run failed here: {type(exc).__name__}: {exc}".splitlines()[0]
        text = f"{traceback.format_exc()}mpidist: {world.describe(world.rank)}: {how}\n"
        output = self.config.stash.get(OUTPUT, None)  # a rank > 0's fd 2 goes nowhere
        os.write(2 if output is None else output.launcher_stderr, text.encode())
        if world.rank or self.watchdog.on_hang is None:
            os._exit(int(pytest.ExitCode.INTERNAL_ERROR))
        self.watchdog.on_hang(Hang(-1, None, "died", 0.0, self.watchdog.grace, {}, [0], (),
                                   {0: how}))

    def _scheduler(self, comm: Any) -> Scheduler:
        items = self._items
        opt = self.config.option
        stepwise = self.config.getoption("stepwise", False) or \
            self.config.getoption("stepwise_skip", False)
        sched = Scheduler(comm, items, self.watchdog, [reruns_of(i)[0] + 1 for i in items],
                          [item_timeout(i, self.pipeline.default_timeout) for i in items],
                          1 if stepwise else int(opt.maxfail or 0))
        known = self._known_durations()
        queues: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            size = item.stash.get(SIZE, WORLD)
            if size:
                queues.setdefault(size, []).append(i)
        ids = [item.nodeid for item in items]
        sched.load({size: order(q, ids, known) for size, q in queues.items()})
        sched.start()
        return sched

    def _run_group(self, sub: SubWorld, gid: int, sched: Scheduler | None,
                   client: Client | None) -> None:
        """This rank's part of its group's phase: the root asks, every rank runs."""
        from mpi4py import MPI

        group, items = sub.group, self._items
        root = group.is_root
        self.pipeline.use(group, self._sink(client) if root and client is not None else None)

        def ask() -> tuple[int, int]:
            if sched is not None:
                return sched.next_for(gid)
            assert client is not None
            return client.ask(gid)

        order_ = array("q", [0, 0, 0, 0])
        current = ask() if root else (END, 0)
        while True:
            if root:
                upcoming = ask() if current[0] != END else (END, 0)
                order_[:] = array("q", [*current, *upcoming])
            wait_all([sub.control.Ibcast([order_, MPI.INT64_T], root=0)])
            index, number, after = order_[0], order_[1], order_[2]
            if index == END:
                break
            self._numbers[index] = number
            item = items[index]
            self.pipeline.index = first_index(number) - 1
            item.ihook.pytest_runtest_protocol(
                item=item, nextitem=items[after] if after != END else None)
            if sched is not None:  # rank 0: log what the other groups sent meanwhile
                self.pipeline.flush()
                sched.poll()
                self._drain(sched)
                if item.session.shouldfail or item.session.shouldstop:
                    sched.stop()
            current = (order_[2], order_[3])
        self.pipeline.flush()

    def _sink(self, client: Client) -> Any:
        """A group root's delivery of a merged result to rank 0 (JSON)."""
        config = self.config

        def send(item: pytest.Item, merged: list[TestReport]) -> None:
            index = self._index[id(item)]
            client.send(to_json(
                config, merged, [], number=self._numbers[index], index=index,
                failed=any(r.failed for r in merged),
                last=not any(str(r.outcome) == "rerun" for r in merged)))
        return send

    def _drain(self, sched: Scheduler, hook: Any = None, reported: Sequence[Any] = ()) -> None:
        """Replay the results other groups sent: rank 0's main thread between its own
        tests, or (``hook``: the config's, the main thread holds the items') the thread
        reporting the job's end -- one at a time, and nothing after that. The tests
        that report names (``reported``) are its to log."""
        with self._replaying:
            if self._ended:
                return
            while sched.inbox:
                data = sched.inbox.popleft()
                item = self._items[int(data["index"])]
                if any(item is other for other in reported):
                    continue
                result = result_of(self.config, 0, data)
                replay(hook or item.ihook, item.nodeid, item.location, result.reports or [])
            if hook is not None:
                self._ended = True

    def wind_down(self, hook: Any, reported: Sequence[Any], wait: float) -> None:
        """Rank 0, from the thread reporting a hang, a death or SIGTERM (the main
        thread may be stuck in its own test): no more tests for any group, and every
        result the other groups finish within ``wait`` s goes into the report, but for
        the tests the report names (``reported``). A test still running then is left
        out: it may not have begun (a root asks one test ahead), and a report must not
        record a test that never ran."""
        sched = self._sched
        if sched is None:
            return
        sched.stop()
        named = {self._index.get(id(item), -1) for item in reported}
        deadline = time.monotonic() + wait
        while sched.serving() and sched.awaited() - named and time.monotonic() < deadline:
            time.sleep(0.01)
        self._drain(sched, hook, reported)


def _raise_stop(session: pytest.Session) -> None:
    if session.shouldfail:
        raise session.Failed(session.shouldfail)
    if session.shouldstop:
        raise session.Interrupted(session.shouldstop)
