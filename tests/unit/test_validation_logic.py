"""validation's pure logic: busbw formulas, robust outliers, localisation, rounds,
inventory comparison and settings -- no MPI."""

from __future__ import annotations

import itertools
import math

import pytest

from mpidist.validation.config import Config, parse_expect, parse_sizes
from mpidist.validation.inventory import compare
from mpidist.validation.stats import Suspect, busbw, localise, recheck, robust_low, round_robin

NAN = math.nan


def matrix(n: int, value: float = 5.0) -> list[list[float]]:
    return [[NAN if a == b else value for b in range(n)] for a in range(n)]


@pytest.mark.parametrize("collective,factor", [
    ("all_reduce", 2 * 3 / 4), ("all_gather", 3 / 4), ("reduce_scatter", 3 / 4),
    ("all_to_all", 3 / 4), ("broadcast", 1.0),
])
def test_busbw_uses_nccl_tests_factors(collective, factor):
    algbw, bus = busbw(collective, 4_000_000_000, 2.0, 4)
    assert algbw == 2.0 and bus == pytest.approx(2.0 * factor)


def test_slow_node_is_the_only_suspect_even_with_most_links_slow():
    m = matrix(3)
    for other in (0, 1):
        m[2][other] = m[other][2] = 0.01
    suspects = localise(["a", "b", "c"], m).suspects
    assert [(s.kind, s.name) for s in suspects] == [("node", "c")]


def test_one_bad_link_is_a_link_not_its_two_nodes():
    m = matrix(4)
    m[0][1] = m[1][0] = 0.5
    suspects = localise(["a", "b", "c", "d"], m).suspects
    assert [(s.kind, s.name) for s in suspects] == [("link", "a<->b")]


def test_noise_names_nobody():
    m = matrix(6)
    for (a, b), jitter in zip(itertools.combinations(range(6), 2),
                              itertools.cycle([0.8, 1.0, 1.15, 0.9, 1.05])):
        m[a][b] = m[b][a] = 5.0 * jitter
    assert localise([f"n{i}" for i in range(6)], m).suspects == []


def test_a_slow_node_among_eight():
    m = matrix(8, 12.0)
    for other in range(8):
        if other != 5:
            m[5][other] = m[other][5] = 3.0
    suspects = localise([f"n{i}" for i in range(8)], m).suspects
    assert [(s.kind, s.name) for s in suspects] == [("node", "n5")]
    assert "3.00 GB/s" in suspects[0].why and "12.00 GB/s" in suspects[0].why


def test_high_latency_node_is_named():
    lat = matrix(4, 20.0)
    for other in range(3):
        lat[3][other] = lat[other][3] = 400.0
    suspects = localise(["a", "b", "c", "d"], matrix(4), lat).suspects
    assert [(s.kind, s.name) for s in suspects] == [("node", "d")]
    assert "latency" in suspects[0].why


def test_expected_bandwidth_flags_uniformly_slow_links():
    assert localise(["a", "b"], matrix(2, 5.0)).suspects == []  # one link: no statistics
    suspects = localise(["a", "b"], matrix(2, 5.0), expect_gbps=20).suspects
    assert [(s.kind, s.name) for s in suspects] == [("link", "a<->b")]
    assert "below the expected 20 GB/s" in suspects[0].why


def test_recheck_measures_again_only_the_links_a_suspect_stands_on():
    names = ["a", "b", "c", "d"]
    rounds = round_robin(4)
    assert recheck(names, [], rounds) == []
    link = recheck(names, [Suspect("link", "c<->b", "slow")], rounds)
    assert link == [[(1, 2)]]
    node = recheck(names, [Suspect("node", "d", "slow")], rounds)
    assert sorted(pair for pairs in node for pair in pairs) == [(0, 3), (1, 3), (2, 3)]
    assert all(len(pairs) == 1 for pairs in node)  # one round each: d is in every pair
    both = recheck(names, [Suspect("node", "d", ""), Suspect("link", "a<->b", "")], rounds)
    assert sorted(pair for pairs in both for pair in pairs) == [(0, 1), (0, 3), (1, 3), (2, 3)]


def test_robust_low_needs_three_values_and_a_real_drop():
    assert robust_low([1.0, 0.1]) == []
    assert robust_low([10.0, 10.0, 10.0, 9.5]) == []  # 5 % is not an outlier
    assert robust_low([10.0, 10.0, 10.0, 2.0]) == [3]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_round_robin_covers_every_pair_once_without_overlap(n):
    rounds = round_robin(n)
    pairs = [p for r in rounds for p in r]
    assert sorted(pairs) == list(itertools.combinations(range(n), 2))
    for r in rounds:
        busy = [x for p in r for x in p]
        assert len(busy) == len(set(busy))
    assert len(rounds) == (n - 1 if n % 2 == 0 else n)


def test_inventory_differences_are_findings():
    nodes = {
        "n1": {"torch": "2.13.0", "gpu_count": 8, "efa": True, "env": {"FI_PROVIDER": "efa"}},
        "n2": {"torch": "2.13.0", "gpu_count": 8, "efa": True, "env": {"FI_PROVIDER": "efa"}},
        "n3": {"torch": "2.12.0", "gpu_count": 7, "efa": False, "env": {}},
    }
    assert compare(nodes) == [
        "torch differs between nodes: n1,n2: '2.13.0'; n3: '2.12.0'",
        "gpu_count differs between nodes: n1,n2: 8; n3: 7",
        "efa differs between nodes: n1,n2: True; n3: False",
        "FI_PROVIDER differs between nodes: n1,n2: 'efa'; n3: '<unset>'",
    ]
    assert compare({"n1": nodes["n1"], "n2": nodes["n2"]}) == []


def test_settings_parse_and_explain():
    assert parse_sizes("8, 4K,1M,2g") == [8, 4096, 1 << 20, 2 << 30]
    assert parse_expect("all_reduce=90,all_gather=40.5") == {"all_reduce": 90.0,
                                                              "all_gather": 40.5}
    with pytest.raises(ValueError, match="bad size 'LOTS'"):
        parse_sizes("lots")
    with pytest.raises(ValueError, match="use COLLECTIVE=GBPS"):
        parse_expect("allreduce=3")
    config = Config.from_env({"MPIDIST_VALIDATE_SIZES": "1K", "MPIDIST_VALIDATE_ITERS": "7",
                              "MPIDIST_VALIDATE_EXPECT_P2P": "12.5"})
    assert config.sizes == [1024] and config.iters == 7 and config.expect_p2p == 12.5
    assert Config.from_env({}).json_path == "mpidist-validate.json"
