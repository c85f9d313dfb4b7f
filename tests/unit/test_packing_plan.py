"""The packing plan: pure functions every rank computes alike (no MPI here)."""

from __future__ import annotations

import pytest

from mpidist.bootstrap.world import World
from mpidist.placement.planner import cut, order
from mpidist.placement.subworld import group_world


def test_groups_of_one_size_fill_the_world():
    assert cut([2], [0] * 8) == [(2, (0, 1)), (2, (2, 3)), (2, (4, 5)), (2, (6, 7))]


def test_a_group_stays_inside_a_node_when_it_fits_one():
    # 2 nodes of 3: groups of 2 never span nodes, even though 2 ranks are left over
    groups = cut([2], [0, 0, 0, 1, 1, 1])
    assert groups == [(2, (0, 1)), (2, (3, 4))]


def test_left_over_ranks_take_smaller_sizes():
    groups = cut([3, 1], [0] * 4 + [1] * 4)
    assert groups == [(3, (0, 1, 2)), (3, (4, 5, 6)), (1, (3,)), (1, (7,))]


def test_a_group_larger_than_a_node_spans_as_few_nodes_as_it_can():
    assert cut([4], [0, 0, 1, 1, 2, 2, 3, 3]) == [(4, (0, 1, 2, 3)), (4, (4, 5, 6, 7))]
    assert cut([3], [0, 0, 1, 1]) == [(3, (0, 1, 2))]


def test_every_rank_is_in_at_most_one_group_and_sizes_hold():
    nodes = [0] * 5 + [1] * 3 + [2] * 7
    groups = cut([4, 3, 2, 1], nodes)
    taken = [r for _, ranks in groups for r in ranks]
    assert len(taken) == len(set(taken))
    assert all(len(ranks) == size for size, ranks in groups)
    assert groups[0][0] == 4 and 0 in groups[0][1]


def test_unpacked_is_one_group_on_the_first_ranks():
    assert cut([2, 1], [0] * 8, pack=False) == [(2, (0, 1))]


def test_longest_first_and_untimed_first_with_ties_in_collection_order():
    ids = ["a", "b", "c", "d", "e"]
    assert order([0, 1, 2, 3, 4], ids, {"a": 1.0, "b": 3.0, "d": 2.0, "e": 1.0}) == [2, 1, 3, 0, 4]


@pytest.mark.parametrize(("ranks", "rank", "expect"), [
    ((4, 5), 1, dict(rank=1, size=2, local_rank=1, local_size=2, node_rank=0, num_nodes=1)),
    ((3, 4, 5), 0, dict(rank=0, size=3, local_rank=0, local_size=1, node_rank=0, num_nodes=2)),
    ((3, 4, 5), 2, dict(rank=2, size=3, local_rank=1, local_size=2, node_rank=1, num_nodes=2)),
])
def test_group_world_renumbers_ranks_and_nodes(ranks, rank, expect):
    world = World(rank=ranks[rank], size=6, local_rank=0, local_size=4, node_rank=0,
                  num_nodes=2, hosts=("a",) * 4 + ("b",) * 2, nodes=(0,) * 4 + (1,) * 2,
                  master_addr="10.0.0.1", master_port=29500)
    view = group_world(world, ranks, rank)
    assert {k: getattr(view, k) for k in expect} == expect
    assert view.hosts == tuple(world.hosts[g] for g in ranks)
    assert (view.master_addr, view.master_port) == ("10.0.0.1", 29500)
