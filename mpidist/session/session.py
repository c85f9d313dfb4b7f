"""The pytest session under MPI: the skeleton that wires the runner's parts together.

Hooks only. At configure time it bootstraps the world (``runtime.init``),
makes the group every test runs on (today: the whole world), starts the
watchdog and registers the parts that do the work: ``CollectionAgreement``
(every rank holds rank 0's tests) and ``TestPipeline`` (one test on a group).
Rank 0 decides the exit code, which every rank adopts. When the watchdog gives
up on a test, or the launcher sends SIGTERM (a rank died, a time limit), the
session reports the test in flight from a side thread, finishes the session
(JUnit) and ends the job.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Sequence

import pytest

from .. import runtime
from ..bootstrap import settings
from ..bootstrap.channel import ChannelError
from ..bootstrap.settings import is_set, setting
from ..bootstrap.slurm import SLURM_VARS
from ..bootstrap.slurm import compare as compare_slurm
from ..errors import MpidistError
from ..history.recorder import HistoryRecorder
from ..placement.packing import Packer
from ..plugins.companions import (
    TimeoutTimers,
    check_companions,
    isolation_mode,
    share_coverage,
    timeout_default,
)
from ..plugins.examples import ExampleAgreement
from ..plugins.writers import not_the_writer, quiet_expecttest
from ..report.codec import decode_payload
from ..report.failures import Labels, describe_hang, failed_reports
from ..report.output import drain, start
from ..report.rank_texts import RankTexts
from ..report.replay import replay
from ..runner.group import Group, Members
from ..runner.pipeline import TestPipeline
from ..safety import keeper
from ..safety.signals import death_signal, on_sigterm
from ..safety.watchdog import Hang, Watchdog
from .collection import CollectionAgreement

if TYPE_CHECKING:
    from ..isolation.rank import Isolation

__all__ = ["MPISession"]


class MPISession:
    """The plugin object registered under ``--with-mpi``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.output = start(config, config.option)
        self.world = runtime.attach()
        self.rank = self.world.rank
        if self.rank != 0:  # one JUnit file, one HTML report, one log...: rank 0's
            not_the_writer(config, f"gw{self.rank}", self.world.size)
        self.group: Group | None = None
        self.watchdog: Watchdog | None = None
        self.collection: CollectionAgreement | None = None
        self.pipeline: TestPipeline | None = None
        self.packer: Packer | None = None
        self.slurm_problems: list[str] = []
        self._ending = threading.Event()  # a hang or SIGTERM is being reported
        self._session: pytest.Session | None = None

    # -- bootstrap -------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        check_companions(config)  # a usage error on every rank, before any collective
        isolate = isolation_mode(setting(config, settings.ISOLATE), config.option)
        try:
            runtime.init(setting(config, settings.BACKEND),
                         timeout=setting(config, settings.STORE_TIMEOUT),
                         ifname=setting(config, settings.IFNAME))
        except MpidistError as exc:
            raise pytest.UsageError(str(exc)) from None
        rt = runtime.current()
        self.world = rt.world
        group = self.group = Group.world_group(rt.world, rt.comm)
        mine = {k: os.environ[k] for k in SLURM_VARS if k in os.environ}
        everyone = group.comm.gather(mine, root=0)
        self.slurm_problems = compare_slurm(self.world, everyone) if everyone else []
        timeout = timeout_default(config, setting(config, settings.TIMEOUT),
                                  is_set(config, settings.TIMEOUT))
        config.pluginmanager.register(TimeoutTimers(), "mpidist-timeout-timers")
        self.watchdog = Watchdog(self.world, setting(config, settings.PEER_GRACE),
                                 rt.rendezvous.channel, rt.signer,
                                 self._on_hang if group.is_root else None,
                                 setting(config, settings.ALL_STACKS))
        self.collection = CollectionAgreement(config, group, timeout)
        config.pluginmanager.register(self.collection, "mpidist-collection")
        self.pipeline = TestPipeline(config, group, self.watchdog, self.output, timeout)
        config.pluginmanager.register(self.pipeline, "mpidist-pipeline")
        config.pluginmanager.register(
            ExampleAgreement(self._group_in_flight, self._hypothesis_seed,
                             setting(config, settings.PEER_GRACE)), "mpidist-examples")
        if self.rank == 0:  # what the report groups, kept whole; the run, for the history
            config.pluginmanager.register(
                RankTexts(config, setting(config, settings.RANK_TEXTS)), "mpidist-rank-texts")
            if str(setting(config, settings.HISTORY)).lower() != "off":
                config.pluginmanager.register(HistoryRecorder(config, self.world),
                                              "mpidist-history")
        self.pipeline.isolation = self._isolation(config, isolate)
        self.packer = Packer(config, self.pipeline, self.watchdog,
                             setting(config, settings.PACK) == "on")
        config.pluginmanager.register(self.packer, "mpidist-packer")
        on_sigterm(self._on_sigterm)
        link = keeper.link()
        if link is not None:  # what the keeper needs to tell rank 0 that this rank died
            link.contact(self.rank, self.world.describe(self.rank), self.world.master_addr,
                         rt.rendezvous.channel_port, rt.signer.secret())

    def _group_in_flight(self) -> Group:
        assert self.pipeline is not None
        return self.pipeline.group

    def _hypothesis_seed(self) -> int:
        assert self.collection is not None
        return self.collection.hypothesis_seed

    def _isolation(self, config: pytest.Config, mode: str) -> Isolation | None:
        """What runs the isolated tests, when this rank forked a template."""
        from ..isolation import template

        link = template.link()
        if link is None:
            return None
        from ..isolation.rank import Isolation

        rt = runtime.current()
        isolation = Isolation(config, link, mode, rt.world,
                              rt.backend, setting(config, settings.STORE_TIMEOUT),
                              setting(config, settings.PEER_GRACE) / 2, self._hypothesis_seed)
        config.pluginmanager.register(isolation, "mpidist-isolation")
        return isolation

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        runtime.shutdown()
        self.output.close()

    def quiet_other_ranks(self) -> None:
        """On ranks > 0: no terminal reporter (as -p no:terminal), and rank 0's
        --lf/--nf/--sw state, which pytest reads while collecting (``writers``:
        nothing else of theirs is written)."""
        assert self.collection is not None
        self.collection.adopt_rank0_cache_state()
        if self.rank == 0:
            self.output.hold_terminal_flushes(
                self.config.pluginmanager.get_plugin("terminalreporter"))
            return
        # A segfault's traceback goes where the launcher shows it, not /dev/null.
        import faulthandler

        faulthandler.enable(file=self.output.launcher_stderr, all_threads=True)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # as with -p no:terminal on ranks > 0
            self.config.pluginmanager.unregister(reporter)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # What collection imported (torch, the test modules) lives as long as the run:
        # out of the garbage collector's reach, a collection during a test walks only
        # what the tests made (as at start-up: session.plugin)
        gc.freeze()
        if self.rank != 0:  # the test modules are imported: expecttest, if they use it
            quiet_expecttest()

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        world = self.world
        hosts = sorted(set(world.hosts), key=world.hosts.index)
        shown = ",".join(hosts[:8]) + (",..." if len(hosts) > 8 else "")
        rt = runtime.current()
        backend = rt.backend or "none"
        if backend == "mpi4py" and rt.requested == "mpi":
            backend += " (this torch build has no MPI backend: mpidist's MPI process group)"
        elif rt.reason:
            backend += f" ({rt.reason})"
        lines = [f"mpidist: {world.size} ranks on {world.num_nodes} node(s) ({shown}), "
                 f"backend {backend}, store {world.master_addr}:{world.master_port}, "
                 f"channel {rt.rendezvous.channel_port}"]
        gpus = _gpu_line(world.hostname)
        if gpus:
            lines.append(gpus)
        if "SLURM_PROCID" in os.environ:
            lines += ([f"mpidist: WARNING Slurm disagrees: {p}" for p in self.slurm_problems]
                      or ["mpidist: Slurm agrees (SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, "
                          "SLURM_JOB_NODELIST)"])
        return lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Rank 0 names every store value it refused (forged, corrupt, oversized)."""
        rejected = dict(self.watchdog.store.rejected) if self.watchdog is not None else {}
        for key, why in rejected.items():
            terminalreporter.write_line(
                f"mpidist: WARNING ignored store value {key}: {why}; someone who can reach "
                f"mpidist's channel wrote it (see the README's Security section)", yellow=True)

    @pytest.hookimpl(trylast=True)  # after pytest-cov started measuring
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session
        share_coverage(self.config, runtime.current().comm, self.rank)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Every rank exits with rank 0's (merged) status, so mpirun's is right.
        if self.pipeline is not None and not self._ending.is_set():
            status = self.pipeline.exchange.verdict([int(session.exitstatus)])[0]
            known = {code.value for code in pytest.ExitCode}
            session.exitstatus = pytest.ExitCode(status) if status in known else status

    # -- hung or failed peers: report from a side thread, then end the job ----------

    def _on_sigterm(self) -> None:
        """SIGTERM (a rank died and the launcher ends the job, or a time limit):
        rank 0 reports the test in flight and writes JUnit; every rank answers."""
        assert self.watchdog is not None
        if self.rank != 0:
            try:
                self.watchdog.answer_now()
                # Stay until rank 0 has written its report, the launcher kills us or
                # rank 0 (the store's host) is gone: a rank that exits now makes Open MPI
                # kill the rest at once, before rank 0 has written its report.
                keeper.await_report(self.watchdog.store, limit=30.0)
            finally:
                keeper.mark_done()
                os._exit(128 + 15)
        hangs = self.watchdog.request_dump("terminated", wait=0.3)
        if hangs:
            self._on_hang(hangs[0], abort=False, others=hangs[1:], wait=0.3)
        elif not self._ending.is_set():
            self._ending.set()
            if self.pipeline is not None:
                self.pipeline.salvage(-1, wait=0.3)
                self.pipeline.freeze()
            if self.packer is not None:  # what other groups finished goes in too
                self.packer.wind_down(self.config.hook, (), wait=0.3)
            session = self._session
            if session is not None:
                session.shouldstop = "mpidist: the job was terminated (SIGTERM)"
                self.config.hook.pytest_sessionfinish(
                    session=session, exitstatus=pytest.ExitCode.INTERRUPTED)
        drain(limit=1.0)  # the launcher may kill soon after SIGTERM
        self._reported()
        keeper.mark_done()
        os._exit(128 + 15)

    def _on_hang(self, hang: Hang, abort: bool = True, others: Sequence[Hang] = (),
                 wait: float = 1.0) -> None:
        """The watchdog gave up on a test (``others``: tests other groups were in at
        SIGTERM): log it, finish the session, abort. ``wait``: seconds for results
        still on their way (SIGTERM: the launcher kills within about a second)."""
        if self._ending.is_set():
            return
        self._ending.set()
        capture = self.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:  # the main thread may be mid-test, its output captured
            capture.suspend(in_=True)
        session = self._session
        if self.pipeline is not None:  # the test before it, if still unlogged
            unfinished = self.pipeline.salvage(hang.index, wait=wait)
            if unfinished is not None:  # a rank never finished it (e.g. died in it): the
                hang.index, hang.item = unfinished  # fault is its, not the next test's
            self.pipeline.freeze()  # this report is the last word
        item = hang.item
        reported = [h.item for h in (hang, *others) if h.item is not None]
        if self.packer is not None:  # what other groups finished goes in too
            self.packer.wind_down(self.config.hook, reported, wait=wait)
        for each in (hang, *others):
            if each.item is not None:
                session = each.item.session
                self._replay_hang(each)
        where = item.nodeid if item is not None else "between tests"
        if session is not None:
            session.shouldfail = f"mpidist: {hang.why} in {where}"
            self.config.hook.pytest_sessionfinish(session=session,
                                                  exitstatus=pytest.ExitCode.TESTS_FAILED)
        labels = self._labels(hang)
        for rank, how in sorted(hang.died.items()):
            print(f"mpidist: {labels.describe(rank)} died {where}: {how}", flush=True)
        sys.stdout.flush()
        if not abort:
            return
        keeper.mark_done()
        print(f"mpidist: ending the job after {hang.why} in {where} (MPI_Abort)",
              file=sys.stderr, flush=True)
        drain()  # what the launcher has not read yet would be lost with the job
        self._reported()
        # the report is out: should the launcher end the keeper first, this process goes
        # too (a SIGTERM cannot be handled inside MPI_Abort, which holds the GIL)
        death_signal(signal.SIGKILL)
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(int(pytest.ExitCode.TESTS_FAILED))
        os._exit(int(pytest.ExitCode.TESTS_FAILED))  # not reached: Abort ends the process

    def _reported(self) -> None:
        """Rank 0's report is out: a dead rank's keeper, and the ranks a SIGTERM
        holds until then, may go now."""
        if self.watchdog is not None:
            with contextlib.suppress(ChannelError):
                self.watchdog.store.put(keeper.REPORTED, "1")

    def _labels(self, hang: Hang) -> Labels:
        """A packed group's ranks by the group's numbers, with their global ones
        (``Members`` reads the whole world as the world's labels)."""
        return Members(self.world, hang.members) if hang.members else self.world

    def _replay_hang(self, hang: Hang) -> None:
        """Log the test ``hang`` names as failed, with where every rank was."""
        item = hang.item
        failure = describe_hang(self._labels(hang), hang,
                                lambda rank, payload: decode_payload(self.config, rank, payload))
        reports = failed_reports(
            item.nodeid, item.location, failure,
            duration=hang.timeout if hang.why == "timeout" else 0.0,
            properties=[("mpi_outcomes", hang.why)], abnormal=hang.why)
        # not item.ihook: the main thread is holding those; rank 0 logged the start of
        # its own group's tests only
        replay(self.config.hook, item.nodeid, item.location, reports,
               started=not hang.members or 0 in hang.members)


def _gpu_line(host: str) -> str:
    """``mpidist: GPUs on host n1: 8 x NVIDIA H100 (CUDA 13.0, NCCL 2.27.5); rank 0 uses
    cuda:0`` -- or "" on a node without one (nothing is imported for it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return ""
    from ..bootstrap.probes import cuda_devices, nccl_version

    count = cuda_devices()
    nccl = nccl_version()
    using = (f"rank 0 uses cuda:{torch.cuda.current_device()}"
             if torch.cuda.is_initialized() else "rank 0 uses no GPU")
    return (f"mpidist: GPUs on host {host}: {count} x {torch.cuda.get_device_name(0)} "
            f"(CUDA {torch.version.cuda}, NCCL {'.'.join(map(str, nccl)) if nccl else 'none'});"
            f" {using}")
