"""Check 3: bandwidth of each collective on each backend, nccl-tests style.

time is the slowest rank's mean over the iterations; algbw = size/time and
busbw = algbw x nccl-tests' factor (2(n-1)/n for all_reduce, (n-1)/n for
all_gather, reduce_scatter and all_to_all, 1 for broadcast). With
``--expect-busbw``, the largest size must reach the expected busbw.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pytest

from mpidist import testing
from mpidist.validation import state
from mpidist.validation.backends import BACKENDS, backend_skip, device_for
from mpidist.validation.config import COLLECTIVES, Config
from mpidist.validation.measure import time_collective
from mpidist.validation.stats import busbw

pytestmark = pytest.mark.mpi

_groups: dict[str, Any] = {}


def group_for(backend: str) -> Any:
    import torch.distributed as dist

    if backend not in _groups:
        _groups[backend] = dist.new_group(backend=backend)
    return _groups[backend]


def call(collective: str, group: Any, size: int, n: int,
         device: Any) -> tuple[Callable[[], object], int]:
    """A closure running ``collective`` on ``size`` bytes of float32 (the nccl-tests size:
    the whole buffer for all_reduce/broadcast, the gathered total for the others)."""
    import torch
    import torch.distributed as dist

    count = max(n, size // 4 // n * n)  # divisible by n
    full = torch.ones(count, device=device)
    part = torch.ones(count // n, device=device)
    return {
        "all_reduce": lambda: dist.all_reduce(full, group=group),
        "broadcast": lambda: dist.broadcast(full, dist.get_global_rank(group, 0), group=group),
        "all_gather": lambda: dist.all_gather_into_tensor(full, part, group=group),
        "reduce_scatter": lambda: dist.reduce_scatter_tensor(part, full, group=group),
        "all_to_all": lambda: dist.all_to_all_single(torch.empty_like(full), full,
                                                     group=group),
    }[collective], count * 4


@pytest.mark.parametrize("collective", COLLECTIVES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bandwidth(backend: str, collective: str, config: Config, world: Any,
                   comm: Any) -> None:
    import torch

    testing.collective_skip(backend_skip(backend))
    device = device_for(backend, world)
    sync = torch.cuda.synchronize if backend == "nccl" else (lambda: None)
    group = group_for(backend)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's collective renames
        for size in config.sizes:
            fn, nbytes = call(collective, group, size, world.size, device)
            seconds = time_collective(comm, fn, config.warmup, config.iters, sync)
            algbw, bus = busbw(collective, nbytes, seconds, world.size)
            rows.append({"backend": backend, "collective": collective, "bytes": nbytes,
                         "ranks": world.size, "time_us": seconds * 1e6, "algbw_gbps": algbw,
                         "busbw_gbps": bus})
    if world.rank == 0:
        state.RESULTS["bandwidth"].extend(rows)
        for row in rows:
            print(f"{backend:>7} {collective:<15} {row['bytes']:>10} B "
                  f"{row['time_us']:10.1f} us  algbw {row['algbw_gbps']:7.3f}  "
                  f"busbw {row['busbw_gbps']:7.3f} GB/s")
    expected = config.expect_busbw.get(collective)
    if expected is not None:
        got = rows[-1]["busbw_gbps"]
        assert got >= expected, (f"{backend} {collective} busbw {got:.2f} GB/s at "
                                 f"{rows[-1]['bytes']} B, expected >= {expected:g} GB/s")
