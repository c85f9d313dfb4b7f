"""The pytest session under MPI: agree, run without logging, gather, merge, replay.

Every rank runs every selected test in the same order. A test runs through
pytest's ``runtestprotocol(log=False)``, and subtest reports that pytest
would log mid-test are held back as well, so nothing reaches a reporter on
any rank until rank 0 has every rank's reports. Rank 0 merges them
(``merge``) and replays ONE report per phase into ``pytest_runtest_logreport``
-- which feeds the terminal, ``-x``/``--maxfail``, ``--junitxml``,
``--durations`` and any other plugin exactly as in a one-process run -- then
broadcasts whether the session must stop, so every rank stops at the same
test. Rank 0 also decides selection (``-k``, ``--lf``, ordering plugins) and
the exit code, which every rank adopts.

Before a body runs the ranks agree on it (collective skip). The watchdog
(``watchdog``) ends a test that hangs or whose peers failed, and a SIGTERM
from the launcher (a rank died) still yields a report: both replay a failed
report from a side thread, finish the session (JUnit) and end the job. With
``--mpi-journal`` rank 0 records every finished test for ``mpidist run``.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generator, Iterator, cast

import pluggy
import pytest
from _pytest.reports import TestReport
from _pytest.runner import runtestprotocol

from . import env, runtime
from .agree import raise_together
from .consensus import describe_mismatch, fingerprint
from .errors import MpidistError
from .gather import Exchange
from .hang import describe_hang
from .journal import JournalWriter, read_journal
from .merge import COLLECTIVE_SKIP, SAT_OUT, RankedFailure, RankResult, merge_test
from .output import RankOutput
from .plugin import setting
from .signals import on_sigterm
from .slurm import SLURM_VARS
from .slurm import compare as compare_slurm
from .testing import compat
from .watchdog import Hang, Watchdog
from .wire import decode, encode

if TYPE_CHECKING:
    from _pytest.reports import CollectReport

__all__ = ["MPISession", "start"]

_OUTPUT = pytest.StashKey[RankOutput]()
_AGREED = pytest.StashKey[str]()  # this rank took part in the item's body agreement

# status of this rank's setup, for the agreement before the body (max wins)
_SETUP_PASSED, _SETUP_SKIPPED, _SETUP_FAILED = 0, 1, 2


def start(config: pytest.Config, namespace: Any) -> None:
    """Early (before capture): attach to MPI and redirect the output of ranks > 0."""
    if _OUTPUT in config.stash:
        return
    try:
        world = runtime.attach()
    except MpidistError as exc:
        raise pytest.UsageError(str(exc)) from None
    task = env.launcher_task()
    if world.size == 1 and task is not None:
        variable, rank, size = task
        config.stash[_OUTPUT] = RankOutput(rank)  # only the launcher's task 0 speaks
        raise pytest.UsageError(
            f"the launcher started {size} tasks ({variable}={size}) but MPI sees a world "
            "of 1: mpi4py's MPI is not the launcher's (use srun --mpi=pmix, or the mpirun "
            "of the MPI that mpi4py loads)")
    try:
        log_dir = setting(config, env.LOG_DIR, namespace)
        show = setting(config, env.RANK_OUTPUT, namespace)
    except pytest.UsageError:
        config.stash[_OUTPUT] = RankOutput(world.rank)  # say it once, from rank 0
        raise
    config.stash[_OUTPUT] = RankOutput(world.rank, log_dir, show)


class _HeldHooks:
    """The hook relay a test sees while it runs: ``pytest_runtest_logreport`` is held."""

    def __init__(self, real: Any, held: list[TestReport]) -> None:
        self._real = real
        self._held = held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def pytest_runtest_logreport(self, *, report: TestReport) -> None:
        self._held.append(report)


@contextmanager
def _hold_logreports(session: pytest.Session) -> Iterator[list[TestReport]]:
    """Hold every report logged during a test (pytest 9 subtests log mid-test)."""
    held: list[TestReport] = []
    real = session.gethookproxy
    def held_proxy(fspath: os.PathLike[str]) -> pluggy.HookRelay:
        return cast(pluggy.HookRelay, _HeldHooks(real(fspath), held))

    session.gethookproxy = held_proxy  # type: ignore[method-assign]
    try:
        yield held
    finally:
        del session.gethookproxy


def _local_outcome(reports: list[TestReport]) -> str:
    for report in reports:
        if report.failed:
            return "ERROR" if report.when != "call" else "FAILED"
    if any(report.skipped for report in reports):
        return "SKIPPED"
    return "PASSED"


class MPISession:
    """The plugin object registered under ``--with-mpi``."""

    def __init__(self, config: pytest.Config) -> None:
        start(config, config.option)
        self.config = config
        self.output = config.stash[_OUTPUT]
        self.world = runtime.attach()
        self.rank = self.world.rank
        if self.rank != 0:
            config.option.xmlpath = None  # one JUnit file, written by rank 0
        self.exchange: Exchange | None = None
        self.watchdog: Watchdog | None = None
        self.journal: JournalWriter | None = None
        self._journaled: list[dict[str, Any]] = []  # rank 0: the test's merged reports
        self._abnormal = ""  # why the watchdog ended the job, journaled with the test
        self._index = 0  # number of the test in flight, the same on every rank
        self._ending = threading.Event()  # the watchdog is reporting a hang
        self._session: pytest.Session | None = None
        self._raw: list[pytest.Item] = []
        self._collect_errors: list[CollectReport] = []
        self._released = False  # the default group is down for a torch-spawning class

    # -- bootstrap -------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        try:
            runtime.init(
                setting(config, env.BACKEND),
                timeout=setting(config, env.STORE_TIMEOUT),
                ifname=setting(config, env.IFNAME),
            )
        except MpidistError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.world = runtime.current().world
        self.exchange = Exchange(runtime.current().comm)
        mine = {k: os.environ[k] for k in SLURM_VARS if k in os.environ}
        everyone = self.exchange.comm.gather(mine, root=0)
        self.slurm_problems = compare_slurm(self.world, everyone) if everyone else []
        self.timeout = setting(config, env.TIMEOUT)
        journal = setting(config, env.JOURNAL)
        if journal and self.rank == 0:
            self.journal = JournalWriter(journal)
        self.watchdog = Watchdog(self.world, setting(config, env.PEER_GRACE),
                                 self._on_hang if self.rank == 0 else None)
        on_sigterm(self._on_sigterm)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        if self.journal is not None:
            self.journal.close()
        runtime.shutdown()
        self.output.close()

    def quiet_other_ranks(self) -> None:
        """On ranks > 0: no terminal reporter (as -p no:terminal), no cache writes,
        and rank 0's --lf/--nf/--sw state, which pytest reads while collecting."""
        self._adopt_rank0_cache_state()
        if self.rank != 0:
            # A segfault's traceback goes where the launcher shows it, not /dev/null.
            import faulthandler

            faulthandler.enable(file=self.output.launcher_stderr, all_threads=True)
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:  # as with -p no:terminal on ranks > 0
                self.config.pluginmanager.unregister(reporter)
            cache = getattr(self.config, "cache", None)
            if cache is not None:  # only rank 0 persists --lf/--nf state
                cache.set = lambda key, value: None

    def _adopt_rank0_cache_state(self) -> None:
        # Each rank's cache plugins loaded their own .pytest_cache (on other
        # nodes: another filesystem). Selection must follow rank 0's, and
        # --lf filters during collection, so this happens before it.
        assert self.exchange is not None
        pm = self.config.pluginmanager
        lf, nf, sw = (pm.get_plugin(n) for n in ("lfplugin", "nfplugin", "stepwiseplugin"))
        state = None
        if self.rank == 0:
            state = (getattr(lf, "lastfailed", None), getattr(nf, "cached_nodeids", None),
                     getattr(sw, "cached_info", None))
        lastfailed, nodeids, stepwise = self.exchange.comm.bcast(state, root=0)
        if self.rank == 0:
            return
        if lf is not None and lastfailed is not None:
            lf.lastfailed = lastfailed
            if hasattr(lf, "_last_failed_paths"):  # cached from lastfailed under --lf
                lf._last_failed_paths = lf.get_last_failed_paths()
        if nf is not None and nodeids is not None:
            nf.cached_nodeids = nodeids
        if sw is not None and stepwise is not None:
            sw.cached_info = stepwise

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        world = self.world
        hosts = sorted(set(world.hosts), key=world.hosts.index)
        shown = ",".join(hosts[:8]) + (",..." if len(hosts) > 8 else "")
        rt = runtime.current()
        backend = rt.backend or "none"
        if backend == "mpi4py" and rt.requested == "mpi":
            backend += " (this torch build has no MPI backend: mpidist's MPI process group)"
        lines = [
            f"mpidist: {world.size} ranks on {world.num_nodes} node(s) ({shown}), "
            f"backend {backend}, store {world.master_addr}:{world.master_port}"
        ]
        if "SLURM_PROCID" in os.environ:
            lines += ([f"mpidist: WARNING Slurm disagrees: {p}" for p in self.slurm_problems]
                      or ["mpidist: Slurm agrees (SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, "
                          "SLURM_JOB_NODELIST)"])
        return lines

    # -- collection: agree on the tests, let rank 0 choose the selection ----------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        self._raw = list(items)
        size = self.world.size
        for item in items:
            marker = item.get_closest_marker("mpi")
            if marker is not None:
                min_size = marker.kwargs.get("min_size", marker.args[0] if marker.args else 1)
                if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 1:
                    raise pytest.UsageError(
                        f"{item.nodeid}: mpi(min_size={min_size!r}): min_size must be "
                        "a positive integer"
                    )
                if min_size > size:
                    item.add_marker(pytest.mark.skip(
                        reason=f"needs {min_size} MPI ranks, the world has {size}"))
            self._timeout_of(item)  # validate now: a bad marker is a usage error
            if item.get_closest_marker("mpi_skip") is not None:
                item.add_marker(pytest.mark.skip(reason="test does not work under MPI"))
            if item.get_closest_marker("mpi_xfail") is not None:
                item.add_marker(pytest.mark.xfail(reason="test fails under MPI"))
        result = yield
        resume = setting(config, env.RESUME)
        if resume and self.rank == 0:  # rank 0's selection is every rank's
            done = read_journal(resume).done
            finished = [item for item in items if item.nodeid in done]
            if finished:
                items[:] = [item for item in items if item.nodeid not in done]
                config.hook.pytest_deselected(items=finished)
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(self, collector: Any, name: str, obj: object) -> None:
        # Before pytest makes the items (and instances) of a torch spawning class,
        # whose __init__ wraps each test method with the spawn-and-join logic.
        if isinstance(obj, type) and compat.is_spawning_class(obj):
            compat.install(setting(self.config, env.SHARED_DIR))

    def pytest_collectreport(self, report: CollectReport) -> None:
        if report.failed:
            self._collect_errors.append(report)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, Any, Any]:
        assert self.exchange is not None
        comm = self.exchange.comm
        error: Exception | None = None
        result = None
        try:
            result = yield
        except Exception as exc:  # e.g. "file or directory not found" on some ranks
            error = exc
        raise_together(comm, error, pytest.UsageError)
        self._share_collect_errors(session)
        if session.testsfailed and not self.config.option.continue_on_collection_errors:
            return result  # every rank stops: "N errors during collection"
        ids = [item.nodeid for item in self._raw]
        if len(set(comm.allgather(fingerprint(ids)))) > 1:
            lists = comm.gather(ids, root=0)
            message = describe_mismatch(lists, self.world) if lists is not None else None
            raise pytest.UsageError(comm.bcast(message, root=0))
        index = {id(item): i for i, item in enumerate(self._raw)}
        order = [index[id(item)] for item in session.items] if self.rank == 0 else None
        order = comm.bcast(order, root=0)
        if self.rank != 0:
            session.items[:] = [self._raw[i] for i in order]
            session.testscollected = len(session.items)
        if self.journal is not None:
            self.journal.collected([item.nodeid for item in session.items])
        return result

    def _share_collect_errors(self, session: pytest.Session) -> None:
        """Rank 0 reports other ranks' collection errors; all adopt its count."""
        assert self.exchange is not None
        comm, config = self.exchange.comm, self.config
        mine = [
            config.hook.pytest_report_to_serializable(config=config, report=r)
            for r in self._collect_errors
        ] if self.rank != 0 else []
        gathered = comm.gather(mine, root=0)
        if self.rank == 0:
            assert gathered is not None
            seen = {r.nodeid for r in self._collect_errors}
            for rank, reports in enumerate(gathered):
                for data in reports:
                    report = config.hook.pytest_report_from_serializable(
                        config=config, data=data)
                    if report.nodeid in seen:
                        continue
                    seen.add(report.nodeid)
                    report.longrepr = RankedFailure(
                        [(self.world.describe(rank), report.longrepr)])
                    session.ihook.pytest_collectreport(report=report)
        session.testsfailed = comm.bcast(session.testsfailed, root=0)

    # -- running: every rank runs, rank 0 reports ---------------------------------

    def _timeout_of(self, item: pytest.Item) -> float:
        """mpi(timeout=) > pytest-timeout's timeout marker > --mpi-timeout."""
        for name in ("mpi", "timeout"):
            marker = item.get_closest_marker(name)
            if marker is None:
                continue
            value = marker.kwargs.get("timeout")
            if value is None and name == "timeout" and marker.args:
                value = marker.args[0]
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise pytest.UsageError(
                    f"{item.nodeid}: {name}(timeout={value!r}): timeout must be a positive "
                    "number of seconds")
            return float(value)
        return float(self.timeout)

    def _agree_on_body(self, item: pytest.Item, status: int, reason: str) -> str:
        """Collective, once per test: "" if every rank may run the body, else why not.

        Ranks whose setup passed call this just before the body; the others
        after their phases -- one call per rank per test, so it always matches.
        """
        assert self.exchange is not None
        from mpi4py import MPI

        comm = self.exchange.comm
        worst = comm.allreduce(status, op=MPI.MAX)
        verdict = ""
        if worst != _SETUP_PASSED:
            states = comm.allgather((status, reason))
            kind = _SETUP_FAILED if worst == _SETUP_FAILED else _SETUP_SKIPPED
            ranks = [r for r, (s, _) in enumerate(states) if s == kind]
            if kind == _SETUP_FAILED:
                verdict = f"not run: setup failed on {self.world.describe_ranks(ranks)}"
            else:
                reasons = sorted({states[r][1] for r in ranks})
                verdict = f"skipped on {self.world.describe_ranks(ranks)}: {'; '.join(reasons)}"
        item.stash[_AGREED] = verdict
        return verdict

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        verdict = self._agree_on_body(item, _SETUP_PASSED, "")
        if verdict:  # another rank skipped or failed setup: nobody runs the body
            pytest.skip(verdict)
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, TestReport, TestReport]:
        report = yield
        if call.when == "call" and item.stash.get(_AGREED, "") and report.skipped:
            setattr(report, COLLECTIVE_SKIP, True)
        if call.when == "call" and report.skipped and compat.sat_out():
            setattr(report, SAT_OUT, True)
        return report

    def _prepare_group(self, item: pytest.Item) -> None:
        """torch's spawning test classes start their own default process group:
        ours goes down before one and comes back before the next other test."""
        compat.begin()
        if compat.is_spawning_class(getattr(item, "cls", None)):
            if not self._released:
                self._released = runtime.release_default_group()
        elif self._released:
            runtime.restore_default_group()  # collective: every rank is here
            self._released = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        assert self.exchange is not None
        assert self.watchdog is not None
        ihook = item.ihook
        session = item.session
        self._index += 1
        self._prepare_group(item)
        self.watchdog.begin(self._index, item, self._timeout_of(item))
        if self.rank == 0:
            if self.journal is not None:
                self.journal.start(item.nodeid)
            ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        with _hold_logreports(session) as subtests:
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if _AGREED not in item.stash:  # the body never started here: agree anyway
            setup = reports[0]
            status = (_SETUP_FAILED if setup.failed else
                      _SETUP_SKIPPED if setup.skipped else _SETUP_PASSED)
            reason = setup.longrepr[2] if isinstance(setup.longrepr, tuple) else ""
            self._agree_on_body(item, status, reason.removeprefix("Skipped: "))
        del item.stash[_AGREED]
        failed = any(r.failed for r in reports) or any(r.failed for r in subtests)
        record, payload = encode(self.config, reports, subtests)
        # A failure is never compact: the payload serialized for the gather is the
        # one the watchdog sends if the test then hangs (serialized once). A rank
        # that left a torch test through its skip exit code counts too: ranks that
        # did not are in the body without it, and get --mpi-peer-grace to finish.
        self.watchdog.finished(payload if failed or compat.left_early() else None)
        flags = [0, 0]
        if self.rank == 0:
            gathered = self.exchange.gather(record, None)  # rank 0 keeps its objects
            assert gathered is not None
            results = [RankResult(0, reports, list(subtests))] + [
                decode(self.config, rank, record, payload)
                for rank, (record, payload) in enumerate(gathered) if rank
            ]
            for report in merge_test(self.world, results):
                ihook.pytest_runtest_logreport(report=report)
            ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
            flags = [int(bool(session.shouldfail)), int(bool(session.shouldstop))]
        else:
            self.exchange.gather(record, payload)
        stop_fail, stop = self.exchange.verdict(flags)
        self.watchdog.end()
        if self.rank != 0:
            if stop_fail and not session.shouldfail:
                session.shouldfail = "rank 0 stopped the session (-x/--maxfail)"
            if stop and not session.shouldstop:
                session.shouldstop = "rank 0 stopped the session"
        if self.output.recording:
            self.output.write_line(f"{_local_outcome(reports)} {item.nodeid}")
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Every rank exits with rank 0's (merged) status, so mpirun's is right.
        if self.exchange is not None and not self._ending.is_set():
            status = self.exchange.verdict([int(session.exitstatus)])[0]
            known = {code.value for code in pytest.ExitCode}
            session.exitstatus = pytest.ExitCode(status) if status in known else status

    # -- hung or failed peers: report from the watchdog thread, then end the job ----

    def _on_sigterm(self) -> None:
        """SIGTERM (a rank died and the launcher ends the job, or a time limit):
        rank 0 reports the test in flight and writes JUnit; every rank answers."""
        assert self.watchdog is not None
        if self.rank != 0:
            self.watchdog.answer_now()
            # Stay until the launcher kills us or rank 0 (the store's host) is gone:
            # a rank that exits now makes Open MPI kill the rest at once, before
            # rank 0 has written its report.
            self.watchdog.wait_for_rank0_exit(limit=30.0)
            os._exit(128 + 15)
        hang = self.watchdog.request_dump("terminated", wait=0.3)
        if hang is not None:
            self._on_hang(hang, abort=False)
        elif not self._ending.is_set():
            self._ending.set()
            session = self._session
            if session is not None:
                session.shouldstop = "mpidist: the job was terminated (SIGTERM)"
                self.config.hook.pytest_sessionfinish(
                    session=session, exitstatus=pytest.ExitCode.INTERRUPTED)
        sys.stdout.flush()
        os._exit(128 + 15)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        # Rank 0 sees only merged reports here (replayed by it or the watchdog).
        if self.journal is not None:
            self._journaled.append(self.config.hook.pytest_report_to_serializable(
                config=self.config, report=report))

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if self.journal is not None:
            self.journal.done(nodeid, self._journaled, self._abnormal)
            self._journaled = []

    def _on_hang(self, hang: Hang, abort: bool = True) -> None:
        """Rank 0's watchdog gave up on a test: log it, finish the session, abort."""
        if self._ending.is_set():
            return
        self._ending.set()
        capture = self.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:  # the main thread may be mid-test, its output captured
            capture.suspend(in_=True)
        item = hang.item
        session = item.session
        self._abnormal = hang.why  # journaled with the test: mpidist run resumes after it
        report = describe_hang(self.world, hang,
                               lambda rank, payload: decode(self.config, rank,
                                                            [float(len(payload))], payload))
        ihook = self.config.hook  # not item.ihook: the main thread is holding those
        props = [("mpi_outcomes", hang.why)]
        for merged in (
            TestReport(item.nodeid, item.location, {}, "passed", None, "setup"),
            TestReport(item.nodeid, item.location, {}, "failed", report, "call",
                       duration=hang.timeout if hang.why == "timeout" else 0.0),
            TestReport(item.nodeid, item.location, {}, "passed", None, "teardown",
                       user_properties=props),
        ):
            ihook.pytest_runtest_logreport(report=merged)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        session.shouldfail = f"mpidist: {hang.why} in {item.nodeid}"
        self.config.hook.pytest_sessionfinish(session=session,
                                              exitstatus=pytest.ExitCode.TESTS_FAILED)
        sys.stdout.flush()
        if not abort:
            return
        print(f"mpidist: ending the job after {hang.why} in {item.nodeid} (MPI_Abort)",
              file=sys.stderr, flush=True)
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(int(pytest.ExitCode.TESTS_FAILED))
