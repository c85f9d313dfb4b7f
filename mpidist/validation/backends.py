"""Which backends the checks cover, and when a node cannot run one.

Shared by the correctness and bandwidth checks (a test module imports this,
never another test module).
"""

from __future__ import annotations

from typing import Any

from ..bootstrap import probes

__all__ = ["BACKENDS", "backend_skip", "device_for"]

BACKENDS = ["gloo", "mpi4py", "nccl"]


def backend_skip(backend: str) -> str | None:
    """This rank's reason to skip ``backend`` (decided collectively by the caller)."""
    import torch.distributed as dist

    if backend == "nccl":
        if not dist.is_nccl_available():
            return "NCCL: this torch build has none (GPU-only check)"
        if probes.cuda_devices() == 0:
            return "NCCL: no CUDA device on this node (GPU-only check)"
    return None


def device_for(backend: str, world: Any) -> Any:
    import torch

    if backend == "nccl":
        return torch.device("cuda", world.local_rank % probes.cuda_devices())
    return torch.device("cpu")
