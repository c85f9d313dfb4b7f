"""``mpidist run``: start the job, and start it again after a test kills it.

Runs outside the MPI job, so it imports neither mpi4py nor torch. Each
launch is ``<launcher> <launcher args> python -m pytest --with-mpi
--mpi-journal J [--mpi-resume J] <pytest args>``. Rank 0 journals every
finished test (``journal``). When a launch ends abnormally in the middle of a
test -- the watchdog aborted it, a rank died, rank 0 was killed -- that test
is recorded as failed (if the job could not say so itself) and the launcher
runs again on the tests not yet done, up to ``--max-restarts`` times: one bad
test costs one relaunch, not the suite. The end is one replay session
(``replay``) that prints one summary and writes one JUnit file in which every
test appears exactly once, with pytest's exit code for the merged result.

SIGTERM or Ctrl-C stops the job (the launcher passes SIGTERM on, and rank 0
journals the test in flight as terminated), keeps every finished result,
and still writes the summary and JUnit.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Callable, Sequence, TextIO

from ..bootstrap.launchers import Launcher, detect, diagnose
from ..history.recorder import RUN_ID_ENV
from .journal import JournalState, JournalWriter, read_journal, synthesized_failure
from .replay import replay_command

__all__ = ["RunOptions", "parse_run_args", "supervise"]

# The JUnit file is written once, by the final replay, not by each launch.
_REPLAY_ONLY = ("--junitxml", "--junit-xml", "--junit-prefix")


@dataclass
class RunOptions:
    """How ``mpidist run`` was asked to run."""

    launcher: list[str]
    pytest_args: list[str]
    max_restarts: int
    journal: Path | None
    python: str


def _manners(name: str) -> tuple[str, Launcher] | None:
    """The launcher ``name`` runs, by its ``--version``; None if mpidist does not know it."""
    exe = shutil.which(name)
    try:
        return (exe, detect(exe)) if exe else None
    except ValueError:  # not one mpidist knows: its arguments go as they are
        return None


def parse_run_args(argv: Sequence[str],
                   manners: Callable[[str], tuple[str, Launcher] | None] = _manners
                   ) -> RunOptions:
    """``[supervisor options] [launcher args] -- [pytest args]``.

    Raises:
        SystemExit: usage error (argparse prints it).
    """
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        before, pytest_args = argv[:cut], argv[cut + 1:]
    else:
        before, pytest_args = argv, []
    # no -h and no abbreviations: launcher flags such as Hydra's -hosts pass through
    parser = argparse.ArgumentParser(prog="mpidist run", add_help=False, allow_abbrev=False)
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.add_argument("--launcher", default="mpirun",
                        help="command that starts the ranks (mpirun, srun, ...)")
    parser.add_argument("--max-restarts", type=int, default=3,
                        help="relaunches after a test ended the job (default 3)")
    parser.add_argument("--journal", type=Path, default=None,
                        help="keep the journal here (default: a temporary file)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter the ranks run (default: this one)")
    known, launcher_args = parser.parse_known_args(before)
    if known.max_restarts < 0:
        parser.error("--max-restarts must be >= 0")
    launcher = known.launcher.split()
    found = manners(launcher[0])
    if found is not None:
        exe, spoken = found
        if spoken.executable(exe) != exe:  # the program that passes SIGTERM on
            launcher[0] = spoken.executable(exe)
        if "--oversubscribe" in launcher_args:  # each launcher's own spelling of it
            at = launcher_args.index("--oversubscribe")
            launcher_args[at:at + 1] = spoken.oversubscribe()
    return RunOptions([*launcher, *launcher_args], pytest_args,
                      known.max_restarts, known.journal, known.python)


def _launch_args(args: list[str]) -> list[str]:
    """The pytest args of each launch: the user's, less the JUnit options."""
    launch: list[str] = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg.startswith(_REPLAY_ONLY):
            skip_next = "=" not in arg
        else:
            launch.append(arg)
    return launch


class _Child:
    """The launcher process, with SIGTERM/SIGINT passed on to it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.interrupted = ""
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=500)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = signal.Signals(signum).name
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def run(self, cmd: list[str]) -> int:
        """Run ``cmd``; its output is shown as it comes and the tail of both streams
        kept (Open MPI 5 says on stdout that it lost a node)."""
        self.stderr_tail.clear()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pumps = [threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                 for source, sink in ((self.proc.stdout, sys.stdout),
                                      (self.proc.stderr, sys.stderr))]
        for pump in pumps:
            pump.start()
        code = self.proc.wait()
        for pump in pumps:
            pump.join(timeout=5)
        return code

    def _pump(self, source: IO[bytes] | None, sink: TextIO) -> None:
        assert source is not None
        for raw in source:
            sink.buffer.write(raw)
            sink.flush()
            self.stderr_tail.append(raw.decode(errors="replace").rstrip("\n"))


def supervise(options: RunOptions) -> int:
    """Run the job to completion across relaunches; return the merged exit code."""
    tmp = None
    journal = options.journal
    if journal is None:
        tmp = tempfile.TemporaryDirectory(prefix="mpidist-run-")
        journal = Path(tmp.name) / "journal.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.unlink(missing_ok=True)
    launch_args = _launch_args(options.pytest_args)
    os.environ.setdefault(RUN_ID_ENV, uuid.uuid4().hex)  # the launches add to one run
    child = _Child()
    previous = {sig: signal.signal(sig, child.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    launches, last_code, started = 0, 0, time.monotonic()
    try:
        while True:
            launches += 1
            cmd = [*options.launcher, options.python, "-m", "pytest", "--with-mpi",
                   f"--mpi-journal={journal}", *launch_args]
            if launches > 1:
                cmd.insert(cmd.index("--with-mpi") + 1, f"--mpi-resume={journal}")
            print(f"mpidist run: launch {launches}: {' '.join(cmd)}", file=sys.stderr,
                  flush=True)
            last_code = child.run(cmd)
            state = read_journal(journal)
            cut = state.in_flight is not None  # Open MPI 5 exits 0 when it loses a node
            if state.in_flight is not None:  # rank 0 died before it could report
                why = "interrupted" if child.interrupted else "crashed"
                _record_failure(journal, state.in_flight, (
                    f"{why}: the job ended (launcher exit code {last_code}) while this test "
                    "ran, and rank 0 could not report it; the launcher's output above "
                    "names the rank that died"), why)
                state = read_journal(journal)
            _amend_crash(journal, state, diagnose(child.stderr_tail))
            state = read_journal(journal)
            remaining = [n for n in state.collected if n not in state.done]
            abnormal = state.last_abnormal or last_code < 0
            if child.interrupted or not remaining or not abnormal or (last_code == 0
                                                                        and not cut):
                break
            if launches > options.max_restarts:
                for nodeid in remaining:
                    _record_failure(journal, nodeid, (
                        f"not run: the job ended abnormally {launches} times "
                        f"(--max-restarts {options.max_restarts})"), "not-run")
                break
            print(f"mpidist run: {state.last_abnormal or 'crash'} ended launch {launches}; "
                  f"relaunching on the {len(remaining)} remaining test(s)",
                  file=sys.stderr, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = _final_report(options, journal, launches, time.monotonic() - started)
    reported = bool(read_journal(journal).done)
    if tmp is not None:
        tmp.cleanup()
    if child.interrupted:
        return 2  # pytest's ExitCode.INTERRUPTED
    return code if reported else last_code  # nothing ran: the launch's own error


def _record_failure(journal: Path, nodeid: str, message: str, why: str) -> None:
    """Journal a failure for a test no rank could report on."""
    writer = JournalWriter(journal)
    writer.done(nodeid, synthesized_failure(nodeid, message), abnormal=why)
    writer.close()


def _amend_crash(journal: Path, state: JournalState, account: str) -> None:
    """Add the launcher's account of a dead rank to the test it killed."""
    if not account or state.last_abnormal not in ("terminated", "crashed"):
        return
    nodeid, record = list(state.done.items())[-1]
    reports = [dict(r) for r in record["reports"]]
    for report in reports:
        if report.get("when") == "call" and report.get("outcome") == "failed":
            report["longrepr"] = f"{report['longrepr']}\n\nthe launcher says: {account}"
            break
    else:
        return
    writer = JournalWriter(journal)
    writer.done(nodeid, reports, abnormal=f"{state.last_abnormal}+")
    writer.close()


def _final_report(options: RunOptions, journal: Path, launches: int, seconds: float) -> int:
    """One summary and one JUnit file for every launch (pytest's own reporters).

    The replay gets the user's own pytest arguments (reporting options, ini,
    plugins); it collects nothing, so paths and selection options are inert.
    """
    cmd = replay_command(journal, options.pytest_args)
    print(f"mpidist run: {launches} launch(es) in {seconds:.1f} s; merged report:",
          file=sys.stderr, flush=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return subprocess.run(cmd, env=env).returncode
