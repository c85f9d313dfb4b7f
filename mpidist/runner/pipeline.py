"""One test on one group of ranks: agree, run without logging, exchange, merge, replay.

Every rank of the group runs the test through pytest's ``runtestprotocol(log=False)``;
subtest reports that pytest would log mid-test are held back as well (``held``), so
nothing reaches a reporter on any rank until the group's root has every rank's result.
Before the body the ranks agree on it (a setup skip or error on some ranks stops the
body everywhere). The root merges the results (``merge``) and replays ONE report per
phase (``replay``). Most tests need nothing more: the other ranks send their result
and go on; the root collects it once the next test's setup is done, before its part of
that body's agreement, and logs it after, so after a test no rank waits for another. A
test whose merged result could stop the session or run it again (``-x``, ``--maxfail``,
``--sw``, ``--reruns``, a reporter outside pytest and mpidist) and the last test get a
verdict: the root broadcasts whether the session must stop, so every rank stops at the
same test, and whether the test runs again (``reruns``), so every rank reruns it or none
does -- after the replay when a rank failed, before it when all passed (``_exchange``).
The root says at the body agreement which kind the test is. The watchdog hears when the
test begins, when this rank is done (failed?), when the group is past it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator, Protocol

import pytest
from _pytest.reports import TestReport
from _pytest.runner import runtestprotocol

from ..report.codec import decode, encode
from ..report.merge import merge_test
from ..report.replay import replay
from ..report.results import AGREED, LEFT_EARLY, RankResult, mark_call, test_outcome
from .agreement import PASSED, Agreement, setup_status
from .exchange import Exchange, wait_all
from .group import Group
from .held import Held
from .markers import ISOLATED, MARGIN, item_timeout
from .reruns import mark_rerun, prepare_rerun, reruns_of
from .sticky import Sticky
from .stops import may_stop_on_a_pass, needs_verdict, stop_like_the_root

if TYPE_CHECKING:
    from ..report.output import RankOutput
    from ..safety.watchdog import Watchdog

__all__ = ["Isolates", "TestPipeline"]


class Isolates(Protocol):
    """What the pipeline asks of isolation (``isolation.rank.Isolation``, a stage
    above it that the session hands in): run a marked test in a fresh child."""
    def begin(self, group: Group, index: int, timeout: float) -> None: ...
    def run(self, item: pytest.Item, group: Group, index: int,
            timeout: float) -> tuple[list[TestReport], list[TestReport]]: ...

@dataclass
class _Pending:
    """The root's part of a test whose other ranks' results are still arriving."""
    index: int
    ihook: Any
    item: pytest.Item
    reports: list[TestReport]
    subtests: list[TestReport]
    request: Any  # the posted gather (``Exchange.post_gather``)


class TestPipeline:
    """The plugin object that runs each test on ``group``.

    Args:
        config: the pytest config.
        group: the ranks every test runs on, with their communicator.
        watchdog: this rank's deadline thread.
        output: where this rank's own per-test lines go.
        default_timeout: seconds a test may take unless its markers say otherwise.
    """

    __test__ = False  # not a test class, whatever its name

    def __init__(self, config: pytest.Config, group: Group, watchdog: Watchdog,
                 output: RankOutput, default_timeout: float) -> None:
        self.config, self.group, self.exchange = config, group, Exchange(group.comm)
        self.watchdog, self.output, self.default_timeout = watchdog, output, default_timeout
        self.index = 0  # number of the test in flight, the same on every rank
        self._held = Held()
        self._sync = True  # this test waits for the root's verdict (told at the agreement)
        # -x/--maxfail/--sw: a failure stops the session (read once: fixed for the session)
        self._stops_on_failure = bool(config.option.maxfail or config.getoption(
            "stepwise", False) or config.getoption("stepwise_skip", False))
        self._pending: _Pending | None = None  # the root: a test not logged yet
        self._logstart: tuple[Any, pytest.Item] | None = None  # the root: logged after it
        self._lock = threading.Lock()
        self._frozen = False
        self._posted: Agreement | None = None  # the root's part of the next agreement
        self._settling: _Pending | None = None  # the root's main thread collects it
        self._logging = False  # ... and is logging it now
        self.sink: Callable[[pytest.Item, list[TestReport]], None] | None = None
        self.isolation: Isolates | None = None  # runs the tests marked ``ISOLATED``
        self.sticky = Sticky(group.world.describe(group.world.rank))  # a poisoned CUDA context

    def use(self, group: Group,
            sink: Callable[[pytest.Item, list[TestReport]], None] | None = None) -> None:
        """Run the next tests on ``group`` (packing); a root other than rank 0 hands
        each merged result to ``sink`` (to rank 0) instead of logging it."""
        self.flush()
        self.group, self.exchange, self.sink = group, Exchange(group.comm), sink

    def _agree_on_body(self, item: pytest.Item, status: int, reason: str) -> str:
        """Collective over the group, once per test: "" if every rank may run the
        body, else why not (``agreement``). Ranks whose setup passed call this just
        before the body; the others after their phases -- one call per rank per
        test, so it always matches. The root may have posted its part already
        (``pytest_runtest_makereport``)."""
        posted, self._posted = self._posted, None
        if self._pending is not None:  # the root: the previous test is logged first
            self._settle()
        if posted is None:
            posted = Agreement.post(self.group, status, item.session, self._sync)
        wait_all([posted.request])
        verdict, stop_fail, stop, self._sync = posted.outcome(self.group, reason)
        if not self.group.is_root:  # every rank has sent the previous test: the group is past it
            self.watchdog.settled()
            stop_like_the_root(item.session, stop_fail, stop)
        item.stash[AGREED] = verdict
        return verdict

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        verdict = self._agree_on_body(item, PASSED, "")
        if verdict:  # another rank skipped or failed setup: nobody runs the body
            pytest.skip(verdict)
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """The root logs the previous test once this one's setup is done, outside every
        phase's clock and capture; with its results in, it posts its part of the body
        agreement (setup passed): the others start while it logs, and none dies in the
        body with a large result unsent (a rendezvous needs its sender)."""
        report = yield
        if call.when == "setup" and self._pending is not None:
            self._settle((lambda: self._post(item.session)) if report.passed else None)
        return report

    def _post(self, session: pytest.Session) -> None:
        self._posted = Agreement.post(self.group, PASSED, session, self._sync)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        try:
            result = yield
        except (session.Interrupted, session.Failed):  # every rank stopped at the same test
            self._park()
            self.flush()
            raise
        self._park()
        self.flush()
        return result

    def flush(self) -> None:
        """Every test this rank ran is logged (the root) or delivered (the others)."""
        if self._pending is not None:
            self._settle()
        self.exchange.settle()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        reruns, delay = reruns_of(item)
        for attempt in range(reruns + 1):
            if reruns:
                item.execution_count = attempt + 1  # type: ignore[attr-defined]
            if not self._run(item, nextitem, attempt, attempt < reruns):
                break
            prepare_rerun(item)  # every rank: the root said the test runs again
            if delay:
                time.sleep(delay)
        return True

    def _run(self, item: pytest.Item, nextitem: pytest.Item | None, attempt: int,
             may_rerun: bool) -> bool:
        """One attempt at the test on every rank of the group; whether it runs again."""
        group, watchdog = self.group, self.watchdog
        root = group.is_root
        self.index += 1
        if root:
            self._sync = needs_verdict(item, nextitem, may_rerun or bool(attempt),
                                       self._stops_on_failure)
            if self._pending is not None and self._sync:
                self._settle()
        ihook = item.ihook
        timeout = item_timeout(item, self.default_timeout)
        isolated = item.stash.get(ISOLATED, "") if self.isolation is not None else ""
        if isolated:
            assert self.isolation is not None
            self.isolation.begin(group, self.index, timeout)
        watchdog.begin(self.index, item, timeout + MARGIN if isolated else timeout, group.ranks)
        if root and self.sink is None:
            if self._pending is None:
                self._start(ihook, item)
            else:  # logged by ``_settle``, after the previous test
                self._logstart = (ihook, item)
        with self._held.hold(item.session) as subtests:
            if isolated == "item":  # in a child of this rank's template (``isolate``)
                assert self.isolation is not None
                self._agree_on_body(item, PASSED, "")  # the children agree on the rest
                reports, theirs = self.isolation.run(item, group, self.index, timeout)
                subtests.extend(theirs)
            else:
                self.sticky.before(item)  # a poisoned rank skips, saying why
                reports = runtestprotocol(item, nextitem=nextitem, log=False)
                self.sticky.after(item, reports)
        if AGREED not in item.stash:  # the body never started here: agree anyway
            setup = reports[0]
            reason = setup.longrepr[2] if isinstance(setup.longrepr, tuple) else ""
            self._agree_on_body(item, setup_status(setup), reason.removeprefix("Skipped: "))
        mark_call(item, reports)
        # A failure is never compact: the payload serialized for the exchange is
        # the one the watchdog sends if the test then hangs (serialized once); the
        # root serializes only then, since it keeps its own objects. A rank that
        # left the body early counts too: the ranks that did not are in the body
        # without it, and get --mpi-peer-grace to finish.
        failed = any(r.failed or getattr(r, LEFT_EARLY, False) for r in reports) or any(
            r.failed for r in subtests)
        record, payload = encode(self.config, reports, subtests,
                                 serialize=failed or not root)
        watchdog.finished(payload if failed else None)
        if not self._sync:
            # Nothing about this test can stop the session or run it again: no
            # verdict. The other ranks send and go on; the root logs it once the
            # next test's setup is done (``_settle``), so no rank waits here.
            if root:
                self._pending = _Pending(self.index, ihook, item, reports, list(subtests),
                                         self.exchange.post_gather(record))
            else:
                self.exchange.settle()  # the previous test's (long since collected)
                self.exchange.send(record, payload)
                self._write_line(item, reports)
            watchdog.end(keep=True)  # answers for it until the group is past it
            return False
        stop_fail, stop, again = self._exchange(item, reports, subtests, record, payload,
                                                attempt, may_rerun)
        watchdog.end()
        if not root:
            stop_like_the_root(item.session, bool(stop_fail), bool(stop))
        self._write_line(item, reports)
        return bool(again)

    def salvage(self, hung: int, wait: float) -> tuple[int, pytest.Item] | None:
        """The root, from the thread reporting test ``hung``: log the pending test
        before it if its results come within ``wait`` s (whichever of this and
        ``_settle`` comes first takes it); else its number and item: a rank never
        finished it, so the report belongs to it."""
        from mpi4py import MPI

        deadline = time.monotonic() + wait
        with self._lock:
            pending = self._pending
            if pending is None or pending.index == hung:
                pending = None  # nothing pending, or it is the hung test itself
            else:
                self._pending = None
        if pending is None:
            return self._await_settling(hung, deadline)
        if MPI.Query_thread() != MPI.THREAD_MULTIPLE:
            return None  # MPI from this thread is not allowed
        gathered = self.exchange.collect(pending.request, wait=wait)
        if gathered is None:
            return pending.index, pending.item
        self._log(pending, gathered)
        return None

    def _await_settling(self, hung: int, deadline: float) -> tuple[int, pytest.Item] | None:
        """``salvage`` when the main thread is itself collecting the test before:
        let it log that test if its results come in time (waiting for the logging
        to end); else the report is that test's, and the main thread logs it not."""
        while time.monotonic() < deadline + 5.0:  # a write that blocks: go on without it
            with self._lock:
                settling = self._settling
                if settling is None or settling.index == hung:
                    return None
                if time.monotonic() > deadline and not self._logging:
                    self._settling, self._frozen = None, True  # (``_settle`` parks)
                    return settling.index, settling.item
            time.sleep(0.01)
        return None

    def freeze(self) -> None:
        """A hang or SIGTERM is being reported (another thread): the main thread logs no more."""
        with self._lock:  # after any logstart ``_start`` is making
            self._frozen = True

    def _start(self, ihook: Any, item: pytest.Item) -> None:
        """The root logs that ``item`` starts, unless a report is ending the job (in
        ``mpidist run``'s journal it would read as the test in flight when the job died)."""
        with self._lock:
            if not self._frozen:
                ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
                return
        self._park()

    def _park(self) -> None:
        """The main thread, once frozen: wait for the job's end. A rank that was
        stuck may still send its result before the launcher kills this process,
        and a second summary or JUnit file would contradict the report."""
        if self._frozen and threading.current_thread() is threading.main_thread():
            self.output.release_terminal()  # (parked inside ``held_flushes``)
            while True:
                time.sleep(3600)

    def _write_line(self, item: pytest.Item, reports: list[TestReport]) -> None:
        if self.output.recording:
            self.output.write_line(f"{test_outcome(reports).upper()} {item.nodeid}")

    def _settle(self, collected: Callable[[], None] | None = None) -> None:
        """The root: collect, merge and log the pending test; then the next logstart.
        ``collected``: called once the results are in, before the logging."""
        with self._lock:  # ``salvage`` may take it from the thread reporting a hang
            pending, self._pending = self._pending, None
            self._settling = pending
        if pending is None:
            return
        self.watchdog.settling = True  # a stop now belongs to that test
        try:
            gathered = self.exchange.collect(pending.request)
        finally:
            self.watchdog.settling = False
        with self._lock:  # else a report took the test over: it has the last word
            self._logging = ours = self._settling is pending
        if not ours:
            self._park()
        if collected is not None:
            collected()
        self.watchdog.settled()
        try:
            self._log(pending, gathered)
        finally:
            with self._lock:
                self._settling, self._logging = None, False

    def _log(self, pending: _Pending, gathered: list[tuple[Any, bytes | None]]) -> None:
        self._park()
        item = pending.item
        with self.output.held_flushes():
            self._deliver(pending.ihook, item,
                          self._merge(pending.reports, pending.subtests, gathered))
            self._write_line(item, pending.reports)
            if self._logstart is not None:
                ihook, current = self._logstart
                self._logstart = None
                self._start(ihook, current)

    def _deliver(self, ihook: Any, item: pytest.Item, merged: list[TestReport]) -> None:
        if self.sink is not None:
            self.sink(item, merged)
        else:
            replay(ihook, item.nodeid, item.location, merged, started=True)

    def _merge(self, reports: list[TestReport], subtests: list[TestReport],
               gathered: list[tuple[Any, bytes | None]]) -> list[TestReport]:
        """The root: its own reports and the other ranks' gathered ones, merged."""
        results = [RankResult(0, reports, list(subtests))] + [
            decode(self.config, rank, rec, data)
            for rank, (rec, data) in enumerate(gathered) if rank]
        return merge_test(self.group, results)

    def _exchange(self, item: pytest.Item, reports: list[TestReport],
                  subtests: list[TestReport], record: Any, payload: bytes | None,
                  attempt: int, may_rerun: bool) -> list[int]:
        """Results to the root, which merges and replays them; its verdict back:
        stop (-x/--maxfail), stop, and whether the test runs again (--reruns)."""
        if not self.group.is_root:
            self.exchange.gather(record, payload)
            return self.exchange.verdict([0, 0, 0])
        gathered = self.exchange.gather(record, None)  # the root keeps its objects
        assert gathered is not None
        merged = self._merge(reports, subtests, gathered)
        self._park()
        failed = any(r.failed for r in merged)
        again = may_rerun and failed
        if may_rerun or attempt:
            mark_rerun(merged, attempt, again)
        session = item.session
        if failed or session.shouldfail or session.shouldstop or may_stop_on_a_pass(item):
            with self.output.held_flushes():
                self._deliver(item.ihook, item, merged)
            return self.exchange.verdict([int(bool(session.shouldfail)),
                                          int(bool(session.shouldstop)), int(again)])
        # Every rank passed, and pytest's and mpidist's reporters stop a session only on
        # a failure (-x, --maxfail, --sw): the verdict is known before the replay, so it
        # goes first and the other ranks start the next test while the root logs.
        buf, request = self.exchange.post_verdict([0, 0, 0])
        with self.output.held_flushes():
            self._deliver(item.ihook, item, merged)
        wait_all([request])
        return list(buf)
