"""The MPI communicator of a torch group: MPI rank ``r`` is the process that is group rank ``r``.

torch hands a backend only (store, group rank, group size); the MPI ranks of
the members are published through that store, so a group made any way gets
the right processes, in torch's rank order.
"""

from __future__ import annotations

import zlib
from typing import Any

from mpi4py import MPI

__all__ = ["group_comm"]


def group_comm(store: Any, rank: int, size: int, group_id: str) -> MPI.Comm:
    """An MPI communicator whose rank ``r`` is the process that is group rank ``r``.

    Collective over the group's members only (non-members never call it).
    """
    world = MPI.COMM_WORLD
    if size > world.Get_size():
        raise RuntimeError(
            f"mpi4py backend: a group of {size} ranks in an MPI world of "
            f"{world.Get_size()}; start every rank with mpirun/srun")
    if size == world.Get_size():  # every process is a member: no need for the store
        return world.Split(0, rank)
    store.set(f"mpi4py/{rank}", str(world.Get_rank()))
    keys = [f"mpi4py/{r}" for r in range(size)]
    store.wait(keys)
    members = [int(store.get(key)) for key in keys]
    group = world.Get_group().Incl(members)
    try:
        return world.Create_group(group, zlib.crc32(group_id.encode()) % 32768)
    finally:
        group.Free()
