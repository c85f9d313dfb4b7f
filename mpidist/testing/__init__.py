"""Writing distributed tests for mpidist: torch's vocabulary, decided across ranks.

Same names and meaning as ``torch.testing._internal.common_distributed``, for
pytest functions and unittest methods alike; every skip is collective (one
rank's reason skips the test on all ranks, and the reason names them).
``DistributedTestCase`` is a base class with MultiProcessTestCase's
attribute names for new code; torch's own spawning classes run unchanged
under ``--with-mpi`` (``compat``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .case import DistributedTestCase
    from .helpers import (
        assert_equal_on_rank,
        assert_not_equal_on_rank,
        create_tcp_store,
        run_subtests,
        with_dist_debug_levels,
        with_nccl_blocking_wait,
    )
    from .skips import (
        collective_skip,
        current_world_size,
        has_efa,
        requires_efa,
        requires_gloo,
        requires_mpi,
        requires_multicast_support,
        requires_nccl,
        requires_nccl_version,
        requires_ucc,
        requires_world_size,
        skip_if_lt_x_gpu,
        skip_if_no_gpu,
        skip_if_odd_worldsize,
        skip_if_small_worldsize,
    )

__all__ = [
    "DistributedTestCase",
    "assert_equal_on_rank",
    "assert_not_equal_on_rank",
    "collective_skip",
    "create_tcp_store",
    "current_world_size",
    "has_efa",
    "requires_efa",
    "requires_gloo",
    "requires_mpi",
    "requires_multicast_support",
    "requires_nccl",
    "requires_nccl_version",
    "requires_ucc",
    "requires_world_size",
    "run_subtests",
    "skip_if_lt_x_gpu",
    "skip_if_no_gpu",
    "skip_if_odd_worldsize",
    "skip_if_small_worldsize",
    "with_dist_debug_levels",
    "with_nccl_blocking_wait",
]

#: where each public name lives: imported on first use, so that loading the
#: testing plugin (every pytest run in an environment with mpidist) costs nothing
_WHERE = {
    "DistributedTestCase": "case",
    "assert_equal_on_rank": "helpers",
    "assert_not_equal_on_rank": "helpers",
    "collective_skip": "skips",
    "create_tcp_store": "helpers",
    "current_world_size": "skips",
    "has_efa": "skips",
    "requires_efa": "skips",
    "requires_gloo": "skips",
    "requires_mpi": "skips",
    "requires_multicast_support": "skips",
    "requires_nccl": "skips",
    "requires_nccl_version": "skips",
    "requires_ucc": "skips",
    "requires_world_size": "skips",
    "run_subtests": "helpers",
    "skip_if_lt_x_gpu": "skips",
    "skip_if_no_gpu": "skips",
    "skip_if_odd_worldsize": "skips",
    "skip_if_small_worldsize": "skips",
    "with_dist_debug_levels": "helpers",
    "with_nccl_blocking_wait": "helpers",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
