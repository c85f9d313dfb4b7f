"""Check 2: every collective on every backend gives known values, over the whole world
and within each node."""

from __future__ import annotations

from typing import Any

import pytest

from mpidist import testing
from mpidist.validation import state
from mpidist.validation.backends import BACKENDS, backend_skip, device_for

pytestmark = pytest.mark.mpi

def run_collectives(group: Any, device: Any) -> list[str]:
    """Each collective with values every rank can predict; the mismatches."""
    import torch
    import torch.distributed as dist

    rank, n = dist.get_rank(group), dist.get_world_size(group)
    errors = []

    def expect(name: str, got: Any, want: Any) -> None:
        if not torch.equal(got.cpu(), want.cpu()):
            errors.append(f"{name}: got {got.flatten()[:4].tolist()}..., expected "
                          f"{want.flatten()[:4].tolist()}...")

    base = torch.arange(8, dtype=torch.float32, device=device)
    t = base + rank
    dist.all_reduce(t, group=group)
    expect("all_reduce", t, base * n + sum(range(n)))
    out = torch.empty(8 * n, device=device)
    dist.all_gather_into_tensor(out, base + rank, group=group)
    expect("all_gather", out, torch.cat([base + r for r in range(n)]))
    rs = torch.empty(8, device=device)
    dist.reduce_scatter_tensor(rs, torch.cat([base + r * 10 for r in range(n)]) + rank,
                               group=group)
    expect("reduce_scatter", rs, (base + rank * 10) * n + sum(range(n)))
    b = base + rank
    dist.broadcast(b, src=dist.get_global_rank(group, n - 1), group=group)
    expect("broadcast", b, base + n - 1)
    a2a = torch.empty(n, device=device)
    dist.all_to_all_single(a2a, torch.arange(n, dtype=torch.float32, device=device)
                           + 100 * rank, group=group)
    expect("all_to_all", a2a, torch.tensor([100.0 * r + rank for r in range(n)],
                                           device=device))
    dist.barrier(group=group)
    return errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_correctness(backend: str, world: Any, comm: Any) -> None:
    import warnings

    import torch.distributed as dist

    testing.collective_skip(backend_skip(backend))
    device = device_for(backend, world)
    nodes = [[r for r in range(world.size) if world.nodes[r] == node]
             for node in range(world.num_nodes)]
    with warnings.catch_warnings():  # all_gather_into_tensor's rename in newer torch
        warnings.simplefilter("ignore", FutureWarning)
        whole = dist.new_group(backend=backend)
        per_node = [dist.new_group(ranks, backend=backend) for ranks in nodes]
        errors = [f"world: {e}" for e in run_collectives(whole, device)]
        mine = per_node[world.node_rank]
        errors += [f"node {world.hostname}: {e}" for e in run_collectives(mine, device)]
    for group in [whole, *per_node]:
        dist.destroy_process_group(group)
    everyone = comm.gather(errors, root=0)
    if world.rank == 0:
        state.RESULTS["correctness"].append({
            "backend": backend, "ranks": world.size, "nodes": world.num_nodes,
            "errors": {world.describe(r): e for r, e in enumerate(everyone) if e}})
    assert not errors, "; ".join(errors)
