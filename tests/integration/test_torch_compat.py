"""torch-style suites under real mpirun: torch's own MultiProcessTestCase family,
unchanged, with MPI ranks in place of spawned processes; mpidist.testing's
collective skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..mpijob import MPIResult

RANK_SUITE = Path(__file__).resolve().parents[1] / "ranks" / "torch_style.py"
torch = pytest.importorskip("torch")
# What the build has decides what runs: a CUDA build has NCCL even without a GPU.
HAS_NCCL = torch.distributed.is_nccl_available()
NCCL_TESTS = ["test_requires_nccl", "test_requires_nccl_version"]


@pytest.fixture(scope="module")
def torch_run(make_job) -> tuple[MPIResult, Path]:
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job = make_job("torch_style")
    job.write("test_torch_style.py", RANK_SUITE.read_text())
    return job.run(4, "-v", "-rfEs", "-p", "no:randomly", "--mpi-timeout", "120",
                   timeout=400), job.path


def outcome(result: MPIResult, name: str) -> str:
    found = [line.split()[1] for line in result.stdout.splitlines()
             if line.startswith(f"test_torch_style.py::{name} ")]
    assert found, f"{name} not reported"
    return found[-1]  # after any SUBPASSED lines


def test_the_run_ends_with_the_right_totals(torch_run):
    result, _ = torch_run
    assert result.returncode == 1  # exactly one test fails, on one rank
    ran = len(NCCL_TESTS) if HAS_NCCL else 0
    result.lines.fnmatch_lines([f"*= 1 failed, {18 + ran} passed, {13 - ran} skipped, "
                                "2 subtests passed in *"])


@pytest.mark.parametrize("name", [
    "test_default_group_before", "TestGlooCollectives::test_allreduce",
    "TestGlooCollectives::test_allgather_and_no_spawning", "TestSmallerWorld::test_pair",
    "TestBase::test_create_pg", "TestContinuous::test_first",
    "TestContinuous::test_same_group_again", "TestOurs::test_whole_world",
    "TestOursPair::test_pair", "test_default_group_after", "test_even_world",
    "test_store_and_has_efa", "test_run_subtests", "test_requires_gloo_runs",
    "test_with_nccl_blocking_wait", "test_with_dist_debug_levels",
    *(NCCL_TESTS if HAS_NCCL else []),
    "test_debug_levels_each_ran_and_were_restored", "test_assert_on_rank",
])
def test_passes(torch_run, name):
    assert outcome(torch_run[0], name) == "PASSED"


def test_a_failing_rank_is_named(torch_run):
    result, _ = torch_run
    assert outcome(result, "TestGlooCollectives::test_rank_two_fails") == "FAILED"
    result.lines.fnmatch_lines([
        "FAILED test_torch_style.py::TestGlooCollectives::test_rank_two_fails - "
        "[[]rank 2/4 (host *)] AssertionError: AssertionError not raised*",
    ])


def test_torch_exit_code_skip_becomes_a_skip(torch_run):
    # torch's skip_if_lt_x_gpu calls sys.exit(77) on every rank: a skip, not a failure
    result, _ = torch_run
    assert outcome(result, "TestGlooCollectives::test_needs_two_gpus") == "SKIPPED"
    result.lines.fnmatch_lines(["SKIPPED * Need at least 2 CUDA devices"])
    assert "ran without 2 GPUs" not in result.stdout


def test_smaller_world_runs_on_a_subgroup_and_says_which(torch_run):
    result, path = torch_run
    assert sorted(p.name for p in path.glob("ran-pair-*")) == ["ran-pair-0", "ran-pair-1"]
    case = result.testcases()["test_pair"]
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["mpi_outcomes"] == "passed=0-1;sat_out=2-3"


def test_larger_world_is_skipped_with_the_reason(torch_run):
    result, _ = torch_run
    result.lines.fnmatch_lines([
        "SKIPPED * TestLargerWorld needs world_size 64, the MPI world has 4 ranks"])


def test_collective_skips_name_ranks_and_reasons(torch_run):
    result, _ = torch_run
    result.lines.fnmatch_lines_random([
        "SKIPPED * Need at least 2 CUDA devices (this node has 0) (on ranks 0-3/4 (host *))",
        "SKIPPED * multicast support is not available: no multicast: "
        + ("no CUDA device*" if torch.version.cuda else "a CPU build of torch*"),
        "SKIPPED * EFA is not available: fi_info not found*",
        "SKIPPED * no widget on this node (on rank 1/4 (host *))",
        "SKIPPED * needs a world of 64 ranks, this one has 4 (on ranks 0-3/4 (host *))",
        "SKIPPED * Need at least 1 CUDA device (this node has 0) (on ranks 0-1/4 (host *))",
        *([] if HAS_NCCL else
          ["SKIPPED * c10d was not compiled with the NCCL backend (on ranks 0-3/4 (host *))"]),
        "SKIPPED * c10d was not compiled with the MPI backend (on ranks 0-3/4 (host *))",
        "SKIPPED * CUDA is not available. (on ranks 0-3/4 (host *))",
        "SKIPPED * Skipped due to small world size (4 < 8). (on ranks 0-3/4 (host *))",
    ])


def test_one_rank_leaving_through_torch_skip_code_does_not_hang_the_job(job):
    # rank 1 calls torch's sys.exit(skip code); rank 0 waits in a barrier for it
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job.write("test_x.py", """
import sys
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase, TEST_SKIPS

class TestUneven(MultiProcessTestCase):
    def setUp(self):
        super().setUp()
        self._spawn_processes()

    @property
    def world_size(self):
        return 2

    def test_uneven(self):
        store = dist.FileStore(self.file_name, 2)
        dist.init_process_group("gloo", store=store, rank=self.rank, world_size=2)
        if self.rank == 1:
            sys.exit(TEST_SKIPS["multi-gpu-2"].exit_code)
        dist.barrier()
""")
    result = job.run(2, "--mpi-peer-grace", "3", "--mpi-timeout", "120", timeout=100)
    assert result.returncode != 0
    assert result.seconds < 60
    result.lines.fnmatch_lines(["*FAILED test_x.py::TestUneven::test_uneven*"])
    output = result.stdout
    assert "rank 1/2" in output and "Need at least 2 CUDA devices" in output, output
    case = result.testcases()["test_uneven"]
    assert case.find("failure") is not None
