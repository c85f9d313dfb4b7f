"""The history file under real mpirun: rank 0 records each run, `mpidist history` reads it.

Two runs of a suite in which one test fails on rank 2 in the first run only; then the
questions, as a user asks them, and what must never happen: a corrupt history file
failing a run, a file from a newer mpidist read as if it were ours.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys

import pytest

from ..mpijob import Job, job_env

SUITE = '''
import os, time
import torch.distributed as dist

def test_ok():
    dist.barrier()

def test_flaky():
    dist.barrier()
    if dist.get_rank() == 2 and os.path.exists("fail-now"):
        raise AssertionError("rank 2 saw a bad sum")

def test_slow():
    time.sleep(0.3)
'''


def history(job: Job, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpidist.cli", "history", *args],
                          cwd=job.path, env=job_env(), capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def two_runs(make_job) -> Job:
    job = make_job("history")
    job.write("test_x.py", SUITE)
    (job.path / "fail-now").touch()
    first = job.run(3, "--mpi-history=h.sqlite", timeout=120)
    assert first.returncode == 1, first.stdout[-2000:]
    (job.path / "fail-now").unlink()
    second = job.run(3, "--mpi-history=h.sqlite", timeout=120)
    assert second.returncode == 0, second.stdout[-2000:]
    return job


def test_each_run_is_recorded_once_by_rank_0(two_runs):
    db = sqlite3.connect(two_runs.path / "h.sqlite")
    assert db.execute("SELECT kind, world_size FROM runs").fetchall() == [("pytest", 3)] * 2
    rows = db.execute("SELECT nodeid, outcome FROM tests ORDER BY run, nodeid").fetchall()
    assert rows == [("test_x.py::test_flaky", "failed"), ("test_x.py::test_ok", "passed"),
                    ("test_x.py::test_slow", "passed"), ("test_x.py::test_flaky", "passed"),
                    ("test_x.py::test_ok", "passed"), ("test_x.py::test_slow", "passed")]
    [(host, ranks, cause)] = db.execute("SELECT host, ranks, cause FROM failures").fetchall()
    assert (host, json.loads(ranks)) == (socket.gethostname(), [2])
    assert cause == "AssertionError: rank 2 saw a bad sum"
    [(shape,)] = db.execute("SELECT ranks FROM tests WHERE nodeid = 'test_x.py::test_slow' "
                            "LIMIT 1").fetchall()
    shape = json.loads(shape)
    assert shape["median"] >= 0.3 and len(shape["slowest"]) == 3


def test_flaky_names_the_test_and_where_it_failed(two_runs):
    out = history(two_runs, "flaky", "--file", "h.sqlite")
    assert out.returncode == 0, out.stderr
    host = socket.gethostname()
    assert out.stdout.splitlines() == [
        f"test_x.py::test_flaky: failed in 1 of 2 runs ({host} 1) - concentrated on host "
        f"{host}: 1 of 1 failures there; passed in 1 runs with it, 0 without it"]
    answer = json.loads(history(two_runs, "test", "test_x.py::test_flaky", "--file",
                                "h.sqlite", "--json").stdout)
    assert [run["outcome"] for run in answer] == ["passed", "failed"]
    assert answer[1]["failed_on"] == [{"host": host, "ranks": [2],
                                       "cause": "AssertionError: rank 2 saw a bad sum"}]
    nodes = history(two_runs, "nodes", "--file", "h.sqlite").stdout
    assert nodes.strip() == f"{host}: 1 failures in 1 tests, 2 runs"
    slow = history(two_runs, "slow", "--file", "h.sqlite").stdout.splitlines()
    assert "test_x.py::test_slow" in slow[0]


def test_bad_questions_and_newer_files_get_one_line_and_exit_code_2(two_runs):
    out = history(two_runs, "flakey", "--file", "h.sqlite")
    assert (out.returncode, out.stderr.strip().splitlines()) == (2, [
        "mpidist: error: unknown history question 'flakey': choose from flaky, slow, "
        "nodes, test"])
    newer = two_runs.path / "newer.sqlite"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    out = history(two_runs, "flaky", "--file", str(newer))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"mpidist: error: history file {newer} has schema 99, newer than this mpidist's 1: "
        "upgrade mpidist, or use another file (--mpi-history)"]


def test_a_corrupt_history_file_costs_a_warning_not_the_run(job):
    job.write("test_x.py", SUITE)
    (job.path / "h.sqlite").write_bytes(b"not a database" * 200)
    result = job.run(3, "--mpi-history=h.sqlite", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    result.lines.fnmatch_lines(["*mpidist: WARNING history not used: history file *h.sqlite*",
                                "*3 passed*"])


def test_the_default_file_and_off(job):
    """The default is pytest's cache directory (the job's ini turns the cache off, so
    here a plain one); ``-p no:cacheprovider`` alone is off (test_report_writers)."""
    (job.path / "pytest.ini").write_text("[pytest]\naddopts = --color=no\n")
    job.write("test_x.py", SUITE)
    assert job.run(3, timeout=120).returncode == 0
    assert (job.path / ".pytest_cache" / "mpidist" / "history.sqlite").is_file()
    job.write("test_y.py", SUITE)
    assert job.run(3, "--mpi-history=off", "test_y.py", timeout=120).returncode == 0
    db = sqlite3.connect(job.path / ".pytest_cache" / "mpidist" / "history.sqlite")
    assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
