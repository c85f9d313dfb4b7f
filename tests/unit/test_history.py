"""The history file and its questions, without MPI: real SQLite files, real queries."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest

from mpidist.history import queries
from mpidist.history.store import SCHEMA, Figure, History, HistoryError, Run, TestRow


def run(name: str, started: float, nodes: list[str], kind: str = "pytest") -> Run:
    return Run(run=name, kind=kind, started=started, nodes=nodes, world_size=2 * len(nodes))


def failing(nodeid: str, host: str, duration: float = 1.0) -> TestRow:
    return TestRow(nodeid, "failed", duration, {"median": 0.5, "slowest": [[3, host, 0.6]]},
                   [[host, [2, 3], "AssertionError: bad sum"]])


def test_a_test_failing_only_on_one_host_is_concentrated_there(tmp_path):
    history = History(tmp_path / "h.sqlite")
    for i in range(6):  # fails in the runs that include n3, on n3; passes in the others
        nodes = ["n1", "n2", "n3"] if i % 2 else ["n1", "n2"]
        rows = [TestRow("t.py::test_sum", "passed", 1.0) if i % 2 == 0 or i == 5
                else failing("t.py::test_sum", "n3"),
                TestRow("t.py::test_ok", "passed", 0.1)]
        history.record(run(f"r{i}", 1000.0 + i, nodes), rows)
    [entry] = queries.flaky(history)
    assert entry["nodeid"] == "t.py::test_sum"
    assert (entry["failed"], entry["runs"]) == (2, 6)
    assert entry["verdict"] == "concentrated" and entry["host"] == "n3"
    assert (entry["passed_with_host"], entry["passed_without_host"]) == (1, 3)
    text = queries.lines("flaky", [entry])[0]
    assert "failed in 2 of 6 runs (n3 2)" in text
    assert "concentrated on host n3: 2 of 2 failures there" in text


def test_failures_on_different_hosts_are_spread(tmp_path):
    history = History(tmp_path / "h.sqlite")
    history.record(run("a", 1.0, ["n1", "n2"]), [failing("t::x", "n1")])
    history.record(run("b", 2.0, ["n1", "n2"]), [failing("t::x", "n2")])
    history.record(run("c", 3.0, ["n1", "n2"]), [TestRow("t::x", "passed", 1.0)])
    [entry] = queries.flaky(history)
    assert entry["verdict"] == "spread" and entry["failures_by_host"] == {"n1": 1, "n2": 1}
    assert queries.flaky(history, last=1) == []  # only the newest run: one outcome


def test_slow_nodes_and_one_tests_runs(tmp_path):
    history = History(tmp_path / "h.sqlite")
    for i in range(3):
        history.record(run(f"r{i}", float(i), ["n1", "n2"]), [
            TestRow("t::long", "passed", 5.0 + i, {"median": 1.0, "slowest": [[1, "n2", 4.0]]}),
            TestRow("t::short", "passed", 0.2, {"median": 0.2, "slowest": [[0, "n1", 0.21]]}),
            failing("t::bad", "n2")])
    answer = queries.slow(history)
    assert [e["nodeid"] for e in answer["tests"]] == ["t::long", "t::bad", "t::short"]
    assert answer["tests"][0]["median_s"] == 6.0
    assert answer["stragglers"] == [{"host": "n2", "tests": 3}]  # t::long's and t::bad's
    ranked = queries.nodes(history)
    assert ranked[0] == {"host": "n2", "failures": 3, "tests": 1, "runs": 3}
    assert ranked[1]["host"] == "n1" and ranked[1]["failures"] == 0
    runs = queries.test(history, "t::bad")
    assert [r["run"] for r in runs] == ["r2", "r1", "r0"]
    assert runs[0]["failed_on"] == [{"host": "n2", "ranks": [2, 3],
                                     "cause": "AssertionError: bad sum"}]
    json.dumps([answer, ranked, runs])  # --json


def test_durations_are_medians_of_the_recent_runs_and_skips_do_not_count(tmp_path):
    history = History(tmp_path / "h.sqlite")
    for i, seconds in enumerate([9.0, 1.0, 2.0, 3.0]):
        history.record(run(f"r{i}", float(i), ["n1"]), [
            TestRow("t::a", "passed", seconds), TestRow("t::s", "skipped", 0.0)])
    assert history.durations(last=3) == {"t::a": 2.0}  # 3, 2, 1: the oldest 9 is out


def test_a_run_id_seen_again_adds_to_its_run(tmp_path):
    history = History(tmp_path / "h.sqlite")
    history.record(run("same", 1.0, ["n1"]), [TestRow("t::a", "failed", 1.0)])
    history.record(run("same", 5.0, ["n1"]), [TestRow("t::b", "passed", 1.0)])
    assert history.query("SELECT count(*) FROM runs") == [(1,)]
    assert history.query("SELECT count(*) FROM tests") == [(2,)]


def test_figures_of_earlier_validate_runs(tmp_path):
    history = History(tmp_path / "h.sqlite")
    for i, gbps in enumerate([2.0, 2.2, 1.8]):
        history.record(run(f"v{i}", float(i), ["n1", "n2"], kind="validate"),
                       figures=[Figure("link", "n1-n2", gbps), Figure("node", "n1", 3 * gbps)])
    assert history.figures("link") == {"n1-n2": [1.8, 2.2, 2.0]}
    assert history.figures("node", last=1) == {"n1": [5.4]}


def test_a_newer_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "h.sqlite"
    History(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA + 1}")
    db.close()
    with pytest.raises(HistoryError, match=rf"has schema {SCHEMA + 1}, newer than this "
                                           rf"mpidist's {SCHEMA}: upgrade mpidist"):
        History(path)


def test_an_older_file_is_upgraded_and_keeps_its_rows(tmp_path):
    """A file from before the schema had a version (user_version 0) with a runs table
    already there: the upgrade creates what is missing and keeps what is in it."""
    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, run TEXT UNIQUE NOT NULL, "
               "kind TEXT NOT NULL, started REAL NOT NULL, launcher TEXT, mpi TEXT, "
               "torch TEXT, world_size INTEGER, nodes TEXT NOT NULL)")
    db.execute("INSERT INTO runs (run, kind, started, nodes) VALUES ('old', 'pytest', 1, '[]')")
    db.commit()
    db.close()
    history = History(path)
    assert history.query("PRAGMA user_version") == [(SCHEMA,)]
    assert history.query("SELECT run FROM runs") == [("old",)]


def test_a_corrupt_file_is_a_history_error(tmp_path):
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match=r"history file .*h\.sqlite"):
        History(path)


def _writer(path: str, index: int) -> None:
    history = History(path)
    for j in range(20):
        history.record(run(f"w{index}-{j}", float(j), ["n1"]),
                       [TestRow(f"t::{k}", "passed", 0.01) for k in range(50)])


def test_concurrent_writers_share_one_file(tmp_path):
    """Four processes (four jobs' rank 0) writing 20 runs each into one file: every row
    arrives, none is torn."""
    path = str(tmp_path / "h.sqlite")
    History(path).close()
    procs = [multiprocessing.get_context("fork").Process(target=_writer, args=(path, i))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    history = History(path)
    assert history.query("SELECT count(*) FROM runs") == [(80,)]
    assert history.query("SELECT count(*) FROM tests") == [(4000,)]
    assert history.query("PRAGMA integrity_check") == [("ok",)]
