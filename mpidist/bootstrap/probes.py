"""What this rank's node has: GPUs, NCCL, EFA, NVLink multicast -- real probes with reasons.

Each probe returns a ``Probe``: whether the thing is there and, either way,
what was looked at (``fi_info not found: libfabric is not installed``), so a
skip or a validation finding can say why instead of just "False". Probes are
local to the node; ``mpidist.testing`` turns them into collective skips and
``mpidist validate`` compares them across nodes.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Probe", "cuda_devices", "efa", "multicast", "nccl_version"]

SYS_INFINIBAND = Path("/sys/class/infiniband")


@dataclass(frozen=True)
class Probe:
    """A probe's answer: ``ok``, and ``detail`` saying what was found or missing."""

    ok: bool
    detail: str

    def __bool__(self) -> bool:
        return self.ok


def cuda_devices() -> int:
    """CUDA devices torch sees on this node (0 on a CPU build or without a driver)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def nccl_version() -> tuple[int, ...] | None:
    """The NCCL version torch was built with, or None when it has no NCCL."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_nccl_available()):
        return None
    version = torch.cuda.nccl.version()  # type: ignore[no-untyped-call]
    return tuple(version) if isinstance(version, tuple) else (int(version),)


@functools.cache
def efa() -> Probe:
    """AWS EFA: libfabric's efa provider answers (``fi_info -p efa -t FI_EP_RDM``), as
    torch's ``has_efa``; the EFA devices under /sys/class/infiniband are listed too."""
    devices = sorted(p.name for p in SYS_INFINIBAND.glob("*")) if SYS_INFINIBAND.is_dir() \
        else []
    efa_devices = [d for d in devices if d.startswith("efa") or _driver(d) == "efa"]
    seen = (f"EFA devices: {', '.join(efa_devices)}" if efa_devices else
            f"no EFA device in {SYS_INFINIBAND}" + (f" (has {', '.join(devices)})"
                                                    if devices else ""))
    fi_info = shutil.which("fi_info")
    if fi_info is None:
        return Probe(False, f"fi_info not found: libfabric is not installed; {seen}")
    try:
        proc = subprocess.run([fi_info, "-p", "efa", "-t", "FI_EP_RDM"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, f"fi_info -p efa failed to run ({exc}); {seen}")
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        return Probe(False, f"fi_info -p efa -t FI_EP_RDM exited {proc.returncode}"
                     f"{': ' + why[-1] if why else ''}; {seen}")
    return Probe(True, f"libfabric efa provider answers (fi_info); {seen}")


def _driver(device: str) -> str:
    link = SYS_INFINIBAND / device / "device" / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else ""


def multicast(device: int = 0) -> Probe:
    """NVLink SHARP multicast (NVLS) for torch's symmetric memory on CUDA ``device``,
    the query torch's ``requires_multicast_support`` makes."""
    import torch

    if not torch.cuda.is_available():
        build = "a CPU build of torch" if torch.version.cuda is None else "no CUDA device"
        return Probe(False, f"no multicast: {build} (torch {torch.__version__})")
    try:
        from torch._C._autograd import DeviceType
        from torch._C._distributed_c10d import _SymmetricMemory
    except ImportError as exc:
        return Probe(False, f"this torch has no symmetric memory ({exc})")
    name = torch.cuda.get_device_name(device)
    if _SymmetricMemory.has_multicast_support(DeviceType.CUDA, device):
        return Probe(True, f"multicast supported on cuda:{device} ({name})")
    return Probe(False, f"no multicast on cuda:{device} ({name}): needs NVSwitch/NVLS "
                 "(H100/B200 SXM systems) and a driver that enables it")
