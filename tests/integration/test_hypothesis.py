"""hypothesis under real mpirun: every rank draws the same examples and ends a test
together (mpidist/plugins/examples.py, draws.py).

One suite, run once without a seed flag (the collective, a failure on one rank, a
deadline and a health check that one rank alone would hit, the database), then twice
with ``--hypothesis-seed`` on the recording tests.
"""

from __future__ import annotations

import pytest

# these jobs prove mpidist beside the plugins of docs/plugins.md, installed from PyPI
pytestmark = pytest.mark.autoload

pytest.importorskip("hypothesis")

SUITE = '''
import os
import time

import pytest
import torch
import torch.distributed as dist
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

RANK = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def record(name, value):
    """Rank 0 appends what it drew; every rank checks that all drew the same."""
    mine = torch.tensor([value], dtype=torch.int64)
    every = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    assert len({t.item() for t in every}) == 1, [t.item() for t in every]
    if RANK == 0:
        with open(f"{os.environ['TAG']}-{name}.txt", "a") as f:
            f.write(f"{value}\\n")


@given(st.integers(1, 257))
@settings(max_examples=30)
def test_collective_of_drawn_size(n):
    t = torch.ones(n)
    dist.all_reduce(t)  # a size per rank would abort gloo
    assert t[0].item() == dist.get_world_size()


@given(st.integers(1, 257))
@settings(max_examples=60, database=DirectoryBasedExampleDatabase(f"db-{RANK}"))
def test_fails_on_rank_1(n):
    t = torch.ones(n)
    dist.all_reduce(t)
    assert not (RANK == 1 and n > 100), f"rank 1 got n={n}"


@given(st.integers(1, 50))
@settings(max_examples=10, deadline=200)
def test_slow_on_rank_2(n):
    t = torch.ones(n)
    dist.all_reduce(t)
    if RANK == 2:
        time.sleep(0.3)


@given(st.integers(0, 10**6).filter(lambda x: RANK != 2 or x < 0))
@settings(max_examples=20)
def test_health_check_on_rank_2(n):
    t = torch.ones(3)
    dist.all_reduce(t)


@given(st.integers(1, 50))
@settings(max_examples=30)
def test_assume_on_rank_0(n):
    t = torch.ones(n)
    dist.all_reduce(t)
    assume(not (RANK == 0 and n % 2))


@given(st.integers(0, 10**9))
@settings(max_examples=5, database=None)
def test_record_seeded(n):
    record("seeded", n)


@given(st.integers(0, 10**9))
@settings(max_examples=5, derandomize=True, database=None)
def test_record_derandomized(n):
    record("derandomized", n)


@given(st.integers(1, 20))
def test_after_the_rest(n):
    t = torch.ones(n)
    dist.all_reduce(t)
'''


@pytest.fixture(scope="module")
def runs(make_job):
    job = make_job("hypothesis")
    job.write("test_hyp.py", SUITE)
    first = job.run(3, "-rA", timeout=180, env={"TAG": "first"})
    seeded = [job.run(3, "-k", "record", "--hypothesis-seed=1234", timeout=120,
                      env={"TAG": tag}) for tag in ("again", "once-more")]
    return job, first, seeded


def failure(stdout: str, test: str) -> list[str]:
    """The lines of ``test``'s section in FAILURES, from its first ``[rank...]`` label."""
    text = stdout.split(f"_ {test} _", 1)[1].split("\n____", 1)[0]
    lines = text.splitlines()[1:]
    return lines[next(i for i, line in enumerate(lines) if line.startswith("[")):]


def test_the_ranks_draw_the_same_sizes_without_a_seed_flag(runs):
    _, first, _ = runs
    first.lines.fnmatch_lines(["PASSED test_hyp.py::test_collective_of_drawn_size",
                               "PASSED test_hyp.py::test_assume_on_rank_0",
                               "PASSED test_hyp.py::test_after_the_rest"])
    assert "died" not in first.stdout and "SIGABRT" not in first.stdout


def test_a_failure_on_one_rank_is_one_falsifying_example(runs):
    _, first, _ = runs
    lines = failure(first.stdout, "test_fails_on_rank_1")
    section = "\n".join(lines)
    assert section.count("Failing test case: test_fails_on_rank_1(") == 1, section
    assert lines[0].startswith("[rank 1/3 (host "), section  # the failing rank leads
    assert "AssertionError: rank 1 got n=101" in section  # shrunk alike everywhere
    echo = next(i for i, line in enumerate(lines) if line.startswith("[ranks 0,2/3 (host "))
    assert lines[echo + 1].startswith("mpidist: this example failed on rank 1/3 (host ")
    case = first.testcases()["test_fails_on_rank_1"]
    assert case.find("failure") is not None


def test_the_example_database_is_written_by_rank_0_alone(runs):
    job, _, _ = runs
    assert (job.path / "db-0").is_dir()
    assert not (job.path / "db-1").exists() and not (job.path / "db-2").exists()


def test_one_ranks_deadline_or_health_check_is_one_named_failure(runs):
    _, first, _ = runs
    deadline = failure(first.stdout, "test_slow_on_rank_2")
    assert deadline[0].startswith("[ranks 0-2/3 (host ")  # the slowest rank's time, alike
    assert "DeadlineExceeded: Test took 3" in "\n".join(deadline)
    lines = failure(first.stdout, "test_health_check_on_rank_2")
    health = "\n".join(lines)
    assert lines[0].startswith("[rank 2/3 (host ")  # the cause first
    assert "FailedHealthCheck" in health
    assert ("mpidist: rank 2/3 (host " in health
            and "stopped running this test's examples" in health)
    first.lines.fnmatch_lines(["*= 3 failed, 5 passed in *"])
    assert first.returncode == 1  # the job ended normally: no abort, no hang


def test_hypothesis_seed_and_derandomize_are_honoured(runs):
    job, _, seeded = runs
    for result in seeded:
        result.lines.fnmatch_lines(["*= 2 passed, 6 deselected in *"])
    again, once_more = ((job.path / f"{tag}-seeded.txt").read_text()
                        for tag in ("again", "once-more"))
    assert again == once_more and len(again.split()) == 5
    derandomized = {(job.path / f"{tag}-derandomized.txt").read_text()
                    for tag in ("first", "again", "once-more")}
    assert len(derandomized) == 1
