"""Rank-side suite written the torch way (run under mpirun by
tests/integration/test_torch_compat.py): torch's MultiProcessTestCase,
DistributedTestBase and MultiProcContinuousTest classes, unchanged, and
mpidist.testing's decorators on pytest functions."""

import contextlib
import multiprocessing
import os

import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import (
    DistributedTestBase,
    MultiProcContinuousTest,
    MultiProcessTestCase,
    requires_gloo,
    skip_if_lt_x_gpu,
)

from mpidist import testing


def test_default_group_before():
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t[0] == dist.get_world_size()


class TestGlooCollectives(MultiProcessTestCase):
    def setUp(self):
        super().setUp()
        self._spawn_processes()

    def tearDown(self):
        super().tearDown()
        with contextlib.suppress(OSError):
            os.remove(self.file_name)

    @property
    def world_size(self):
        return 4

    def _init_pg(self):
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", store=store, rank=self.rank, world_size=self.world_size)

    @requires_gloo()
    def test_allreduce(self):
        self._init_pg()
        t = torch.ones(3) * (self.rank + 1)
        dist.all_reduce(t)
        self.assertEqual(t, torch.full((3,), float(sum(range(1, self.world_size + 1)))))

    def test_allgather_and_no_spawning(self):
        self._init_pg()
        out = [torch.zeros(1) for _ in range(self.world_size)]
        dist.all_gather(out, torch.tensor([float(self.rank)]))
        self.assertEqual([o.item() for o in out], [float(r) for r in range(self.world_size)])
        self.assertEqual(os.environ["OMPI_COMM_WORLD_RANK"], str(self.rank))
        # torch runs the body on a fresh instance in a child (no setUp); nothing spawned
        self.assertFalse(hasattr(self, "processes"))
        self.assertEqual(multiprocessing.active_children(), [])

    def test_rank_two_fails(self):
        self._init_pg()
        dist.barrier()
        self.assertNotEqual(self.rank, 2, "rank 2 disagrees")

    @skip_if_lt_x_gpu(2)
    def test_needs_two_gpus(self):
        raise AssertionError("ran without 2 GPUs")


class TestSmallerWorld(MultiProcessTestCase):
    def setUp(self):
        super().setUp()
        self._spawn_processes()

    @property
    def world_size(self):
        return 2

    def test_pair(self):
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", store=store, rank=self.rank, world_size=2)
        t = torch.ones(1)
        dist.all_reduce(t)
        self.assertEqual(t.item(), 2.0)
        with open(f"ran-pair-{self.rank}", "w"):
            pass


class TestLargerWorld(MultiProcessTestCase):
    def setUp(self):
        super().setUp()
        self._spawn_processes()

    @property
    def world_size(self):
        return 64

    def test_never_runs(self):
        raise AssertionError("a 64-rank test ran")


class TestBase(DistributedTestBase):
    @property
    def world_size(self):
        return 2

    def test_create_pg(self):
        pg = self.create_pg("cpu")
        t = torch.tensor([self.rank + 1.0])
        dist.all_reduce(t, group=pg)
        self.assertEqual(t.item(), 3.0)


class TestContinuous(MultiProcContinuousTest):
    world_size = 2

    @classmethod
    def backend_str(cls):
        return "gloo"

    def test_first(self):
        t = torch.ones(1)
        dist.all_reduce(t)
        self.assertEqual(t.item(), 2.0)

    def test_same_group_again(self):
        self.assertIs(dist.group.WORLD, type(self).pg)
        self.assertEqual(dist.get_world_size(), 2)


class TestOurs(testing.DistributedTestCase):
    def test_whole_world(self):
        pg = self.create_pg()
        t = torch.ones(1)
        dist.all_reduce(t, group=pg)
        self.assertEqual(t.item(), float(self.world_size))
        self.assertEqualOnRank(t.item(), float(self.world_size), rank=0)


class TestOursPair(testing.DistributedTestCase):
    world_size = 2

    def test_pair(self):
        t = torch.ones(1)
        dist.all_reduce(t, group=self.create_pg())
        self.assertEqual(t.item(), 2.0)

    @testing.skip_if_lt_x_gpu(1)
    def test_gpu_in_class(self):
        raise AssertionError("ran without a GPU")


def test_default_group_after():
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t[0] == dist.get_world_size()


@testing.skip_if_lt_x_gpu(2)
def test_function_needs_gpus():
    raise AssertionError("ran without GPUs")


@testing.requires_multicast_support()
def test_multicast():
    raise AssertionError("ran without multicast")


@testing.requires_efa()
def test_efa():
    raise AssertionError("ran without EFA")


def test_one_rank_lacks_something():
    testing.collective_skip("no widget on this node" if dist.get_rank() == 1 else None)
    raise AssertionError("ran although rank 1 skipped")


@testing.requires_world_size(64)
def test_needs_64_ranks():
    raise AssertionError("ran on a small world")


@testing.skip_if_odd_worldsize
def test_even_world():
    assert dist.get_world_size() % 2 == 0


def test_store_and_has_efa():
    store = testing.create_tcp_store()
    store.set(f"k{dist.get_rank()}", "v")
    store.wait([f"k{r}" for r in range(dist.get_world_size())])
    assert testing.has_efa() is False


def test_run_subtests(subtests):
    seen = []
    testing.run_subtests(subtests, {"a": [1, 2], "b": ["x"]}, lambda a, b: seen.append((a, b)))
    assert seen == [(1, "x"), (2, "x")]


@testing.requires_gloo()
def test_requires_gloo_runs():
    assert dist.is_gloo_available()


@testing.requires_nccl()
def test_requires_nccl():
    assert dist.is_nccl_available(), "ran without NCCL"


@testing.requires_mpi()
def test_requires_mpi():
    # stock torch has no MPI backend; under --with-mpi mpidist's group serves "mpi"
    group = dist.new_group(backend="mpi")
    t = torch.ones(1)
    dist.all_reduce(t, group=group)
    assert t.item() == dist.get_world_size() and dist.get_backend(group) == "mpi"


@testing.requires_nccl_version((2, 18), "needs NVLS")
def test_requires_nccl_version():
    assert dist.is_nccl_available() and tuple(torch.cuda.nccl.version()) >= (2, 18)


@testing.skip_if_no_gpu
def test_skip_if_no_gpu():
    raise AssertionError("ran without a GPU")


@testing.skip_if_small_worldsize
def test_small_world():
    raise AssertionError("ran on fewer than 8 ranks")


@testing.with_nccl_blocking_wait
def test_with_nccl_blocking_wait():
    assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "1"
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING" not in os.environ


LEVELS = []


@testing.with_dist_debug_levels(["OFF", "INFO", "DETAIL"])
def test_with_dist_debug_levels():
    LEVELS.append(os.environ["TORCH_DISTRIBUTED_DEBUG"])


def test_debug_levels_each_ran_and_were_restored():
    assert LEVELS == ["OFF", "INFO", "DETAIL"]
    assert os.environ.get("TORCH_DISTRIBUTED_DEBUG") is None


def test_assert_on_rank():
    testing.assert_equal_on_rank(dist.get_rank(), 1, rank=1)
    testing.assert_not_equal_on_rank(dist.get_rank(), 1, rank=0)
