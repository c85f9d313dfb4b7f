"""A packed group's view of the job: while its tests run, the group is the world.

``enter`` is collective over the world, once per phase: it splits
``COMM_WORLD`` (for the code under test) and mpidist's private communicator
by group, and on every rank of a group swaps in a ``Runtime`` whose ``World``
is the group's -- so ``dist.get_world_size()``, ``mpi_world``, ``mpi_comm``,
``mpi_tmp_path`` (the group's ranks on this node), torch's ``self.rank`` and
torchrun's variables all say the group's values, and code written for a world
of k runs unchanged. The group's default process group lives under its own
store prefix (the tag), so groups that start theirs at the same time never
read each other's keys. ``leave`` puts the world back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .. import runtime
from ..backends.mpi4py import stand_in
from ..bootstrap.store import export_torch_env
from ..bootstrap.world import World
from ..runner.group import Group
from .planner import Cut

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["SubWorld", "enter", "group_world", "leave"]


def group_world(world: World, ranks: Sequence[int], rank: int) -> World:
    """The ``World`` of the group of global ``ranks`` as its rank ``rank`` sees it:
    ranks, hosts and nodes renumbered inside the group, the store unchanged."""
    hosts = tuple(world.hosts[g] for g in ranks)
    glob_nodes = [world.nodes[g] for g in ranks]
    seen = sorted(set(glob_nodes), key=glob_nodes.index)
    nodes = tuple(seen.index(n) for n in glob_nodes)
    mates = [r for r, n in enumerate(nodes) if n == nodes[rank]]
    return World(rank=rank, size=len(ranks), local_rank=mates.index(rank),
                 local_size=len(mates), node_rank=nodes[rank], num_nodes=len(seen),
                 hosts=hosts, nodes=nodes, master_addr=world.master_addr,
                 master_port=world.master_port)


@dataclass
class SubWorld:
    """This rank's group in a phase.

    Attributes:
        group: the group, over mpidist's private communicator (labels name global ranks).
        control: a duplicate of it for the group's work orders (``placement.packing``).
        saved: the world's runtime, put back by ``leave``.
    """

    group: Group
    control: MPI.Comm
    saved: runtime.Runtime


def enter(cuts: Sequence[Cut], tag: str) -> SubWorld | None:
    """Collective over the world: this rank's group of ``cuts`` (None: in none)."""
    from mpi4py import MPI

    rt = runtime.current()
    world = rt.world
    mine = next((i for i, (_, ranks) in enumerate(cuts) if world.rank in ranks), None)
    color = MPI.UNDEFINED if mine is None else mine
    user = MPI.COMM_WORLD.Split(color, key=world.rank)
    own = rt.comm.Split(color, key=world.rank)
    if mine is None:
        return None
    ranks = cuts[mine][1]
    rank = ranks.index(world.rank)
    view = group_world(world, ranks, rank)
    node = own.Split(view.node_rank, key=rank)
    wanted = rt.requested.strip().lower() != "none"
    if wanted:
        _destroy_default_group()
    rt.backend = None
    sub = SubWorld(Group(world, own, tuple(ranks), rank), own.Dup(), rt)
    runtime.swap(dataclasses.replace(
        rt, rendezvous=dataclasses.replace(rt.rendezvous, world=view), comm=own,
        node_comm=node, backend=None, generation=0, tag=f"{tag}.g{mine}/", user_comm=user,
        released=False))
    export_torch_env(view, agent_store=rt.rendezvous.store is not None)
    stand_in.set_world(user)  # torch's "mpi" groups: the group's part of COMM_WORLD
    if wanted:
        runtime.init(rt.requested, timeout=rt.timeout)  # the group's own default group
    return sub


def leave(sub: SubWorld | None) -> None:
    """This rank's group is done: its process group goes, the world's runtime is back."""
    if sub is None:
        return
    rt = runtime.current()
    _destroy_default_group()
    runtime.swap(sub.saved)
    stand_in.set_world(None)
    export_torch_env(sub.saved.world, agent_store=sub.saved.rendezvous.store is not None)
    for comm in (sub.control, rt.node_comm, rt.user_comm, rt.comm):
        if comm is not None:
            comm.Free()


def _destroy_default_group() -> None:
    if runtime.current().rendezvous.store is None:
        return  # no torch was ever asked for
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
