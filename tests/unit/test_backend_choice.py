"""auto's choice: NCCL only where every rank of a node has its own GPU."""

from __future__ import annotations

from mpidist.backends.registry import nccl_obstacle
from mpidist.bootstrap.world import World


def world(local_size: int) -> World:
    return World(0, local_size, 0, local_size, 0, 1, ("n1",) * local_size, (0,) * local_size)


def test_one_rank_per_gpu_can_run_nccl():
    assert nccl_obstacle(world(1), devices=1, has_nccl=True) is None
    assert nccl_obstacle(world(8), devices=8, has_nccl=True) is None


def test_two_ranks_on_one_gpu_cannot_and_it_says_why():
    why = nccl_obstacle(world(2), devices=1, has_nccl=True)
    assert why == "2 ranks share 1 GPU(s) on host n1; NCCL needs one GPU per rank"


def test_no_gpu_or_no_nccl_in_the_build():
    assert nccl_obstacle(world(1), devices=0, has_nccl=True) == "no CUDA device on host n1"
    assert nccl_obstacle(world(1), devices=4, has_nccl=False) == "this torch build has no NCCL"
