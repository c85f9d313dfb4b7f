"""torch's distributed test helpers, for tests that run once per MPI rank.

Same names and meaning as ``torch.testing._internal.common_distributed``:
environment-flipping decorators, ``run_subtests``, rank-conditional asserts,
and a fresh store namespace on the world's TCPStore in place of
``create_tcp_store`` (no new server, no port to find: rank 0's store is
already up, reachable from every node).
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from .. import runtime

if TYPE_CHECKING:
    from torch.distributed import Store  # type: ignore[attr-defined]

__all__ = [
    "assert_equal_on_rank",
    "assert_not_equal_on_rank",
    "create_tcp_store",
    "run_subtests",
    "with_dist_debug_levels",
    "with_nccl_blocking_wait",
]

F = TypeVar("F", bound=Callable[..., Any])
_stores = itertools.count()


def with_nccl_blocking_wait(func: F) -> F:
    """Run with ``TORCH_NCCL_BLOCKING_WAIT=1`` and without
    ``TORCH_NCCL_ASYNC_ERROR_HANDLING``; both are restored after."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        saved = {k: os.environ.get(k) for k in
                 ("TORCH_NCCL_BLOCKING_WAIT", "TORCH_NCCL_ASYNC_ERROR_HANDLING")}
        os.environ.pop("TORCH_NCCL_ASYNC_ERROR_HANDLING", None)
        os.environ["TORCH_NCCL_BLOCKING_WAIT"] = "1"
        try:
            return func(*args, **kwargs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return wrapper  # type: ignore[return-value]


def with_dist_debug_levels(levels: Iterable[str]) -> Callable[[F], F]:
    """Run the test once per ``TORCH_DISTRIBUTED_DEBUG`` level, with a barrier after each."""
    levels = list(levels)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            import torch.distributed as dist
            from torch._C._distributed_c10d import set_debug_level_from_env

            old = os.environ.get("TORCH_DISTRIBUTED_DEBUG")
            result = None
            try:
                for level in levels:
                    os.environ["TORCH_DISTRIBUTED_DEBUG"] = level
                    set_debug_level_from_env()
                    result = func(*args, **kwargs)
                    if dist.is_initialized():
                        dist.barrier()
            finally:
                if old is None:
                    os.environ.pop("TORCH_DISTRIBUTED_DEBUG", None)
                else:
                    os.environ["TORCH_DISTRIBUTED_DEBUG"] = old
                set_debug_level_from_env()
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def run_subtests(
    context: Any,
    subtest_config: dict[str, list[Any]],
    test_fn: Callable[..., Any],
    *test_args: Any,
    **test_kwargs: Any,
) -> None:
    """Run ``test_fn`` once per combination of ``subtest_config`` values, each as a
    subtest, with a barrier between them (torch's helper).

    ``context`` is a ``unittest.TestCase`` (``subTest``) or pytest's ``subtests``
    fixture (``test``); mpidist merges every rank's subtest reports.
    """
    import torch.distributed as dist

    keys = list(subtest_config)
    for values in itertools.product(*(subtest_config[k] for k in keys)):
        kwargs = dict(zip(keys, values, strict=True))
        enter = getattr(context, "subTest", None) or context.test
        with enter(**kwargs):
            test_fn(*test_args, **test_kwargs, **kwargs)
        if dist.is_initialized():
            dist.barrier()


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank()
    return runtime.current().world.rank if runtime.is_initialized() else 0


def assert_equal_on_rank(x: Any, y: Any, msg: str | None = None, *, rank: int = 0) -> None:
    """Assert ``x == y`` (tensors compared exactly) on ``rank`` only."""
    if _rank() == rank:
        import torch

        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=msg)


def assert_not_equal_on_rank(x: Any, y: Any, msg: str | None = None, *,
                             rank: int = 0) -> None:
    """Assert ``x != y`` on ``rank`` only."""
    if _rank() == rank:
        import torch

        try:
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        except AssertionError:
            return
        raise AssertionError(msg or f"{x!r} == {y!r} on rank {rank}")


def create_tcp_store(prefix: str | None = None) -> Store:
    """A fresh key namespace on the world's TCPStore (torch's ``create_tcp_store``
    starts a server; under mpirun rank 0's is already up). Every rank must call it
    in the same order: the n-th call on each rank gets the same namespace."""
    from torch._C._distributed_c10d import PrefixStore

    name = prefix if prefix is not None else f"mpidist/test-store/{next(_stores)}"
    return PrefixStore(name, runtime.current().store)
