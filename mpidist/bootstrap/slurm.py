"""Does Slurm agree with the world mpidist computed? (pure)

Under ``srun`` each task has Slurm's own view of the job: SLURM_PROCID (global
rank), SLURM_LOCALID (rank on the node), SLURM_NODEID (node index) and
SLURM_JOB_NODELIST. If MPI's view differs -- a wrong ``--mpi`` plugin, a
launcher wrapper that reorders ranks, a hostname that is not the node name --
code that trusts either one silently misbehaves, so rank 0 says so.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from .world import World

__all__ = ["SLURM_VARS", "compare", "expand_hostlist"]

SLURM_VARS = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_NODELIST",
              "SLURM_STEP_NUM_TASKS")


def expand_hostlist(text: str) -> list[str]:
    """``gpu[01-03,07],login1`` -> ``['gpu01', 'gpu02', 'gpu03', 'gpu07', 'login1']``."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?", text):
        prefix, ranges = match.group(1), match.group(2)
        if not ranges:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            width = len(low)
            for number in range(int(low), int(high or low) + 1):
                hosts.append(f"{prefix}{number:0{width}d}")
    return hosts


def compare(world: World, environ: Sequence[Mapping[str, str]]) -> list[str]:
    """Disagreements between ``world`` and each rank's Slurm variables (empty: agree).

    ``environ[r]`` holds rank r's SLURM_* variables; ranks without SLURM_PROCID
    (not started by srun) are not compared.
    """
    problems: list[str] = []
    for rank, env in enumerate(environ):
        if "SLURM_PROCID" not in env:
            continue
        who = world.describe(rank)
        checks = (("SLURM_PROCID", rank, "rank"),
                  ("SLURM_LOCALID", _local_rank(world, rank), "local rank"),
                  ("SLURM_NODEID", world.nodes[rank], "node rank"))
        for variable, ours, what in checks:
            if variable in env and env[variable] != str(ours):
                problems.append(f"{who}: {variable}={env[variable]} but mpidist's {what} "
                                f"is {ours}")
        nodelist = env.get("SLURM_JOB_NODELIST")
        if nodelist and world.hosts[rank] not in expand_hostlist(nodelist):
            problems.append(f"{who}: host {world.hosts[rank]} is not in "
                            f"SLURM_JOB_NODELIST={nodelist}")
    return problems


def _local_rank(world: World, rank: int) -> int:
    return sum(1 for r in range(rank) if world.nodes[r] == world.nodes[rank])
