"""The history file: one SQLite database, every run's merged results and figures.

SQLite because it needs no server, ships with Python and locks the file for its
writers: rank 0 of several jobs sharing one file (a shared filesystem's home
directory) each write one transaction, ``BEGIN IMMEDIATE``, and wait up to
``timeout`` seconds for one another. The journal stays SQLite's default rollback
journal (``DELETE``), not WAL, which needs shared memory that network filesystems do
not give. A run is written in one transaction at the end (rows batched), so a test
never waits on the disk.

The schema has a version (``PRAGMA user_version``); an older file is upgraded in
place by the steps of ``_UPGRADES`` (rows kept), a newer one refused with
``HistoryError``: this mpidist cannot know what the newer columns mean.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import MpidistError

__all__ = ["SCHEMA", "Figure", "History", "HistoryError", "Run", "TestRow", "marks"]

SCHEMA = 1

_UPGRADES: dict[int, str] = {  # version reached -> what takes a file there from the one before
    1: """
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY, run TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
        started REAL NOT NULL, launcher TEXT, mpi TEXT, torch TEXT, world_size INTEGER,
        nodes TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tests (
        run INTEGER NOT NULL REFERENCES runs(id), nodeid TEXT NOT NULL,
        outcome TEXT NOT NULL, duration REAL NOT NULL, ranks TEXT,
        PRIMARY KEY (run, nodeid));
    CREATE TABLE IF NOT EXISTS failures (
        run INTEGER NOT NULL REFERENCES runs(id), nodeid TEXT NOT NULL,
        host TEXT NOT NULL, ranks TEXT NOT NULL, cause TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS figures (
        run INTEGER NOT NULL REFERENCES runs(id), kind TEXT NOT NULL, name TEXT NOT NULL,
        value REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS tests_nodeid ON tests (nodeid);
    CREATE INDEX IF NOT EXISTS failures_nodeid ON failures (nodeid);
    CREATE INDEX IF NOT EXISTS figures_name ON figures (kind, name);
    """,
}


def marks(keys: Sequence[Any]) -> str:
    """The ``?`` placeholders of an SQL ``IN (...)`` over ``keys`` (``NULL``: none)."""
    return ",".join("?" * len(keys)) or "NULL"


class HistoryError(MpidistError):
    """The history file cannot be used: from a newer mpidist, or not a database."""


@dataclass(frozen=True)
class Run:
    """One job: a pytest session under ``--with-mpi`` or a ``mpidist validate``."""

    run: str
    kind: str  # "pytest" or "validate"
    started: float
    nodes: list[str]
    world_size: int = 0
    launcher: str = ""
    mpi: str = ""
    torch: str = ""


@dataclass(frozen=True)
class TestRow:
    """A test's merged result. ``ranks``: the median and the slowest ranks' seconds
    (``{"median": s, "slowest": [[rank, host, s], ...]}``); ``failed``: per host, its
    failing ranks and their cause (``[[host, [ranks], cause], ...]``)."""

    __test__ = False  # not a test class, whatever its name

    nodeid: str
    outcome: str
    duration: float
    ranks: dict[str, Any] = field(default_factory=dict)
    failed: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    """A measured figure: a node's or a link's GB/s (``kind`` "node" or "link")."""

    kind: str
    name: str
    value: float


class History:
    """An open history file (created with its schema when missing).

    Args:
        path: the SQLite file.
        timeout: seconds a writer waits for another job's transaction.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"history file {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _upgrade(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA:
            raise HistoryError(
                f"history file {self.path} has schema {version}, newer than this "
                f"mpidist's {SCHEMA}: upgrade mpidist, or use another file (--mpi-history)")
        if version == SCHEMA:
            return
        with self._write() as db:  # another job may be upgrading it too: read again
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            for step in range(version + 1, SCHEMA + 1):
                for statement in filter(str.strip, _UPGRADES[step].split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {max(version, SCHEMA)}")

    def record(self, run: Run, tests: Sequence[TestRow] = (),
               figures: Sequence[Figure] = ()) -> None:
        """Add ``run``'s tests and figures, in one transaction. A run id already there
        (``mpidist run``'s launches share one) gets the new rows added to it."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO runs (run, kind, started, launcher, mpi, torch, "
                       "world_size, nodes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (run.run, run.kind, run.started, run.launcher, run.mpi, run.torch,
                        run.world_size, json.dumps(run.nodes)))
            key = int(db.execute("SELECT id FROM runs WHERE run = ?", (run.run,)).fetchone()[0])
            db.executemany("INSERT OR REPLACE INTO tests VALUES (?, ?, ?, ?, ?)",
                           [(key, t.nodeid, t.outcome, t.duration, json.dumps(t.ranks))
                            for t in tests])
            db.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?)",
                           [(key, t.nodeid, host, json.dumps(ranks), cause)
                            for t in tests for host, ranks, cause in t.failed])
            db.executemany("INSERT INTO figures VALUES (?, ?, ?, ?)",
                           [(key, f.kind, f.name, f.value) for f in figures])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._db.execute(sql, params))

    def last_runs(self, kind: str, last: int) -> list[tuple[int, str, float, list[str]]]:
        """The ``last`` runs of ``kind``, newest first: (key, run id, started, nodes)."""
        rows = self.query("SELECT id, run, started, nodes FROM runs WHERE kind = ? "
                          "ORDER BY started DESC, id DESC LIMIT ?", (kind, last))
        return [(key, run, started, json.loads(nodes)) for key, run, started, nodes in rows]

    def durations(self, last: int = 5) -> dict[str, float]:
        """Each test's median duration over the last ``last`` pytest runs that ran it
        (not skipped): what placement orders by, longest first."""
        keys = [key for key, *_ in self.last_runs("pytest", max(last, 1) * 4)]
        if not keys:
            return {}
        seen: dict[str, list[float]] = {}
        for nodeid, duration in self.query(
                f"SELECT nodeid, duration FROM tests WHERE run IN ({marks(keys)}) AND outcome != "
                f"'skipped' ORDER BY run DESC", keys):
            if len(seen.setdefault(nodeid, [])) < last:
                seen[nodeid].append(float(duration))
        return {nodeid: statistics.median(values) for nodeid, values in seen.items()}

    def figures(self, kind: str, last: int = 10) -> dict[str, list[float]]:
        """Each node's or link's figures in the ``last`` validate runs, newest first."""
        runs = [key for key, *_ in self.last_runs("validate", last)]
        if not runs:
            return {}
        out: dict[str, list[float]] = {}
        for name, value in self.query(
                f"SELECT name, value FROM figures WHERE kind = ? AND run IN ({marks(runs)}) "
                f"ORDER BY run DESC", [kind, *runs]):
            out.setdefault(name, []).append(float(value))
        return out
