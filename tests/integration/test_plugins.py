"""The pytest plugins suites rely on, under real mpirun: decided collectively.

pytest-rerunfailures (a test reruns on every rank or on none; the report shows each
rerun once), pytest-cov (every rank measured, one combined table from rank 0),
pytest-randomly (rank 0's order and seed on every rank), pytest-xdist's ``-n``
(a usage error).
"""

from __future__ import annotations

import pytest

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
