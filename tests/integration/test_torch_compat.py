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


def outcome(result: MPIResult, name: str, module: str = "test_torch_style.py") -> str:
    found = [line.split()[1] for line in result.stdout.splitlines()
             if line.startswith(f"{module}::{name} ")]
    assert found, f"{name} not reported"
    return found[-1]  # after any SUBPASSED lines


def test_the_run_ends_with_the_right_totals(torch_run):
    result, _ = torch_run
    assert result.returncode == 1  # exactly one test fails, on one rank
    ran = len(NCCL_TESTS) if HAS_NCCL else 0
    result.lines.fnmatch_lines([f"*= 1 failed, {19 + ran} passed, {12 - ran} skipped, "
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
    "test_requires_mpi",
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


def test_smaller_world_runs_on_a_group_of_its_size(torch_run):
    # world_size 2 on 4 ranks: a packed group of 2, whose ranks are 0 and 1 (placement.sizes)
    result, path = torch_run
    assert sorted(p.name for p in path.glob("ran-pair-*")) == ["ran-pair-0", "ran-pair-1"]
    case = result.testcases()["test_pair"]
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["mpi_outcomes"] == "passed=0-1"


def test_larger_world_is_skipped_with_the_reason(torch_run):
    result, _ = torch_run
    result.lines.fnmatch_lines([
        "*TestLargerWorld::test_never_runs SKIPPED (needs 64 MPI ranks, the world has 4)*"])


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


PROTOCOL_SUITE = '''
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import (
    MultiProcessTestCase,
    cleanup_temp_dir,
    initialize_temp_directories,
)


def test_before():
    assert "LEAKED_BY_SETUP" not in os.environ


class TestOwnRun(MultiProcessTestCase):
    """Shaped like torch's TestDistBackend: its own _run, TEMP_DIR made in setUp."""

    def setUp(self):
        super().setUp()
        initialize_temp_directories()
        os.environ["LEAKED_BY_SETUP"] = "1"
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False).__enter__()
        self._spawn_processes()

    def tearDown(self):
        cleanup_temp_dir()
        super().tearDown()

    @property
    def world_size(self):
        return 2

    @property
    def destroy_pg_upon_exit(self):
        return False  # _run destroys it, as TestDistBackend's does

    @classmethod
    def _run(cls, rank, test_name, file_name, pipe, **kwargs):
        self = cls(test_name)
        self.rank, self.file_name = rank, file_name
        dist.init_process_group("gloo", init_method=os.environ["INIT_METHOD"], rank=rank,
                                world_size=2)
        # TestDistBackend's _run waits here too ("the following test immediately exiting
        # due to a skip" would close the group under a rank still connecting)
        dist.barrier()
        open(os.path.join(os.environ["TEMP_DIR"], "barrier", f"r{rank}"), "w").close()
        self.run_test(test_name, pipe)
        dist.destroy_process_group()
        sys.exit(0)

    def test_runs_in_the_classes_run_on_a_fresh_instance(self):
        dist.barrier()  # the group _run made
        barrier = os.path.join(os.environ["TEMP_DIR"], "barrier")
        self.assertEqual(sorted(os.listdir(barrier)), ["r0", "r1"])  # one agreed TEMP_DIR
        self.assertFalse(hasattr(self, "processes"))  # no setUp on the child's instance

    def test_a_slow_rank_keeps_the_agreed_temp_dir(self):
        if self.rank == 1:  # rank 0 starts the next test meanwhile (no verdict to wait for)
            time.sleep(2)
        self.assertTrue(os.path.isdir(os.path.join(os.environ["TEMP_DIR"], "barrier")))

    def test_skip_on_rank_1_only_is_torchs_pass(self):
        if self.rank == 1:
            self.skipTest("rank 1 only")

    def test_exit_code_on_rank_1_is_ignored_as_by_torch(self):
        if self.rank == 1:
            sys.exit(3)

    def test_exit_code_on_rank_0_fails(self):
        if self.rank == 0:
            sys.exit(3)

    def test_a_collective_mpidists_group_lacks_is_a_skip(self):
        from mpidist.errors import UnsupportedCollective

        raise UnsupportedCollective("mpi4py backend: x_coalesced is not supported; call x")


def test_after():
    assert "LEAKED_BY_SETUP" not in os.environ  # what the child took with it
    assert "TORCH_SHOW_CPP_STACKTRACES" not in os.environ
    assert torch.backends.cudnn.allow_tf32  # the flag setUp entered is back
    t = torch.ones(1)
    dist.all_reduce(t)  # mpidist's default group is back
    assert t.item() == dist.get_world_size()
'''


INIT_FAILS_ON_ONE_RANK = '''
import sys

import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase


class TestInit(MultiProcessTestCase):
    world_size = 2

    def setUp(self):
        super().setUp()
        self._spawn_processes()

    @classmethod
    def _run(cls, rank, test_name, file_name, pipe, **kwargs):
        self = cls(test_name)
        self.rank, self.file_name = rank, file_name
        if test_name == "test_a_init_fails_on_rank_1":
            if rank == 1:  # torch names the group, then fails to reach the rendezvous
                dist.init_process_group("gloo", init_method="nowhere://", rank=1, world_size=2)
            sys.exit(0)
        store = dist.FileStore(file_name, 2)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
        self.run_test(test_name, pipe)  # destroys the group (destroy_pg_upon_exit)
        sys.exit(0)

    def test_a_init_fails_on_rank_1(self):
        pass

    def test_b_the_next_group_meets(self):
        t = torch.ones(1)
        dist.all_reduce(t)
        self.assertEqual(t.item(), 2.0)
'''


def test_a_failed_init_on_one_rank_does_not_split_the_next_groups_name(job):
    """torch names a group by a counter that destroying the default group resets: the rank
    whose init failed has none to destroy, and a fresh process starts at 0 anyway."""
    job.write("test_init.py", INIT_FAILS_ON_ONE_RANK)
    result = job.run(2, "-v", "-p", "no:randomly", "-rA", "--mpi-timeout=30", timeout=120)
    assert outcome(result, "TestInit::test_a_init_fails_on_rank_1", "test_init.py") == "FAILED"
    assert outcome(result, "TestInit::test_b_the_next_group_meets", "test_init.py") == "PASSED"


def test_torchs_child_protocol_verdict_and_clean_up(job):
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job.write("test_protocol.py", PROTOCOL_SUITE)
    result = job.run(2, "-v", "-p", "no:randomly", "-rA", timeout=200)
    assert result.returncode == 1
    for name in ("test_before", "TestOwnRun::test_runs_in_the_classes_run_on_a_fresh_instance",
                 "TestOwnRun::test_a_slow_rank_keeps_the_agreed_temp_dir",
                 "TestOwnRun::test_skip_on_rank_1_only_is_torchs_pass",
                 "TestOwnRun::test_exit_code_on_rank_1_is_ignored_as_by_torch", "test_after"):
        assert outcome(result, name, "test_protocol.py") == "PASSED", name
    assert outcome(result, "TestOwnRun::test_exit_code_on_rank_0_fails",
                   "test_protocol.py") == "FAILED"
    assert outcome(result, "TestOwnRun::test_a_collective_mpidists_group_lacks_is_a_skip",
                   "test_protocol.py") == "SKIPPED"
    result.lines.fnmatch_lines(["SKIPPED * mpi4py backend: x_coalesced is not supported; call x"])
    case = result.testcases()["test_skip_on_rank_1_only_is_torchs_pass"]
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["mpi_outcomes"] == "passed=0;skipped=1"
    result.lines.fnmatch_lines([
        "FAILED test_protocol.py::TestOwnRun::test_exit_code_on_rank_0_fails - "
        "[[]rank 0/2 (host *)] AssertionError: Expected exit code 0 but got 3*",
    ])
