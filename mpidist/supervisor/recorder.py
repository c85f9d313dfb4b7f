"""Rank 0 writes the journal: a pytest plugin of the supervisor layer.

Registered through its own pytest11 entry point; inert without ``--with-mpi``
and on ranks > 0. It reads nothing but what every reporter reads -- the merged
reports rank 0 replays through pytest's logging hooks -- so the journal holds
exactly what the terminal and JUnit showed:

* ``pytest_collection_modifyitems`` (last): with ``--mpi-resume``, rank 0
  deselects the tests the journal records as finished (the runner then gives
  every rank rank 0's selection);
* ``pytest_collection_finish``: the tests this launch will run;
* ``pytest_runtest_setup``: rank 0 began running a test (it logs a test only
  once the next one's setup is done, so this, not pytest's logstart, says
  where rank 0 is);
* ``pytest_runtest_logreport`` / ``logfinish``: its merged reports, and the
  ``done`` record, marked abnormal when the test ended the job
  (``results.ABNORMAL`` on its call report). The flight log writes a plain
  pass as its timings alone (the journal's ``passed`` record).

With ``--mpi-journal`` (``mpidist run``) the journal is the user's file, fsynced.
Without it, rank 0 keeps the same record as a *flight log* in a private
temporary directory, written through to the kernel but not fsynced, and hands
its keeper the replay of it (``safety.keeper.Link.on_death``): should rank 0's
process die, the keeper prints the summary and writes the JUnit file from it,
with the test rank 0 was in failed as died. A normal end removes it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from _pytest.reports import TestReport

from ..bootstrap import settings
from ..bootstrap.settings import setting
from ..report.results import ABNORMAL
from ..safety import keeper
from ..session.plugin import rank_of
from .journal import JournalWriter, read_journal
from .replay import replay_command

__all__ = ["JournalRecorder"]

#: the attributes of a report no layer added to
_PLAIN = frozenset(vars(TestReport("", ("", None, ""), {}, "passed", None, "call")))


def _plain_pass(report: TestReport) -> bool:
    """A passed phase with no attribute a layer or plugin added (not a subtest's)."""
    return (report.outcome == "passed" and report.longrepr is None
            and type(report) is TestReport and vars(report).keys() <= _PLAIN)


class JournalRecorder:
    """Rank 0's journal writer, driven by pytest's hooks.

    Args:
        config: the pytest config.
        path: the journal file.
        durable: fsync each finished test (``mpidist run``'s journal).
        private: a directory of this recorder's own, removed at the end (the flight log).
    """

    def __init__(self, config: pytest.Config, path: str | Path, durable: bool = True,
                 private: str = "") -> None:
        self.config = config
        self.writer = JournalWriter(path, durable=durable)
        self._private = private
        self._brief = bool(private)  # the flight log: passed subtests by count
        self._reports: list[TestReport] = []
        self._subtests = 0

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.writer.collected([item.nodeid for item in session.items])

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.writer.running(item.nodeid)

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        # Rank 0 sets every rank's pace, and this runs for every report, each
        # subtest's too: the flight log counts passed subtests (a real-shaped suite
        # with 6,000 ran 11% slower with each one serialized).
        if self._brief and report.passed and hasattr(report, "context"):
            self._subtests += 1
        else:
            self._reports.append(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        reports, subtests = self._reports, self._subtests
        self._reports, self._subtests = [], 0
        if self._brief and reports and all(map(_plain_pass, reports)):
            self.writer.passed(nodeid, reports[0].location, [
                (r.when, r.duration, r.start, r.stop, r.sections, r.user_properties)
                for r in reports], subtests)
            return
        abnormal = next((a for r in reports if (a := getattr(r, ABNORMAL, ""))), "")
        self.writer.done(nodeid, [self.config.hook.pytest_report_to_serializable(
            config=self.config, report=r) for r in reports], abnormal, subtests)

    def pytest_unconfigure(self) -> None:
        self.writer.close()
        if self._private:
            shutil.rmtree(self._private, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if rank_of(config) != 0:
        return
    path = setting(config, settings.JOURNAL)
    if path:  # mpidist run: the supervisor reports a death of rank 0 from it
        config.pluginmanager.register(JournalRecorder(config, path), "mpidist-journal")
        return
    link = keeper.link()
    if link is None:  # no keeper (--mpi-keeper off, one task): nobody outlives rank 0
        return
    private = tempfile.mkdtemp(prefix="mpidist-flight-")  # 0700: this user's alone
    flight = Path(private) / "journal.jsonl"
    config.pluginmanager.register(
        JournalRecorder(config, flight, durable=False, private=private), "mpidist-journal")
    # PYTEST_ADDOPTS may hold --with-mpi; the arguments are the user's own
    link.on_death(replay_command(flight, config.invocation_params.args, died="{died}"),
                  unset=("PYTEST_ADDOPTS",), remove=private)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    resume = setting(config, settings.RESUME) if rank_of(config) == 0 else ""
    if not resume:
        return
    done = read_journal(resume).done
    finished = [item for item in items if item.nodeid in done]
    if finished:
        items[:] = [item for item in items if item.nodeid not in done]
        config.hook.pytest_deselected(items=finished)
