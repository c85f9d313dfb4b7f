"""torch classes that torch's runner runs in its own single process, under mpidist.

Run on 4 ranks in file order (``-p no:randomly``) with ``HYGIENE_OUT`` set: each test
that should run once writes ``<test>-<MPI rank>`` there, so the caller can count where
it ran. The launch sets no torchrun variable (``mpirun`` sets none).
"""

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed._local_tensor import maybe_disable_local_tensor_mode
from torch.distributed.tensor import DeviceMesh, Replicate, Shard, distribute_tensor
from torch.testing._internal.common_distributed import MultiThreadedTestCase
from torch.testing._internal.common_utils import TestCase
from torch.testing._internal.distributed._tensor.common_dtensor import (
    DTensorTestBase,
    create_local_tensor_test_class,
    with_comms,
)

OUT = Path(os.environ["HYGIENE_OUT"])
TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def mark(name: str) -> None:
    from mpi4py import MPI

    (OUT / f"{name}-{MPI.COMM_WORLD.Get_rank()}").write_text("")


def test_world_group_before():
    assert dist.is_initialized() and dist.get_world_size() == 4
    assert os.environ["RANK"] == str(dist.get_rank())


class TestSolo(TestCase):
    def test_no_default_group(self):
        mark("no_default_group")
        self.assertFalse(dist.is_initialized())

    def test_torchrun_variables_as_launched(self):
        mark("variables")
        self.assertEqual([v for v in TORCHRUN if v in os.environ], [])
        os.environ["RANK"] = "7"  # the test's own; gone after it
        os.environ["MPIDIST_HYGIENE_LEFT"] = "1"

    def test_leaves_a_group_alive(self):
        mark("leaves")
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)

    def test_sees_no_group_left_over(self):
        mark("left_over")
        self.assertFalse(dist.is_initialized())
        self.assertNotIn("MPIDIST_HYGIENE_LEFT", os.environ)


class TestThreads(MultiThreadedTestCase):
    @property
    def world_size(self):
        return 4

    def setUp(self):
        super().setUp()
        self._spawn_threads()

    def test_ranks_as_threads(self):
        if self.rank == 0:
            mark("threads")
        t = torch.ones(2) * self.rank
        dist.all_reduce(t)
        self.assertEqual(t, torch.ones(2) * 6)


class TestMesh(DTensorTestBase):
    """Spawning (4 ranks); its local-tensor twin below derives from the same spawning
    class but runs the body in torch's own process (a fake group): once, on one rank."""

    @with_comms
    def test_shard_and_gather(self):
        local = getattr(self, "is_local_tensor_enabled", False)
        mark("local" if local else "mesh")
        self.assertTrue(dist.is_initialized())
        if local:
            self.assertEqual(dist.get_backend(), "fake")
        whole = torch.arange(16.0).reshape(4, 4)
        sharded = distribute_tensor(whole, self.build_device_mesh(), [Shard(0)])
        self.assertEqual(sharded.full_tensor(), whole)

    @with_comms
    def test_uneven_shards_gathered(self):
        """DTensor memoizes the plan of a redistribution by a mesh that compares without
        its rank: a plan this rank made on the real mesh must not reach the local twin."""
        with maybe_disable_local_tensor_mode():
            mesh = DeviceMesh(self.device_type, torch.arange(4).reshape(2, 2))
        whole = torch.arange(26.0).reshape(13, 2)
        sharded = distribute_tensor(whole, mesh, [Shard(0), Shard(0)])
        gathered = sharded.redistribute(mesh, [Replicate(), Replicate()])
        self.assertEqual(gathered.full_tensor(), whole)


TestMeshWithLocalTensor = create_local_tensor_test_class(TestMesh)


def test_world_group_after():
    assert dist.is_initialized() and dist.get_world_size() == 4
    assert os.environ["RANK"] == str(dist.get_rank())
    assert "MPIDIST_HYGIENE_LEFT" not in os.environ
    t = torch.ones(1)
    dist.all_reduce(t)
    assert t.item() == 4
