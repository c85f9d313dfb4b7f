"""Check 4: node-to-node links -- all pairs in rounds, a ring, and who is to blame.

One rank per node (its local rank 0) measures ping-pong latency (8 bytes)
and bandwidth (``p2p_bytes``) with every other node, best of ``TRIALS``. Pairs run in rounds of
the circle method, so no node is in two pairs at once and a round tests up
to n/2 links side by side. The ring (every node sends to the next at once)
shows what each node sustains under load. ``stats.localise`` names the
suspects; every link they stand on is measured again (``stats.recheck``) and each link keeps
its better figure, so only what is slow twice fails the check and is drawn in red on the
heatmap.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from mpidist import testing
from mpidist.validation import state
from mpidist.validation.config import Config
from mpidist.validation.measure import idle_barrier, ping_pong
from mpidist.validation.stats import below_history, localise, recheck, round_robin

pytestmark = pytest.mark.mpi

LATENCY_ITERS = 50
BANDWIDTH_ITERS = 5
TRIALS = 3  # best of: a moment of contention is not a bad link; a bad link stays bad


def _measure(comm: Any, leaders: list[int], me: int | None, rounds: list[list[tuple[int, int]]],
             p2p_bytes: int) -> list[tuple[int, int, float, float]]:
    """This leader's links in ``rounds`` as (a, b, latency µs, GB/s), where it leads the pair."""
    rows = []
    for pairs in rounds:
        for a, b in pairs:
            if me in (a, b):
                peer, lead = (leaders[b], True) if me == a else (leaders[a], False)
                latency = min(ping_pong(comm, peer, 8, LATENCY_ITERS, lead)
                              for _ in range(TRIALS)) / 2
                round_trip = min(ping_pong(comm, peer, p2p_bytes, BANDWIDTH_ITERS, lead)
                                 for _ in range(TRIALS))
                if lead:
                    rows.append((a, b, latency * 1e6, 2 * p2p_bytes / round_trip / 1e9))
        idle_barrier(comm)  # the nodes outside this round's pairs must not spin
    return rows


def _merge(gathered: list[list[tuple[int, int, float, float]]], bandwidth: list[list[float]],
           latencies: list[list[float]]) -> None:
    """Fold measured rows into the matrices, keeping each link's best (fastest, quickest)."""
    for part in gathered:
        for a, b, lat, bw in part:
            best_bw = bw if math.isnan(bandwidth[a][b]) else max(bw, bandwidth[a][b])
            best_lat = lat if math.isnan(latencies[a][b]) else min(lat, latencies[a][b])
            bandwidth[a][b] = bandwidth[b][a] = best_bw
            latencies[a][b] = latencies[b][a] = best_lat


def test_links(config: Config, world: Any, comm: Any, past_links: dict[str, list[float]]) -> None:
    import numpy as np

    testing.collective_skip(None if world.num_nodes > 1 else
                            "one node: no node-to-node links to measure")
    n = world.num_nodes
    leaders = [world.nodes.index(node) for node in range(n)]  # first rank of each node
    names = [world.hosts[rank] for rank in leaders]
    me = leaders.index(world.rank) if world.rank in leaders else None
    rows = _measure(comm, leaders, me, round_robin(n), config.p2p_bytes)
    ring_gbps = float("nan")
    if me is not None:  # the ring: leaders only, each to the next, from the previous
        send = np.zeros(config.p2p_bytes, dtype=np.uint8)
        recv = np.empty_like(send)
        right, left = leaders[(me + 1) % n], leaders[(me - 1) % n]
        comm.Sendrecv(send, right, 9, recv, left, 9)  # warm-up
        start = time.perf_counter()
        for _ in range(BANDWIDTH_ITERS):
            comm.Sendrecv(send, right, 9, recv, left, 9)
        ring_gbps = config.p2p_bytes * BANDWIDTH_ITERS / (time.perf_counter() - start) / 1e9
    gathered = comm.gather((rows, me, ring_gbps), root=0)
    bandwidth = [[math.nan] * n for _ in range(n)]
    latencies = [[math.nan] * n for _ in range(n)]
    again: list[list[tuple[int, int]]] = []
    if world.rank == 0:
        _merge([part for part, _, _ in gathered], bandwidth, latencies)
        first = localise(names, bandwidth, latencies, config.expect_p2p).suspects
        first += below_history(names, bandwidth, past_links, config.history_fraction)
        again = recheck(names, first, round_robin(n))
    again = comm.bcast(again, root=0)
    rechecked = comm.gather(_measure(comm, leaders, me, again, config.p2p_bytes) if again
                            else [], root=0)
    verdict: list[str] | None = None
    if world.rank == 0:
        _merge(rechecked, bandwidth, latencies)
        rings = [math.nan] * n
        for _, node, ring_bw in gathered:
            if node is not None:
                rings[node] = ring_bw
        found = localise(names, bandwidth, latencies, config.expect_p2p)
        suspects = [s.as_dict() for s in found.suspects]
        state.RESULTS["links"] = {
            "nodes": names, "transport": "MPI point-to-point (mpi4py), one rank per node",
            "bytes": config.p2p_bytes, "bandwidth_gbps": bandwidth, "latency_us": latencies,
            "ring_gbps": dict(zip(names, rings, strict=True)),
            "node_scores_gbps": found.node_scores, "rounds": round_robin(n),
            "rechecked": [list(pair) for pairs in again for pair in pairs]}
        state.RESULTS["suspects"] = suspects
        decayed = below_history(names, bandwidth, past_links, config.history_fraction)
        state.RESULTS["history"] = {
            "fraction": config.history_fraction,
            "earlier_runs": max(map(len, past_links.values()), default=0),
            "below": [s.as_dict() for s in decayed]}
        for a in range(n):
            print(" ".join(f"{names[a]:>10}" if b == -1 else
                           ("         -" if a == b else f"{bandwidth[a][b]:10.3f}")
                           for b in range(-1, n)), " GB/s")
        verdict = [f"{s['kind']} {s['name']}: {s['why']}" for s in suspects]
        verdict += [f"{s.kind} {s.name} below its own history: {s.why}" for s in decayed]
    verdict = comm.bcast(verdict, root=0)
    assert not verdict, "suspects: " + "; ".join(verdict)
