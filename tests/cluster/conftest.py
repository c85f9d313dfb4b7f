"""A 3-node cluster of network namespaces for the whole session (slurm/nscluster.sh).

Nodes are real enough for MPI and torch: own IP, own hostname, traffic over a
bridge. Needs root and iproute2; elsewhere these tests skip with the reason.
The cluster is taken down at the end of the session, also after failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from ..mpijob import MPIRUN, Job, MPIResult, launcher

SCRIPT = Path(__file__).resolve().parents[2] / "slurm" / "nscluster.sh"
NODES = 3
BRIDGE = f"{os.environ.get('MPIDIST_NS_PREFIX', 'mdn')}br0"  # the head's side (nscluster.sh)


@dataclass
class Cluster:
    """The running namespace cluster: node names and addresses."""

    hosts: list[tuple[str, str]]

    def launcher(self, job: Job, layout: list[int]) -> list[str]:
        """The launcher on PATH over the first ``len(layout)`` nodes, ``layout[i]`` ranks
        on node i, starting its remote side through nscluster.sh (as ssh)."""
        assert MPIRUN is not None
        hosts = [(ip, n) for (_, ip), n in zip(self.hosts, layout, strict=False)]
        forward = [v for v in ("PATH", "PYTHONPATH") if v in os.environ]
        net = ".".join(self.hosts[0][1].split(".")[:3])
        return launcher().command(launcher().executable(MPIRUN), sum(layout), hosts=hosts,
                                  forward=forward, agent=str(SCRIPT), iface=BRIDGE,
                                  subnet=f"{net}.0/24")

    def run(self, job: Job, layout: list[int], *args: str, **kw: object) -> MPIResult:
        """Run pytest under that mpirun; the suite finds the expected layout in layout.json."""
        expected = []
        for node, count in enumerate(layout):
            name = self.hosts[node][0]
            expected += [{"host": name, "node_rank": node, "local_rank": i,
                          "local_size": count} for i in range(count)]
        (job.path / "layout.json").write_text(json.dumps(
            {"ranks": expected, "nodes": len(layout), "master": self.hosts[0][1]}))
        return job.run(sum(layout), *args, launcher=self.launcher(job, layout), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def ns_cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("the namespace cluster needs root (ip netns)")
    if shutil.which("ip") is None or MPIRUN is None:
        pytest.skip("the namespace cluster needs iproute2 and an mpirun")
    up = subprocess.run([str(SCRIPT), "up", str(NODES)], capture_output=True, text=True)
    if up.returncode != 0:
        subprocess.run([str(SCRIPT), "down"], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {up.stderr.strip()}")
    try:
        hosts = [tuple(line.split()) for line in subprocess.run(
            [str(SCRIPT), "hosts"], capture_output=True, text=True, check=True
        ).stdout.splitlines()]
        yield Cluster([(name, ip) for name, ip in hosts])
    finally:
        subprocess.run([str(SCRIPT), "down"], capture_output=True)


SLURM_SCRIPT = SCRIPT.parent / "slurmcluster.sh"


@dataclass
class SlurmCluster:
    """A running namespace Slurm cluster: its slurm.conf and node names."""

    conf: str
    nodes: list[str]

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": self.conf}


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("the Slurm cluster needs root (namespaces, munged, slurmd)")
    missing = [b for b in ("slurmctld", "slurmd", "srun", "sbatch", "munged", "ip")
               if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        pytest.skip(f"the Slurm cluster needs {', '.join(missing)} "
                    "(apt-get install slurm-wlm munge iproute2)")
    up = subprocess.run([str(SLURM_SCRIPT), "up", "2"], capture_output=True, text=True)
    try:
        if up.returncode != 0:
            pytest.skip(f"cannot start the Slurm cluster here: {up.stderr.strip()[-500:]}")
        conf = subprocess.run([str(SLURM_SCRIPT), "env"], capture_output=True, text=True,
                              check=True).stdout.strip().split("=", 1)[1]
        yield SlurmCluster(conf, ["sln1", "sln2"])
    finally:
        subprocess.run([str(SLURM_SCRIPT), "down"], capture_output=True)
