"""The pytest plugins suites rely on, under real mpirun: decided collectively.

pytest-rerunfailures (a test reruns on every rank or on none; the report shows each
rerun once), pytest-cov (every rank measured, one combined table from rank 0),
pytest-randomly (rank 0's order and seed on every rank), pytest-xdist's ``-n``
(a usage error).
"""

from __future__ import annotations

import pytest

# these jobs prove mpidist beside the plugins of docs/plugins.md, installed from PyPI
pytestmark = pytest.mark.autoload

FLAKY = '''
import pathlib
import torch.distributed as dist


def attempts(name):
    mark = pathlib.Path(f"{name}-{dist.get_rank()}")
    mark.write_text(mark.read_text() + "x" if mark.exists() else "x")
    return len(mark.read_text())


def test_steady():
    dist.barrier()


def test_fails_once_on_rank_1():
    first = attempts("once") == 1
    dist.barrier()  # a collective in every attempt: every rank must rerun it
    assert not (first and dist.get_rank() == 1), "first attempt on rank 1"


def test_always_fails_on_rank_0():
    attempts("always")
    dist.barrier()
    assert dist.get_rank() != 0
'''


def test_reruns_rerun_on_every_rank_and_are_reported_once(job):
    pytest.importorskip("pytest_rerunfailures")
    job.write("test_flaky.py", FLAKY)
    result = job.run(2, "--reruns", "2", "-rA", timeout=120)
    assert result.returncode == 1
    result.lines.fnmatch_lines(["*= 1 failed, 2 passed, 3 rerun in *"])
    result.lines.fnmatch_lines(["FAILED test_flaky.py::test_always_fails_on_rank_0 - "
                                "[[]rank 0/2 (host *)] assert 0 != 0"])
    for rank in (0, 1):  # every rank ran each attempt
        assert (job.path / f"once-{rank}").read_text() == "xx"
        assert (job.path / f"always-{rank}").read_text() == "xxx"
    cases = result.testcases()
    assert cases["test_fails_once_on_rank_1"].find("failure") is None
    assert cases["test_always_fails_on_rank_0"].find("failure") is not None


def test_flaky_marker_reruns_everywhere(job):
    pytest.importorskip("pytest_rerunfailures")
    job.write("test_flaky.py", FLAKY.replace(
        "def test_fails_once", "@pytest.mark.flaky(reruns=1)\ndef test_fails_once").replace(
        "import pathlib", "import pathlib\nimport pytest"))
    result = job.run(2, "-k", "once", timeout=120)
    assert result.returncode == 0
    result.lines.fnmatch_lines(["*= 1 passed, 2 deselected, 1 rerun in *"])


COVERED = '''
def which(rank):
    if rank == 0:
        return "first"
    return "other"
'''


def test_cov_measures_every_rank_and_rank_0_reports_once(job):
    pytest.importorskip("pytest_cov")
    (job.path / "pkg").mkdir()
    job.write("pkg/__init__.py", COVERED)
    job.write("test_cov.py", '''
import torch.distributed as dist
import pkg


def test_branch():
    assert pkg.which(dist.get_rank())
''')
    result = job.run(2, "--cov=pkg", "--cov-report=term-missing", timeout=120)
    assert result.returncode == 0, result.stdout
    assert "INTERNALERROR" not in result.stdout + result.stderr
    # rank 0 runs one branch, rank 1 the other: 100% only if both were combined
    result.lines.fnmatch_lines(["*tests coverage*", "pkg/__init__.py * 4 * 0 * 100%*"])
    assert result.stdout.count("tests coverage") == 1
    assert sorted(p.name for p in job.path.glob(".coverage*")) == [".coverage"]


def test_randomly_uses_rank_0s_order_and_seed(job):
    pytest.importorskip("pytest_randomly")
    job.write("test_rand.py", '''
import random

import pytest
import torch
import torch.distributed as dist


@pytest.mark.parametrize("i", range(8))
def test_same_numbers_everywhere(i):
    mine = torch.tensor([random.random()], dtype=torch.float64)
    every = [torch.zeros(1, dtype=torch.float64) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    assert len({t.item() for t in every}) == 1
''')
    result = job.run(2, "-v", "-p", "randomly", timeout=120, env={"PYTEST_ADDOPTS": ""})
    assert result.returncode == 0, result.stdout
    result.lines.fnmatch_lines(["Using --randomly-seed=*", "*= 8 passed in *"])
    order = [line.split("[")[1].split("]")[0] for line in result.stdout.splitlines()
             if line.startswith("test_rand.py::")]
    assert sorted(order) == [str(i) for i in range(8)]


def test_xdist_n_is_one_usage_error(job):
    pytest.importorskip("xdist")
    job.write("test_x.py", "def test_a():\n    pass\n")
    result = job.run(2, "-n", "2", timeout=120)
    assert result.returncode == 4
    assert result.stderr.count("ERROR: --with-mpi runs one pytest per MPI rank; "
                               "pytest-xdist's -n/--dist") == 1, result.stderr
    assert "Traceback" not in result.stderr


HANG = '''
import time

import pytest
import torch.distributed as dist


def test_quick():
    dist.barrier()


def test_hangs_on_rank_1():
    if dist.get_rank() == 1:
        time.sleep(60)
    dist.barrier()
'''


@pytest.mark.parametrize("where", ["ini", "env"])
def test_pytest_timeouts_limit_is_the_watchdogs(job, where):
    """pytest-timeout's ``timeout`` ini key and ``PYTEST_TIMEOUT`` become mpidist's
    collective limit: every rank's stacks, rank 1 named, the job ended by rank 0."""
    pytest.importorskip("pytest_timeout")
    job.write("test_hang.py", HANG)
    env = {}
    if where == "ini":
        with (job.path / "pytest.ini").open("a") as ini:
            ini.write("timeout = 3\n")
    else:
        env["PYTEST_TIMEOUT"] = "3"
    result = job.run(3, timeout=120, env=env)
    assert result.returncode == 1
    assert result.seconds < 45
    result.lines.fnmatch_lines([
        "Timeout: the test exceeded its 3 s limit*",
        "  ranks 0,2/3 (host *) in barrier at test_hang.py:*",
        "  rank 1/3 (host *) in test_hangs_on_rank_1 at test_hang.py:*: time.sleep(60)",
    ])
    assert "from pytest-timeout" not in result.stdout + result.stderr
    assert "test_hangs_on_rank_1" in (result.testcases())


def test_pytest_timeouts_own_timer_never_fires(job):
    """``--timeout=2`` with ``--mpi-timeout=20`` given: the watchdog's 20 s is the limit;
    pytest-timeout's own signal would have failed the 4-s test on each rank at 2 s."""
    pytest.importorskip("pytest_timeout")
    job.write("test_slow.py", '''
import time

import pytest
import torch.distributed as dist


def test_four_seconds():
    time.sleep(4)
    dist.barrier()


@pytest.mark.timeout(0)
def test_no_limit_by_marker():
    time.sleep(3)
    dist.barrier()
''')
    result = job.run(2, "--timeout=2", "--mpi-timeout=20", timeout=120)
    assert result.returncode == 0, result.stdout
    result.lines.fnmatch_lines(["*= 2 passed in *"])


AGREE = '''
import hashlib

import pytest
import torch
import torch.distributed as dist


def agree(request):
    """Every rank runs the same test at the same time, or this fails."""
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    mine = torch.tensor([int(digest, 16)], dtype=torch.int64)
    every = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    assert len({t.item() for t in every}) == 1


@pytest.mark.parametrize("i", range(6))
def test_many(i, request):
    agree(request)


@pytest.mark.order(-1)
def test_last(request):
    agree(request)
'''


def test_ordering_and_repeating_plugins_agree_on_every_rank(job):
    """pytest-random-order shuffles, pytest-order places, pytest-repeat and
    pytest-flakefinder repeat: every rank runs rank 0's order, each test at once."""
    for plugin in ("random_order", "pytest_order", "pytest_repeat", "pytest_flakefinder"):
        pytest.importorskip(plugin)
    job.write("test_agree.py", AGREE)
    result = job.run(3, "-v", "--random-order", "--count=2", "--flake-finder",
                     "--flake-runs=3", timeout=180)
    assert result.returncode == 0, result.stdout
    result.lines.fnmatch_lines(["*= 42 passed in *"])  # (6 + 1) x 2 x 3
    ran = [line.split(" ")[0] for line in result.stdout.splitlines()
           if line.startswith("test_agree.py::") and " PASSED" in line]
    assert len(ran) == 42 and len(result.testcases()) == 42
    assert all("test_last" in name for name in ran[-6:])  # pytest-order: last, after shuffling


CRASH = '''
import os

import pytest
import torch.distributed as dist


def test_before():
    dist.barrier()


@pytest.mark.forked
def test_crashes_on_rank_1():
    dist.barrier()
    if dist.get_rank() == 1:
        os._exit(3)


def test_after():
    dist.barrier()
'''


@pytest.mark.parametrize("how", ["marker", "--forked"])
def test_forked_runs_isolated_a_crash_costs_one_test(job, how):
    """pytest-forked's marker and ``--forked`` run the test in a fresh process on every
    rank (``--mpi-isolate``): rank 1's crash fails that test, and the next one runs."""
    pytest.importorskip("pytest_forked")
    job.write("test_crash.py", CRASH)
    result = job.run(3, "-rA", *(["--forked"] if how == "--forked" else []), timeout=120)
    assert result.returncode == 1, result.stdout
    result.lines.fnmatch_lines([
        "FAILED test_crash.py::test_crashes_on_rank_1 - [[]rank 1/3 (host *)] mpidist: the "
        "test's process (pid *) exited with code 3 before it reported",
        "*= 1 failed, 2 passed in *"])


def test_forked_without_isolation_is_one_usage_error(job):
    pytest.importorskip("pytest_forked")
    job.write("test_x.py", "def test_a():\n    pass\n")
    result = job.run(2, "--forked", "--mpi-isolate=off", timeout=90)
    assert result.returncode == 4
    assert result.stderr.count("ERROR: --forked runs each test in a fresh process") == 1


def test_session_timeout_is_one_usage_error(job):
    pytest.importorskip("pytest_timeout")
    job.write("test_x.py", "def test_a():\n    pass\n")
    result = job.run(2, "--session-timeout=60", timeout=90)
    assert result.returncode == 4
    assert result.stderr.count("ERROR: pytest-timeout's --session-timeout") == 1
    assert "Traceback" not in result.stderr


ASYNC = '''
import asyncio

import pytest
import pytest_asyncio
import torch
import torch.distributed as dist


@pytest_asyncio.fixture
async def ranks():
    await asyncio.sleep(0)
    return dist.get_world_size()


{mark}
async def test_awaits_then_reduces(ranks):
    await asyncio.sleep(0.01)
    t = torch.ones(4)
    dist.all_reduce(t)
    assert t[0].item() == ranks


{mark}
async def test_collective_in_a_thread():
    t = torch.ones(2)
    await asyncio.to_thread(dist.all_reduce, t)
    assert t[0].item() == dist.get_world_size()
'''


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_asyncio_tests_await_collectives(job, mode):
    pytest.importorskip("pytest_asyncio")
    job.write("test_async.py", ASYNC.replace(
        "{mark}", "@pytest.mark.asyncio" if mode == "strict" else ""))
    result = job.run(2, "-o", f"asyncio_mode={mode}", timeout=120)
    assert result.returncode == 0, result.stdout
    result.lines.fnmatch_lines(["*= 2 passed in *"])


SUBTESTS = '''
import unittest

import torch
import torch.distributed as dist


def test_fixture_subtests(subtests):
    for i in range(3):
        with subtests.test(i=i):
            t = torch.ones(1)
            dist.all_reduce(t)
            assert not (i == 1 and dist.get_rank() == 2), "subtest 1 on rank 2"


class TestCase(unittest.TestCase):
    def test_subtest(self):
        for i in range(2):
            with self.subTest(i=i):
                dist.barrier()
'''


def test_subtests_are_merged_per_subtest(job):
    """pytest 9's subtests (pytest-subtests' ``subtests`` on older pytest): one report
    per subtest, failed where any rank failed it, naming the rank."""
    job.write("test_sub.py", SUBTESTS)
    result = job.run(3, "-rA", timeout=120)
    assert result.returncode == 1, result.stdout
    result.lines.fnmatch_lines([
        "SUBFAILED(i=1) test_sub.py::test_fixture_subtests - [[]rank 2/3 (host *)] "
        "AssertionError: subtest 1 on rank 2*"])
    assert "PASSED test_sub.py::TestCase::test_subtest" in result.stdout
