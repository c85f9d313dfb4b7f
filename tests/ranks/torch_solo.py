"""torch classes that torch's runner runs in its own single process, under mpidist.

Run on 4 ranks in file order (``-p no:randomly``) with ``HYGIENE_OUT`` set: each test
that should run once writes ``<test>-<MPI rank>`` there, so the caller can count where
it ran. The launch sets no torchrun variable (``mpirun`` sets none).
"""

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiThreadedTestCase
from torch.testing._internal.common_utils import TestCase

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


def test_world_group_after():
    assert dist.is_initialized() and dist.get_world_size() == 4
    assert os.environ["RANK"] == str(dist.get_rank())
    assert "MPIDIST_HYGIENE_LEFT" not in os.environ
    t = torch.ones(1)
    dist.all_reduce(t)
    assert t.item() == 4
