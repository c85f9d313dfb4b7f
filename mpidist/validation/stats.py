"""Pure numbers for validation: nccl-tests' bandwidth formulas, robust outliers, suspects.

Localisation works on the node x node matrix of point-to-point bandwidth
(and latency). A bad node drags down every link it is on, so nodes are
judged first, by the median of their links against the median node, with
the median absolute deviation (MAD) as the scale: one slow node cannot
move either, where a mean and standard deviation would follow it. Links are
then judged among the links of healthy nodes, so a single bad cable is
named as a link, not blamed on both its ends. An outlier must be both
statistically clear (robust z beyond ``Z``) and large in practice (below
``DROP`` x the median): a quiet, uniform cluster has a MAD near zero, and
its noise must not name anybody. Absolute bars are ``--expect-p2p``'s job.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

__all__ = ["BUS_FACTOR", "Suspect", "below_history", "busbw", "localise", "recheck",
           "robust_low", "round_robin"]

#: busbw = algbw x factor(n), as nccl-tests defines it (doc/PERFORMANCE.md)
BUS_FACTOR: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}
Z = 3.5  # robust z beyond which a value is an outlier (Iglewicz and Hoaglin)
DROP = 0.5  # ...and below half the median (above twice it for latency): on a healthy
#              cluster of 3 time-shared namespace nodes one node measured 0.67x
MAD_FLOOR = 0.02  # the scale is never below 2 % of the median


def busbw(collective: str, size_bytes: int, seconds: float, ranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s for one collective of ``size_bytes`` taking ``seconds``."""
    algbw = size_bytes / seconds / 1e9
    return algbw, algbw * BUS_FACTOR[collective](ranks)


def robust_low(values: Sequence[float], higher_is_worse: bool = False) -> list[int]:
    """Indices of values that are robust outliers on the bad side."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 3:
        return []
    med = statistics.median(finite)
    mad = statistics.median(abs(v - med) for v in finite)
    scale = max(1.4826 * mad, MAD_FLOOR * abs(med), 1e-12)
    bad = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        z = (v - med) / scale
        worse = z > Z and v > med / DROP if higher_is_worse else z < -Z and v < med * DROP
        if worse:
            bad.append(i)
    return bad


@dataclass(frozen=True)
class Suspect:
    """A node or link the measurements point at, and why."""

    kind: str  # "node" | "link"
    name: str  # "n3" or "n1<->n3"
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "why": self.why}


@dataclass
class Localisation:
    suspects: list[Suspect] = field(default_factory=list)
    node_scores: dict[str, float] = field(default_factory=dict)


def _links(matrix: Sequence[Sequence[float]]) -> list[tuple[int, int, float]]:
    n = len(matrix)
    return [(a, b, matrix[a][b]) for a in range(n) for b in range(a + 1, n)
            if math.isfinite(matrix[a][b])]


def localise(
    names: Sequence[str],
    bandwidth: Sequence[Sequence[float]],
    latency: Sequence[Sequence[float]] | None = None,
    expect_gbps: float | None = None,
) -> Localisation:
    """Suspect nodes and links from symmetric node x node matrices (GB/s, µs)."""
    result = Localisation()
    n = len(names)
    links = _links(bandwidth)
    if not links:
        return result
    scores = [statistics.median([bw for a, b, bw in links if node in (a, b)]) for node in
              range(n)]
    result.node_scores = dict(zip(names, scores, strict=True))
    median_node = statistics.median(scores)
    bad_nodes = set(robust_low(scores))
    if latency is not None:
        lat_links = _links(latency)
        lat_scores = [statistics.median([v for a, b, v in lat_links if node in (a, b)])
                      for node in range(n)]
        for node in robust_low(lat_scores, higher_is_worse=True):
            if node not in bad_nodes:
                result.suspects.append(Suspect("node", names[node], (
                    f"latency {lat_scores[node]:.1f} us, median node "
                    f"{statistics.median(lat_scores):.1f} us")))
    for node in sorted(bad_nodes):
        result.suspects.append(Suspect("node", names[node], (
            f"its links give {scores[node]:.2f} GB/s (median of its links), the median node "
            f"{median_node:.2f} GB/s")))
    healthy = [(a, b, bw) for a, b, bw in links if a not in bad_nodes and b not in bad_nodes]
    values = [bw for _, _, bw in healthy]
    for i in robust_low(values):
        a, b, bw = healthy[i]
        result.suspects.append(Suspect("link", f"{names[a]}<->{names[b]}", (
            f"{bw:.2f} GB/s, median link {statistics.median(values):.2f} GB/s")))
    if expect_gbps is not None:
        named = {s.name for s in result.suspects}
        for a, b, bw in links:
            link = f"{names[a]}<->{names[b]}"
            if bw < expect_gbps and link not in named and names[a] not in named \
                    and names[b] not in named:
                result.suspects.append(Suspect("link", link, (
                    f"{bw:.2f} GB/s, below the expected {expect_gbps:g} GB/s")))
    return result


def recheck(names: Sequence[str], suspects: Sequence[Suspect],
            rounds: Sequence[Sequence[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
    """The rounds that measure again every link a suspect stands on (all the links of a
    suspect node, the suspect link itself), in the order of ``rounds``, empty rounds dropped.

    A suspect is named only when it is slow twice: on shared or time-sliced hosts one
    moment of contention can make a healthy link an outlier once (a healthy 3-node
    namespace cluster once gave 0.42 GB/s on a link whose median was 1.23), while a bad
    link or node stays bad."""
    index = {name: i for i, name in enumerate(names)}
    nodes = {index[s.name] for s in suspects if s.kind == "node"}
    links = {tuple(sorted(index[end] for end in s.name.split("<->")))
             for s in suspects if s.kind == "link"}
    again = [[(a, b) for a, b in pairs if a in nodes or b in nodes or (a, b) in links]
             for pairs in rounds]
    return [pairs for pairs in again if pairs]


def round_robin(n: int) -> list[list[tuple[int, int]]]:
    """All pairs of ``n`` nodes in rounds where each node is in at most one pair
    (the circle method: n-1 rounds for even n, n for odd)."""
    players: list[int | None] = list(range(n)) + ([None] if n % 2 else [])
    m = len(players)
    rounds = []
    for _ in range(m - 1):
        pairs = []
        for i in range(m // 2):
            a, b = players[i], players[m - 1 - i]
            if a is not None and b is not None:
                pairs.append((min(a, b), max(a, b)))
        rounds.append(pairs)
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def below_history(names: Sequence[str], bandwidth: Sequence[Sequence[float]],
                  past: dict[str, list[float]], fraction: float) -> list[Suspect]:
    """Links below ``fraction`` of their own median over earlier runs (``past``: GB/s by
    link name, ``a<->b``), and nodes all of whose links (two or more) are: the cluster's
    own median cannot see a slow decay, or a node slowed as much as half the links."""
    low: dict[tuple[int, int], Suspect] = {}
    judged: dict[int, int] = {}
    for a, b, bw in _links(bandwidth):
        earlier = past.get(f"{names[a]}<->{names[b]}")
        if not earlier:
            continue
        judged[a], judged[b] = judged.get(a, 0) + 1, judged.get(b, 0) + 1
        median = statistics.median(earlier)
        if bw < fraction * median:
            runs = f"{len(earlier)} earlier run" + ("s" if len(earlier) > 1 else "")
            low[(a, b)] = Suspect("link", f"{names[a]}<->{names[b]}", (
                f"{bw:.2f} GB/s, {bw / median:.0%} of its median {median:.2f} GB/s over "
                f"{runs} (below {fraction:.0%})"))
    nodes = [node for node, count in judged.items()
             if count >= 2 and sum(node in pair for pair in low) == count]
    out = [Suspect("node", names[node], "every one of its links is below its own history: "
                   + "; ".join(f"{s.name} {s.why}" for pair, s in low.items() if node in pair))
           for node in sorted(nodes)]
    return out + [s for pair, s in low.items() if not set(pair) & set(nodes)]
