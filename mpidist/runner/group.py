"""The ranks one test runs on: the unit of execution.

Every per-test step -- the body agreement, the exchange to the root, the
merge's rank labels, the watchdog's scope -- takes a ``Group`` rather than
reading the world, so a test can run on any set of ranks with its own
communicator. A run over the whole world is the group whose ranks are every
rank (``Group.world_group``); its labels read exactly as the world's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..bootstrap.world import World, format_hosts, format_ranks

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["Group", "Members"]


@dataclass(frozen=True)
class Group:
    """A test's ranks.

    Attributes:
        world: the job.
        comm: the group's communicator; its rank ``i`` is global rank ``ranks[i]``.
        ranks: the global ranks of the members, in group-rank order.
        rank: this process's rank in the group.
    """

    world: World
    comm: MPI.Comm
    ranks: tuple[int, ...]
    rank: int

    @classmethod
    def world_group(cls, world: World, comm: MPI.Comm) -> Group:
        """The group of every rank, over ``comm`` (a duplicate of COMM_WORLD)."""
        return cls(world, comm, tuple(range(world.size)), world.rank)

    @property
    def size(self) -> int:
        return len(self.ranks)

    @property
    def is_world(self) -> bool:
        return self.size == self.world.size

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host name of the job (what a failure text may name)."""
        return self.world.hosts

    @property
    def is_root(self) -> bool:
        """Whether this process gathers, merges and reports the group's tests."""
        return self.rank == 0

    def describe(self, rank: int) -> str:
        """How messages name group rank ``rank``: ``rank 1/2 (global 7, host n2)``."""
        return _describe(self.world, self.ranks, rank)

    def where(self, rank: int) -> tuple[int, str]:
        """Group rank ``rank``'s global rank and host."""
        return self.ranks[rank], self.world.hosts[self.ranks[rank]]

    def describe_ranks(self, ranks: list[int]) -> str:
        """A set of group ranks, with their global ranks and hosts."""
        return _describe_ranks(self.world, self.ranks, ranks)


def _describe(world: World, members: tuple[int, ...], rank: int) -> str:
    """Group rank ``rank`` of the group of global ranks ``members``."""
    if len(members) == world.size:
        return world.describe(rank)
    glob = members[rank]
    return f"rank {rank}/{len(members)} (global {glob}, host {world.hosts[glob]})"


def _describe_ranks(world: World, members: tuple[int, ...], ranks: list[int]) -> str:
    """Group ranks ``ranks`` of the group of global ranks ``members``."""
    if len(members) == world.size:
        return world.describe_ranks(ranks)
    if len(ranks) == 1:
        return _describe(world, members, ranks[0])
    globs = [members[r] for r in ranks]
    hosts = sorted({world.hosts[g] for g in globs}, key=world.hosts.index)
    return (f"ranks {format_ranks(ranks)}/{len(members)} (global {format_ranks(globs)}, "
            f"{format_hosts(hosts)})")


@dataclass(frozen=True)
class Members:
    """Labels for a group whose ranks are named by their global numbers, as the
    watchdog and the keepers name them: global rank 7 of the group ``(6, 7)`` reads
    ``rank 1/2 (global 7, host n2)``; the whole world reads as the world's labels."""

    world: World
    ranks: tuple[int, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.world.hosts

    def describe(self, rank: int) -> str:
        if rank not in self.ranks:  # (a second death, in another group)
            return self.world.describe(rank)
        return _describe(self.world, self.ranks, self.ranks.index(rank))

    def where(self, rank: int) -> tuple[int, str]:
        return rank, self.world.hosts[rank]

    def describe_ranks(self, ranks: list[int]) -> str:
        if not set(ranks) <= set(self.ranks):
            return self.world.describe_ranks(ranks)
        return _describe_ranks(self.world, self.ranks, [self.ranks.index(r) for r in ranks])
