"""The MPI world as plain data: who am I, where, and who runs beside me.

Built once from mpi4py's ``COMM_WORLD`` (hostnames by allgather, node-local
ranks by ``Split_type(COMM_TYPE_SHARED)``), then frozen: everything above this
layer (store, process group, pytest plugin) reads it and never asks MPI again.
No torch here, so the world can be inspected without paying for torch.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["World", "discover", "format_hosts", "format_ranks"]


@dataclass(frozen=True)
class World:
    """Immutable description of this rank's place in the job.

    Attributes:
        rank: global rank (``RANK``).
        size: number of ranks (``WORLD_SIZE``).
        local_rank: rank among the ranks of this node (``LOCAL_RANK``).
        local_size: ranks on this node (``LOCAL_WORLD_SIZE``).
        node_rank: index of this node, ordered by its lowest global rank
            (``GROUP_RANK``).
        num_nodes: number of nodes.
        hosts: hostname of every rank, indexed by global rank.
        nodes: node rank of every rank, indexed by global rank.
        master_addr: address of rank 0 that every rank can reach ("" until
            the store is up).
        master_port: port of rank 0's TCPStore (0 until the store is up).
    """

    rank: int
    size: int
    local_rank: int
    local_size: int
    node_rank: int
    num_nodes: int
    hosts: tuple[str, ...]
    nodes: tuple[int, ...]
    master_addr: str = ""
    master_port: int = 0

    @property
    def hostname(self) -> str:
        """This rank's hostname."""
        return self.hosts[self.rank]

    def describe(self, rank: int) -> str:
        """``rank r/N (host h)``: how every message names a rank."""
        return f"rank {rank}/{self.size} (host {self.hosts[rank]})"

    def where(self, rank: int) -> tuple[int, str]:
        """Rank ``rank``'s global rank and host (a world's ranks are global)."""
        return rank, self.hosts[rank]

    def describe_ranks(self, ranks: list[int]) -> str:
        """``ranks 0-3,7/16 (hosts a,b)`` for a group of ranks (``format_hosts``)."""
        if len(ranks) == 1:
            return self.describe(ranks[0])
        hosts = sorted({self.hosts[r] for r in ranks}, key=self.hosts.index)
        return f"ranks {format_ranks(ranks)}/{self.size} ({format_hosts(hosts)})"


def format_ranks(ranks: list[int]) -> str:
    """Compress sorted-or-not rank numbers into ranges: ``[0,1,2,5]`` -> ``0-2,5``."""
    out: list[str] = []
    ordered = sorted(set(ranks))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def format_hosts(hosts: list[str], shown: int = 3) -> str:
    """``host a``, ``hosts a,b,c``, or past ``shown`` hosts their count and a Slurm-style
    host list: ``16 hosts: gpu[01-16]`` (names sharing a prefix and numbered alike
    fold into one bracket of ranges; past 60 characters the list is cut with ``…``)."""
    if len(hosts) <= shown:
        return f"{'host' if len(hosts) == 1 else 'hosts'} {','.join(hosts)}"
    runs: dict[str, list[str]] = {}
    plain: list[str] = []
    for host in hosts:
        match = re.fullmatch(r"(.*?)(\d+)", host)
        if match is None:
            plain.append(host)
        else:
            runs.setdefault(match.group(1), []).append(match.group(2))
    parts = []
    for prefix, digits in runs.items():
        widths = {len(d) for d in digits}
        padded = len(widths) == 1 and any(d.startswith("0") and len(d) > 1 for d in digits)
        ranges = format_ranks([int(d) for d in digits]).split(",")
        if padded:
            width = widths.pop()
            ranges = ["-".join(f"{int(n):0{width}d}" for n in r.split("-")) for r in ranges]
        joined = ",".join(ranges)
        parts.append(f"{prefix}[{joined}]" if len(digits) > 1 else f"{prefix}{joined}")
    text = ",".join([*parts, *plain])
    if len(text) > 60:
        text = text[:60].rsplit(",", 1)[0] + ",…"
    return f"{len(hosts)} hosts: {text}"


def discover(comm: MPI.Comm) -> tuple[World, MPI.Comm]:
    """Collective over ``comm``: describe this rank; also return its node communicator.

    The node communicator groups the ranks that share memory (one per host),
    ordered by global rank, so local rank 0 is the node's lowest global rank.
    """
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    hosts = tuple(comm.allgather(socket.gethostname()))
    node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    leader = node_comm.bcast(rank, root=0)
    leaders = comm.allgather(leader)
    ordered_leaders = sorted(set(leaders))
    nodes = tuple(ordered_leaders.index(x) for x in leaders)
    world = World(
        rank=rank,
        size=size,
        local_rank=node_comm.Get_rank(),
        local_size=node_comm.Get_size(),
        node_rank=nodes[rank],
        num_nodes=len(ordered_leaders),
        hosts=hosts,
        nodes=nodes,
    )
    return world, node_comm
