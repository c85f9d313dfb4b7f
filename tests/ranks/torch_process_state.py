"""torch spawning classes that rely on a fresh process per test, as torch's runner gives.

Each class checks one thing a long-lived rank could get wrong: the MPI world of a
one-rank test, a rendezvous on a port the test picks, a backend a test registers, c10d's
debug level, torchrun's node-local variables. Every test ends in a collective or
a store rendezvous of the test's ranks, so a leak fails it (or hangs it: the job runs
with a timeout). Written for mpidist's tests in the style of torch's c10d files.
"""

import contextlib
import os

import pytest
import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase
from torch.testing._internal.common_utils import run_tests

PORT = int(os.environ.get("STATE_PORT", "29677"))


class _Spawning(MultiProcessTestCase):
    n_ranks = 2

    @property
    def world_size(self):
        return self.n_ranks

    def setUp(self):
        super().setUp()
        self._spawn_processes()

    def tearDown(self):
        super().tearDown()
        # torch's c10d files' way: every rank runs tearDown here (torch's runner, only the
        # parent), and the ranks share file_name, so another rank may remove it first
        with contextlib.suppress(OSError):
            os.remove(self.file_name)


class OneRankMPITest(_Spawning):
    """torch's MPI world is the test's ranks: one rank here, in a job of four."""

    n_ranks = 1

    def test_mpi_group_of_one(self):
        if not dist.is_mpi_available():
            self.skipTest("no MPI backend")
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("mpi", rank=self.rank, world_size=1, store=store)
        group = dist.distributed_c10d._get_default_group()
        self.assertEqual((group.rank(), group.size(), group.name()), (0, 1, "mpi"))
        tensor = torch.ones(3)
        dist.all_reduce(tensor)
        self.assertEqual(tensor.tolist(), [1.0, 1.0, 1.0])
        dist.destroy_process_group()


@pytest.mark.mpi(ranks=4)
class OneRankOfFourMPITest(OneRankMPITest):
    """The same, run on all four ranks (a marker wins): three sit it out, and the MPI
    group is still the one rank that runs it."""


class OwnPortTest(_Spawning):
    """A test that picks MASTER_ADDR/MASTER_PORT hosts its store on rank 0."""

    n_ranks = 2

    def test_env_rendezvous_on_own_port(self):
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(PORT)
        dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size)
        tensor = torch.tensor([self.rank + 1.0])
        dist.all_reduce(tensor)
        self.assertEqual(tensor.item(), 3.0)
        dist.destroy_process_group()


def _create_probe(store, rank, size, timeout):
    return dist.ProcessGroup(rank, size)


class RegistryTest(_Spawning):
    """A backend one test registers is gone in the next, as in a new process (every
    rank of the job: both tests run in the same processes, whatever the packing)."""

    n_ranks = 4

    def _agree(self):
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size,
                                store=store)
        dist.barrier()
        dist.destroy_process_group()

    def test_1_registers(self):
        self.assertFalse(dist.is_backend_available("mpidist_probe"))
        dist.Backend.register_backend("mpidist_probe", _create_probe, devices=["cpu"])
        self.assertTrue(dist.is_backend_available("mpidist_probe"))
        self._agree()

    def test_2_not_registered(self):
        self.assertFalse(dist.is_backend_available("mpidist_probe"))
        self.assertFalse(hasattr(dist.Backend, "MPIDIST_PROBE"))
        self.assertIn("gloo", dist.Backend.backend_list)
        self._agree()


class DebugLevelTest(_Spawning):
    """c10d's debug level a test sets from the environment is not the next test's."""

    n_ranks = 4

    def test_1_sets_detail(self):
        os.environ["TORCH_DISTRIBUTED_DEBUG"] = "DETAIL"
        dist.set_debug_level_from_env()
        self.assertEqual(dist.get_debug_level(), dist.DebugLevel.DETAIL)

    def test_2_level_is_back(self):
        self.assertEqual(dist.get_debug_level(), dist.DebugLevel.OFF)
        self.assertNotIn("TORCH_DISTRIBUTED_DEBUG", os.environ)


class NodeLocalTest(_Spawning):
    """torch's runner's children have no LOCAL_RANK (torchrun's agent sets it) and no
    RANK (the rank is the class's ``self.rank``); WORLD_SIZE is the class's."""

    n_ranks = 4

    def test_no_local_rank(self):
        self.assertNotIn("LOCAL_RANK", os.environ)
        with self.assertRaisesRegex(RuntimeError, "LOCAL_RANK"):
            dist.get_node_local_rank()
        self.assertNotIn("RANK", os.environ)
        self.assertEqual(os.environ["WORLD_SIZE"], str(self.world_size))
        with self.assertRaisesRegex(ValueError, "environment variable RANK expected"):
            dist.init_process_group("gloo", init_method="env://")


if __name__ == "__main__":
    run_tests()
