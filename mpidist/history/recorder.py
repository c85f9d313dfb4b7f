"""Rank 0 adds each run to the history file: every test's merged result, once.

Registered by the session on rank 0 only, so no other rank opens the file. It reads
the merged reports as rank 0 logs them (``pytest_runtest_logreport``): the outcome,
the duration and, from the merge (``report.results.RANK_SHAPE``), each failing host
with its ranks and cause, and the median and slowest ranks' seconds. It writes them
all in one transaction when the session ends: a test never waits on the disk. A file
that cannot be used (locked past the wait, corrupt, from a newer mpidist, on a full
disk) costs one warning line, never the run.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ..bootstrap import settings
from ..bootstrap.settings import setting
from ..report.results import RANK_SHAPE
from .store import History, HistoryError, Run, TestRow

__all__ = ["HistoryRecorder", "history_path", "open_history", "run_info"]

#: ``mpidist run`` gives its launches one run id, so a relaunch adds to the same run
RUN_ID_ENV = "MPIDIST_RUN_ID"


def history_path(config: pytest.Config) -> Path | None:
    """The history file this session uses (None: ``--mpi-history off``). Default:
    ``mpidist/history.sqlite`` in pytest's cache directory; none when pytest's cache is
    off (``-p no:cacheprovider``): a user who turned it off wants nothing written there."""
    value = str(setting(config, settings.HISTORY) or "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    if getattr(config, "cache", None) is None:
        return None
    cache_dir = Path(os.path.expandvars(str(config.getini("cache_dir")))).expanduser()
    return Path(config.rootpath, cache_dir, "mpidist", "history.sqlite")


def open_history(path: Path, warn: Any) -> History | None:
    """The history at ``path``, or None after one warning through ``warn``."""
    try:
        return History(path)
    except (HistoryError, sqlite3.Error, OSError) as exc:
        warn(f"mpidist: WARNING history not used: {exc}")
        return None


def run_info(kind: str, world: Any, started: float) -> Run:
    """The run's row: its id, launcher, MPI, torch, size and hosts."""
    task = settings.launcher_task()
    mpi = ""
    if "mpi4py" in sys.modules:
        from mpi4py import MPI

        mpi = MPI.Get_library_version().splitlines()[0].strip()
    torch = getattr(sys.modules.get("torch"), "__version__", "")
    return Run(run=os.environ.get(RUN_ID_ENV) or uuid.uuid4().hex, kind=kind, started=started,
               nodes=list(dict.fromkeys(world.hosts)), world_size=world.size,
               launcher=task[0] if task else "", mpi=mpi, torch=str(torch))


class HistoryRecorder:
    """Rank 0's collector of this run's merged results (see the module)."""

    def __init__(self, config: pytest.Config, world: Any) -> None:
        self.config = config
        self.world = world
        self.started = time.time()
        self.tests: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" or report.nodeid not in self.tests:
            # a rerun starts again at its setup: the last attempt is the test's result
            self.tests[report.nodeid] = {"outcome": "passed", "duration": 0.0, "ranks": {},
                                         "failed": {}}
        entry = self.tests[report.nodeid]
        entry["duration"] += report.duration
        if report.failed:
            entry["outcome"] = "failed"
        elif report.skipped and entry["outcome"] == "passed" and report.when != "teardown":
            entry["outcome"] = "skipped"
        shape = getattr(report, RANK_SHAPE, None) or {}
        if report.when == "call" and shape.get("median") is not None:
            entry["ranks"] = {"median": shape["median"], "slowest": shape.get("slowest", [])}
        failed = shape.get("failed") or (
            getattr(report.longrepr, "culprits", None) if report.failed else None) or []
        for host, ranks, cause in failed:
            known = entry["failed"].setdefault(host, [[], cause])
            known[0] = sorted(set(known[0]) | set(ranks))

    @pytest.hookimpl(trylast=True)  # after the last test's report is logged
    def pytest_sessionfinish(self) -> None:
        rows = [TestRow(nodeid, e["outcome"], e["duration"], e["ranks"],
                        [[host, ranks, cause] for host, (ranks, cause) in e["failed"].items()])
                for nodeid, e in self.tests.items()]
        path = history_path(self.config)  # now: pytest's cache is configured by the end
        if not rows or path is None:
            return
        history = open_history(path, self._warn)
        if history is None:
            return
        try:
            history.record(run_info("pytest", self.world, self.started), rows)
        except (sqlite3.Error, OSError) as exc:
            self._warn(f"mpidist: WARNING history not written to {path}: {exc}")
        finally:
            history.close()

    def _warn(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line, yellow=True)
        else:
            print(line, file=sys.stderr, flush=True)
