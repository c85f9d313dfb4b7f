"""Rank 0 writes the journal: a pytest plugin of the supervisor layer.

Registered through its own pytest11 entry point and inert unless
``--mpi-journal`` or ``--mpi-resume`` is set. It reads nothing but what every
reporter reads -- the merged reports rank 0 replays through pytest's logging
hooks -- so the journal holds exactly what the terminal and JUnit showed:

* ``pytest_collection_modifyitems`` (last): with ``--mpi-resume``, rank 0
  deselects the tests the journal records as finished (the runner then gives
  every rank rank 0's selection);
* ``pytest_collection_finish``: the tests this launch will run;
* ``pytest_runtest_logstart`` / ``logreport`` / ``logfinish``: a test began,
  its merged reports, and the durable ``done`` record, marked abnormal when
  the test ended the job (``results.ABNORMAL`` on its call report).
"""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.reports import TestReport

from ..bootstrap import settings
from ..bootstrap.settings import setting
from ..runner.plugin import rank_of
from ..runner.results import ABNORMAL
from .journal import JournalWriter, read_journal

__all__ = ["JournalRecorder"]


class JournalRecorder:
    """Rank 0's journal writer, driven by pytest's hooks."""

    def __init__(self, config: pytest.Config, path: str) -> None:
        self.config = config
        self.writer = JournalWriter(path)
        self._reports: list[dict[str, Any]] = []
        self._abnormal = ""

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.writer.collected([item.nodeid for item in session.items])

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.writer.start(nodeid)

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        self._reports.append(self.config.hook.pytest_report_to_serializable(
            config=self.config, report=report))
        self._abnormal = self._abnormal or getattr(report, ABNORMAL, "")

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.writer.done(nodeid, self._reports, self._abnormal)
        self._reports, self._abnormal = [], ""

    def pytest_unconfigure(self) -> None:
        self.writer.close()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if rank_of(config) != 0:
        return
    path = setting(config, settings.JOURNAL)
    if path:
        config.pluginmanager.register(JournalRecorder(config, path), "mpidist-journal")


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
