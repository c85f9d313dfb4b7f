"""Where packed tests run: pure functions, so the plan is the same on every rank.

A *phase* runs every remaining test of its largest size ``k`` side by side:
the world is cut into disjoint groups of ``k`` ranks, each inside one node
when ``k`` fits a node, and the ranks left over form groups of the smaller
sizes that still have tests (they drain those queues while the ``k`` tests
run). Every rank computes the same cut from the sizes left (which rank 0
broadcasts) and the node of every rank, so the plan itself is never sent.
Within a phase the order is rank 0's alone: the longest test first, from the
durations of the last run (``order``), handed out as groups ask for work.
"""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["Cut", "cut", "order"]

#: one group of a phase: (size, its global ranks in group-rank order)
Cut = tuple[int, tuple[int, ...]]


def cut(sizes: Sequence[int], nodes: Sequence[int], pack: bool = True) -> list[Cut]:
    """The groups of one phase.

    Args:
        sizes: the test sizes that still have tests (each ``1 <= k <= len(nodes)``).
        nodes: the node of every global rank.
        pack: off: one group of the largest size, ranks ``0..k-1`` (the others idle).

    Returns:
        The groups, the largest size's first; the first holds rank 0.
    """
    main = max(sizes)
    if not pack:
        return [(main, tuple(range(main)))]
    free: dict[int, list[int]] = {}
    for rank, node in enumerate(nodes):
        free.setdefault(node, []).append(rank)
    widest = max(len(ranks) for ranks in free.values())
    groups: list[Cut] = []
    for size in sorted(set(sizes), reverse=True):
        for ranks in free.values():  # inside one node
            while len(ranks) >= size:
                groups.append((size, tuple(ranks[:size])))
                del ranks[:size]
        if size > widest:  # a group that cannot fit a node spans as few as it can
            pool = [r for ranks in free.values() for r in ranks]
            while len(pool) >= size:
                taken, pool = pool[:size], pool[size:]
                groups.append((size, tuple(taken)))
                for ranks in free.values():
                    ranks[:] = [r for r in ranks if r not in taken]
    return groups


def order(indices: Sequence[int], nodeids: Sequence[str],
          durations: Mapping[str, float]) -> list[int]:
    """Longest first by last run's durations; a test never timed goes first
    (it may be long), and ties keep collection order."""
    def key(index: int) -> tuple[float, int]:
        seconds = durations.get(nodeids[index])
        return (-(seconds if seconds is not None else float("inf")), index)
    return sorted(indices, key=key)
