"""Sized tests packed side by side: real mpirun jobs of 4 and 8 ranks.

The mixed suite's outcomes depend only on a test's own group (its size and
group ranks), never on where it ran, so packed and one-at-a-time runs must
report the same outcome for every test, each test exactly once (asserted over
two namespace nodes in tests/cluster/test_multinode.py, which imports this
suite).
"""

from __future__ import annotations

import pytest

from ..mpijob import MPIResult

pytest.importorskip("torch")

MIXED = '''
import os
import time

import pytest
import torch
import torch.distributed as dist


@pytest.mark.mpi(ranks=[1, 2, 3, 4])
def test_the_group_is_the_world(mpi_ranks, mpi_comm, mpi_world):
    assert dist.get_world_size() == mpi_comm.Get_size() == mpi_world.size == mpi_ranks
    assert dist.get_rank() == mpi_comm.Get_rank() == mpi_world.rank
    assert os.environ["WORLD_SIZE"] == str(mpi_ranks)
    assert os.environ["RANK"] == str(mpi_world.rank)
    t = torch.ones(3) * (dist.get_rank() + 1)
    dist.all_reduce(t)
    assert t.tolist() == [mpi_ranks * (mpi_ranks + 1) / 2] * 3
    assert mpi_comm.allreduce(1) == mpi_ranks


@pytest.mark.mpi(ranks=2)
@pytest.mark.parametrize("i", range(8))
def test_pairs(i, mpi_tmp_path):
    (mpi_tmp_path / f"r{dist.get_rank()}").write_text(str(i))
    dist.barrier()
    assert sorted(p.name for p in mpi_tmp_path.iterdir()) == ["r0", "r1"]
    time.sleep(0.1)


@pytest.mark.parallel(nprocs=3)
def test_fails_on_group_rank_1():
    assert dist.get_rank() != 1, "group rank 1 disagrees"


@pytest.fixture
def only_group_rank_0():
    if dist.get_rank() == 1:
        pytest.skip("not on this rank")


@pytest.mark.mpi(ranks=2)
def test_skips_on_one_rank(only_group_rank_0):
    pass


@pytest.mark.mpi(ranks=64)
def test_too_big():
    pass


def test_every_rank():
    assert dist.get_world_size() == int(os.environ["WORLD_SIZE"])
    t = torch.ones(1)
    dist.all_reduce(t)
    assert t.item() == dist.get_world_size()


@pytest.mark.mpi(ranks=4)
class TestFour:
    def test_a(self):
        assert dist.get_world_size() == 4

    def test_b_fails_everywhere(self):
        raise ValueError("same on every rank")
'''

TORCH_CLASS = '''
import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase


class TestPair(MultiProcessTestCase):
    world_size = 2  # a plain attribute over torch's property: sized at collection too

    def setUp(self):
        super().setUp()
        self._spawn_processes()

    def _pg(self):
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", store=store, rank=self.rank,
                                world_size=self.world_size)
        # as TestDistBackend's _run: a rank done with test_rank (no collective) would
        # close its group under a rank still connecting (gloo: "Connection closed by peer")
        dist.barrier()

    def test_allreduce(self):
        self._pg()
        t = torch.ones(2)
        dist.all_reduce(t)
        self.assertEqual(t.tolist(), [float(self.world_size)] * 2)

    def test_rank(self):
        self._pg()
        self.assertIn(self.rank, range(self.world_size))
        self.assertEqual(dist.get_world_size(), self.world_size)


class TestWorld(TestPair):
    # The world's tests come first: it takes the world's default group down on every rank,
    # and each packed group's own must still go down for torch's init_process_group.
    world_size = 8


class TestQuad(TestPair):
    world_size = 4  # its phase comes before TestPair's: the same, group after group
'''


def outcomes(result: MPIResult) -> dict[str, str]:
    """Every test case in the JUnit file, once, with its outcome."""
    found: dict[str, str] = {}
    for case in result.junit().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        assert name not in found, f"{name} reported twice"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[name] = kinds[0] if kinds else "passed"
    return found


@pytest.fixture(scope="module")
def mixed_run(make_job) -> MPIResult:
    job = make_job("packing_mixed")
    job.write("test_mixed.py", MIXED)
    job.write("test_torch_pair.py", TORCH_CLASS)
    return job.run(8, "-p", "no:randomly", "-rfEs", "--mpi-timeout", "120", timeout=300)


def test_packed_outcomes_are_each_tests_own(mixed_run):
    """Each test once, with the outcome of its own group; that --mpi-pack=off gives the
    same outcome for every test is asserted over two nodes (tests/cluster/test_multinode)."""
    expected = {"test_fails_on_group_rank_1": "failure", "test_b_fails_everywhere": "failure",
                "test_skips_on_one_rank": "skipped", "test_too_big": "skipped"}
    assert mixed_run.returncode == 1
    for name, kind in outcomes(mixed_run).items():
        assert kind == expected.get(name.split("::")[-1], "passed"), name
    assert len(outcomes(mixed_run)) == 4 + 8 + 1 + 1 + 1 + 1 + 2 + 2 + 2 + 2 == 24
    # (", 1 warning" when pytest's own clean-up of old temp dirs, run by every rank, races)
    mixed_run.lines.fnmatch_lines(["*= 2 failed, 20 passed, 2 skipped* in *"])


def test_labels_name_the_group_rank_the_global_rank_and_the_host(mixed_run):
    packed = mixed_run
    packed.lines.fnmatch_lines([
        "*test_fails_on_group_rank_1*",
        "[[]rank 1/3 (global *, host *)[]]",
        "*AssertionError: group rank 1 disagrees",
    ])
    packed.lines.fnmatch_lines([
        "SKIPPED * test_mixed.py:*: needs 64 MPI ranks, the world has 8"])
    packed.lines.fnmatch_lines([
        "SKIPPED * skipped on rank 1/2 (global *, host *): not on this rank"])


def test_spread_runs_each_unmarked_test_once(job):
    job.write("test_spread.py", '''
import os
import pytest

@pytest.mark.parametrize("i", range(12))
def test_once(i, tmp_path_factory):
    marker = os.path.join(os.environ["SPREAD_DIR"], f"t{i}-r{os.environ['RANK']}")
    open(marker, "x").close()

@pytest.mark.mpi
def test_marked_runs_everywhere(mpi_world):
    open(os.path.join(os.environ["SPREAD_DIR"], f"world-{mpi_world.rank}"), "x").close()
''')
    spread_dir = job.path / "ran"
    spread_dir.mkdir()
    result = job.run(4, "-p", "no:randomly", "--mpi-serial=spread", "--mpi-backend", "none",
                     env={"SPREAD_DIR": str(spread_dir)})
    assert result.returncode == 0
    names = sorted(p.name for p in spread_dir.iterdir())
    assert sorted(n.split("-")[0] for n in names if n.startswith("t")) == sorted(
        f"t{i}" for i in range(12))  # each exactly once
    assert sorted(n for n in names if n.startswith("world")) == [f"world-{r}" for r in range(4)]
    result.lines.fnmatch_lines(["*= 13 passed in *"])
    assert len(outcomes(result)) == 13


def test_the_parallel_marker_reads_as_mpi_pytest_reads_it(job):
    job.write("test_parallel.py", '''
import pytest

@pytest.mark.parallel
def test_bare(mpi_comm):
    assert mpi_comm.Get_size() == 3  # mpi-pytest's default

@pytest.mark.parallel(2)
def test_positional(mpi_comm):
    assert mpi_comm.Get_size() == 2

@pytest.mark.parallel(nprocs=[1, 2])
def test_list(mpi_comm, mpi_ranks):
    assert mpi_comm.Get_size() == mpi_ranks
''')
    result = job.run(4, "-p", "no:randomly", "--mpi-backend", "none", "-v")
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(outcomes(result)) == [
        f"test_parallel::{name}" for name in
        ("test_bare", "test_list[nprocs=1]", "test_list[nprocs=2]", "test_positional")]


def test_a_malformed_size_is_a_usage_error_on_every_rank(job):
    job.write("test_bad.py", '''
import pytest

@pytest.mark.mpi(ranks=0)
def test_x():
    pass
''')
    result = job.run(2)
    assert result.returncode == 4
    assert result.stderr.count("mpi(ranks=...): 0 is not a positive number of ranks") == 1


def test_a_hang_in_a_group_without_rank_0_is_reported(job):
    """The groups ask rank 0 for tests as they finish, so rank 0's group (0-1) could run
    all six before 2-3 asked for one (seen in CI under load): each of its tests waits
    up to 3 s for the other group to have started one."""
    job.write("test_hang.py", '''
import os
import time
import pytest
from mpi4py import MPI

@pytest.mark.mpi(ranks=2, timeout=4)
@pytest.mark.parametrize("i", range(6))
def test_hangs_on_global_ranks_2_and_3(i):
    if MPI.COMM_WORLD.Get_rank() >= 2:
        open("started", "w").close()
        time.sleep(600)
    deadline = time.monotonic() + 3
    while not os.path.exists("started") and time.monotonic() < deadline:
        time.sleep(0.05)
''')
    result = job.run(4, "-p", "no:randomly", "--mpi-backend", "none", timeout=120)
    assert result.returncode == 1
    assert result.seconds < 90
    result.lines.fnmatch_lines([
        "*test_hangs_on_global_ranks_2_and_3*",
        "[[]hang[]]",
        "Timeout: the test exceeded its 4 s limit*",
        "  ranks 0-1/2 (global 2-3, host *) in test_hangs_on_global_ranks_2_and_3 at "
        "test_hang.py:*: "
        "time.sleep(600)",
    ])
    outcomes_ = outcomes(result)  # the tests that finished before it are kept
    assert sum(kind == "passed" for kind in outcomes_.values()) >= 2
    assert "failure" in outcomes_.values()


def test_x_stops_every_group(job):
    job.write("test_x.py", '''
import time
import pytest

@pytest.mark.mpi(ranks=1)
@pytest.mark.parametrize("i", range(40))
def test_slow(i):
    time.sleep(0.05)
    assert i != 0
''')
    result = job.run(4, "-p", "no:randomly", "-x", "--mpi-backend", "none")
    assert result.returncode == 1
    ran = len(outcomes(result))
    assert 1 <= ran < 20, ran
    result.lines.fnmatch_lines(["*stopping after 1 failures*"])


def test_a_group_whose_process_group_fails_to_start_ends_the_job_with_a_report(job):
    """Global rank 3's init_process_group fails in the ranks=2 phase: its group raises
    together, both ranks say why and end, and rank 0 names them -- no rank waits on."""
    job.write("conftest.py", '''
import torch.distributed as dist
from mpi4py import MPI

if MPI.COMM_WORLD.Get_rank() == 3:
    real = dist.init_process_group

    def init_process_group(*args, world_size=-1, **kwargs):
        if world_size == 2:
            raise RuntimeError("injected: no group on this rank")
        return real(*args, world_size=world_size, **kwargs)

    dist.init_process_group = init_process_group
''')
    job.write("test_init.py", '''
import pytest

def test_world():
    pass

@pytest.mark.mpi(ranks=2)
@pytest.mark.parametrize("i", range(4))
def test_pair(i):
    pass
''')
    result = job.run(4, "-p", "no:randomly", timeout=120)
    assert result.returncode != 0
    assert result.seconds < 90
    assert "injected: no group on this rank" in result.stderr
    result.lines.fnmatch_lines(["mpidist: rank [23]/4 (host *) died between tests: exit code 3"])
    assert outcomes(result)["test_init::test_world"] == "passed"  # kept
