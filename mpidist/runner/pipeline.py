"""One test on one group of ranks: agree, run without logging, exchange, merge, replay.

Every rank of the group runs the test through pytest's
``runtestprotocol(log=False)``; subtest reports that pytest would log
mid-test are held back as well, so nothing reaches a reporter on any rank
until the group's root has every rank's result. Before the body the ranks
agree on it (a setup skip or error on some ranks stops the body everywhere).
The root merges the results (``merge``), replays ONE report per phase
(``replay``) and broadcasts whether the session must stop, so every rank
stops at the same test, and whether the test runs again (``reruns``), so every
rank reruns it or none does -- after the replay when a rank failed, before it
when all passed (the other ranks then start the next test while the root
writes; see ``_exchange``). The watchdog is told when the test begins, when
this rank is done with it (with its failure, if any) and when the group is
past it.
"""

from __future__ import annotations

import os
import time
import types
from array import array
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generator, Iterator, cast

import pluggy
import pytest
from _pytest.reports import TestReport
from _pytest.runner import runtestprotocol

from .codec import decode, encode
from .exchange import Exchange, wait_all
from .markers import item_timeout
from .merge import merge_test
from .replay import replay
from .reruns import mark_rerun, prepare_rerun, reruns_of
from .results import CALL_MARKS, COLLECTIVE_SKIP, LEFT_EARLY, RankResult, test_outcome

if TYPE_CHECKING:
    from ..safety.watchdog import Watchdog
    from .group import Group
    from .output import RankOutput

__all__ = ["TestPipeline"]

_AGREED = pytest.StashKey[str]()  # this rank took part in the item's body agreement

# status of this rank's setup, for the agreement before the body (max wins)
_SETUP_PASSED, _SETUP_SKIPPED, _SETUP_FAILED = 0, 1, 2


class _HeldHooks:
    """The hook relay a test sees while it runs: ``pytest_runtest_logreport`` is held."""

    def __init__(self, real: Any, held: _Held) -> None:
        self._real = real
        self._held = held

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._real, name)
        setattr(self, name, value)  # as pytest's FSHookProxy: looked up once
        return value

    def pytest_runtest_logreport(self, *, report: TestReport) -> None:
        self._held.reports.append(report)


class _Held:
    """Every report logged during a test, held (pytest 9 subtests log mid-test).

    pytest asks ``session.gethookproxy`` on every ``item.ihook`` access; the
    relays are made once per path for the whole session, so holding costs a
    dict lookup per hook call.
    """

    def __init__(self) -> None:
        self.reports: list[TestReport] = []
        self._relays: dict[os.PathLike[str], pluggy.HookRelay] = {}

    @contextmanager
    def hold(self, session: pytest.Session) -> Iterator[list[TestReport]]:
        real, relays = session.gethookproxy, self._relays
        self.reports = held = cast(list[TestReport], [])

        def held_proxy(fspath: os.PathLike[str]) -> pluggy.HookRelay:
            relay = relays.get(fspath)
            if relay is None:
                relay = relays[fspath] = cast(pluggy.HookRelay, _HeldHooks(real(fspath), self))
            return relay

        session.gethookproxy = held_proxy  # type: ignore[method-assign]
        try:
            yield held
        finally:
            del session.gethookproxy


#: reporters known to stop a session on failures only: pytest's, mpidist's, and
#: pytest-rerunfailures' (its hook, with xdist installed, tidies the stats)
_PASSIVE_REPORTERS = ("_pytest.", "mpidist.", "pytest_rerunfailures")


def _may_stop_on_a_pass(item: pytest.Item) -> bool:
    """Whether a ``pytest_runtest_logreport`` outside pytest and mpidist could stop
    the session on a passing report (pytest's own stop only on failures). Such a
    stop cannot be undone (pytest refuses to unset ``shouldstop``), so with one
    registered the verdict always waits for the replay."""
    for impl in item.ihook.pytest_runtest_logreport.get_hookimpls():
        plugin = impl.plugin
        name = (plugin.__name__ if isinstance(plugin, types.ModuleType)
                else type(plugin).__module__)
        if not name.startswith(_PASSIVE_REPORTERS):
            return True
    return False


def _mark_call(item: pytest.Item, reports: list[TestReport]) -> None:
    """Put on this rank's call report what the runner and the layers above say
    about it: a skip made by the body agreement (``COLLECTIVE_SKIP``) and the
    item's ``CALL_MARKS``. Once per test, after the fact: a hook wrapper would
    run for every report (each subtest's too)."""
    agreed = item.stash.get(_AGREED, "")
    del item.stash[_AGREED]
    marks = item.stash.get(CALL_MARKS, ())
    if not (agreed or marks):
        return
    if marks:
        del item.stash[CALL_MARKS]
    for report in reports:
        if report.when == "call":
            if agreed and report.skipped:
                setattr(report, COLLECTIVE_SKIP, True)
            for name in marks:
                setattr(report, name, True)


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
        self.config = config
        self.group = group
        self.exchange = Exchange(group.comm)
        self.watchdog = watchdog
        self.output = output
        self.default_timeout = default_timeout
        self.index = 0  # number of the test in flight, the same on every rank
        self._held = _Held()

    def _agree_on_body(self, item: pytest.Item, status: int, reason: str) -> str:
        """Collective over the group, once per test: "" if every rank may run the
        body, else why not.

        Ranks whose setup passed call this just before the body; the others
        after their phases -- one call per rank per test, so it always matches.
        """
        from mpi4py import MPI

        comm = self.group.comm
        verdict = ""
        mine, worst = array("i", [status]), array("i", [0])
        comm.Allreduce([mine, MPI.INT], [worst, MPI.INT], op=MPI.MAX)  # no pickling per test
        if worst[0] != _SETUP_PASSED:
            states = comm.allgather((status, reason))
            worst = max(s for s, _ in states)
            ranks = [r for r, (s, _) in enumerate(states) if s == worst]
            where = self.group.describe_ranks(ranks)
            if worst == _SETUP_FAILED:
                verdict = f"not run: setup failed on {where}"
            else:
                reasons = sorted({states[r][1] for r in ranks})
                verdict = f"skipped on {where}: {'; '.join(reasons)}"
        item.stash[_AGREED] = verdict
        return verdict

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        verdict = self._agree_on_body(item, _SETUP_PASSED, "")
        if verdict:  # another rank skipped or failed setup: nobody runs the body
            pytest.skip(verdict)
        return (yield)

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
        self.index += 1
        watchdog.begin(self.index, item, item_timeout(item, self.default_timeout), group.ranks)
        if group.is_root:
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        with self._held.hold(item.session) as subtests:
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if _AGREED not in item.stash:  # the body never started here: agree anyway
            setup = reports[0]
            status = (_SETUP_FAILED if setup.failed else
                      _SETUP_SKIPPED if setup.skipped else _SETUP_PASSED)
            reason = setup.longrepr[2] if isinstance(setup.longrepr, tuple) else ""
            self._agree_on_body(item, status, reason.removeprefix("Skipped: "))
        _mark_call(item, reports)
        # A failure is never compact: the payload serialized for the exchange is
        # the one the watchdog sends if the test then hangs (serialized once); the
        # root serializes only then, since it keeps its own objects. A rank that
        # left the body early counts too: the ranks that did not are in the body
        # without it, and get --mpi-peer-grace to finish.
        failed = any(r.failed or getattr(r, LEFT_EARLY, False) for r in reports) or any(
            r.failed for r in subtests)
        record, payload = encode(self.config, reports, subtests,
                                 serialize=failed or not group.is_root)
        watchdog.finished(payload if failed else None)
        stop_fail, stop, again = self._exchange(item, reports, subtests, record, payload,
                                                attempt, may_rerun)
        watchdog.end()
        session = item.session
        if not group.is_root:
            if stop_fail and not session.shouldfail:
                session.shouldfail = "rank 0 stopped the session (-x/--maxfail)"
            if stop and not session.shouldstop:
                session.shouldstop = "rank 0 stopped the session"
        if self.output.recording:
            self.output.write_line(f"{test_outcome(reports).upper()} {item.nodeid}")
        return bool(again)

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
        results = [RankResult(0, reports, list(subtests))] + [
            decode(self.config, rank, rec, data)
            for rank, (rec, data) in enumerate(gathered) if rank]
        merged = merge_test(self.group, results)
        failed = any(r.failed for r in merged)
        again = may_rerun and failed
        if may_rerun or attempt:
            mark_rerun(merged, attempt, again)
        session = item.session
        if failed or session.shouldfail or session.shouldstop or _may_stop_on_a_pass(item):
            replay(item.ihook, item.nodeid, item.location, merged, started=True)
            return self.exchange.verdict([int(bool(session.shouldfail)),
                                          int(bool(session.shouldstop)), int(again)])
        # Every rank passed, and the reporters are pytest's and mpidist's, which stop
        # a session only on a failure (-x, --maxfail, --sw): the verdict is known
        # before the replay, so it goes first and the other ranks start the next
        # test while the root writes the report.
        buf, request = self.exchange.post_verdict([0, 0, 0])
        replay(item.ihook, item.nodeid, item.location, merged, started=True)
        wait_all([request])
        return list(buf)
