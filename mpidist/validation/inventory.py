"""What each node has, and where the nodes disagree.

``collect`` runs on every rank and describes its node: CPUs, GPUs, library
versions, interfaces, EFA, multicast, and the environment that steers the
fabric (``FI_*``, ``NCCL_*``, ...). ``compare`` (pure) turns per-node facts
into findings: a version, a GPU count, an EFA presence or a fabric variable
that is not the same everywhere is how one bad node looks before any
bandwidth is measured.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from ..bootstrap import probes
from ..bootstrap.netif import interface_addresses

__all__ = ["ENV_PREFIXES", "collect", "compare"]

#: environment that changes how collectives travel; any difference is a finding
ENV_PREFIXES = ("FI_", "NCCL_", "OMPI_MCA_", "UCX_", "GLOO_", "TORCH_NCCL_", "CUDA_VISIBLE")
#: ...except what the launcher sets per process (ranks, session dirs, daemon URIs)
LAUNCHER_OWN = re.compile(r"^OMPI_MCA_(orte|ess|pmix|prte|plm|routed|state|odls|ras|rmaps|"
                          r"initial_wdir|shmem_RUNTIME_QUERY)")
#: facts that must agree across nodes (missing on every node is agreement too)
MUST_AGREE = ("torch", "mpi4py", "mpi_library", "nccl", "cuda_runtime", "cuda_driver",
              "gpu_count", "gpu_model", "efa", "multicast", "cpu_count", "python")


def collect() -> dict[str, Any]:
    """This node's facts (cheap; every rank may call it)."""
    import platform

    import torch
    from mpi4py import MPI

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mpi4py": __import__("mpi4py").__version__,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "cpu_count": os.cpu_count(),
        "interfaces": interface_addresses(),
    }
    nccl = probes.nccl_version()
    facts["nccl"] = ".".join(map(str, nccl)) if nccl else None
    facts["cuda_runtime"] = torch.version.cuda
    count = probes.cuda_devices()
    facts["gpu_count"] = count
    facts["gpus"] = [{"name": torch.cuda.get_device_name(i),
                      "memory_gib": round(torch.cuda.get_device_properties(i).total_memory
                                          / 2**30, 1)} for i in range(count)]
    facts["gpu_model"] = facts["gpus"][0]["name"] if count else None
    facts["cuda_driver"] = _driver_version() if count else None
    efa = probes.efa()
    facts["efa"], facts["efa_detail"] = efa.ok, efa.detail
    multicast = probes.multicast()
    facts["multicast"], facts["multicast_detail"] = multicast.ok, multicast.detail
    facts["env"] = {k: v for k, v in sorted(os.environ.items())
                    if k.startswith(ENV_PREFIXES) and not LAUNCHER_OWN.match(k)}
    return facts


def _driver_version() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as handle:
            first = handle.readline()
    except OSError:
        return None
    words = first.split()
    return next((w for w in words if w[:1].isdigit() and "." in w), first.strip())


def _spread(values: Mapping[str, Any]) -> str:
    by_value: dict[str, list[str]] = {}
    for node, value in values.items():
        by_value.setdefault(repr(value), []).append(node)
    return "; ".join(f"{','.join(nodes)}: {value}" for value, nodes in by_value.items())


def compare(nodes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Findings: each fact or fabric variable that differs between nodes."""
    findings = []
    for key in MUST_AGREE:
        values = {node: facts.get(key) for node, facts in nodes.items()}
        if len({repr(v) for v in values.values()}) > 1:
            findings.append(f"{key} differs between nodes: {_spread(values)}")
    variables = sorted({k for facts in nodes.values() for k in facts.get("env", {})})
    for var in variables:
        values = {node: facts.get("env", {}).get(var, "<unset>") for node, facts in
                  nodes.items()}
        if len(set(values.values())) > 1:
            findings.append(f"{var} differs between nodes: {_spread(values)}")
    return findings
