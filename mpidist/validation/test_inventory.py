"""Check 1: every node has the same software, GPUs, EFA and fabric settings."""

from __future__ import annotations

from typing import Any

import pytest

from mpidist.validation import state
from mpidist.validation.inventory import collect, compare

pytestmark = pytest.mark.mpi


def test_inventory(comm: Any, world: Any) -> None:
    facts = collect()
    rows = comm.gather((world.hostname, world.rank, world.local_rank, facts), root=0)
    findings = None
    if world.rank == 0:
        nodes = {host: f for host, _, local, f in rows if local == 0}
        ranks: dict[str, list[int]] = {}
        for host, rank, _, _ in rows:
            ranks.setdefault(host, []).append(rank)
        findings = compare(nodes)
        state.RESULTS["inventory"] = {
            "nodes": {host: {**f, "ranks": ranks[host]} for host, f in nodes.items()},
            "findings": findings,
        }
    findings = comm.bcast(findings, root=0)
    assert not findings, "nodes differ:\n" + "\n".join(findings)
