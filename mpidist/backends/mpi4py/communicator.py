"""The MPI communicator of a torch group: MPI rank ``r`` is the process that is group rank ``r``.

torch hands a backend only (store, group rank, group size); the MPI ranks of
the members are published through that store, so a group made any way gets
the right processes, in torch's rank order. Under mpidist those values are
sealed with the job's secret and verified, like everything mpidist writes
to a store.
"""

from __future__ import annotations

import zlib
from typing import Any

from mpi4py import MPI

from ...bootstrap.signing import Rejected, job_signer

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
    signer = job_signer()
    mine = str(world.Get_rank())
    store.set(f"mpi4py/{rank}", signer.seal(f"mpi4py/{rank}", mine) if signer else mine)
    keys = [f"mpi4py/{r}" for r in range(size)]
    store.wait(keys)
    members = [_member(store, key, signer) for key in keys]
    group = world.Get_group().Incl(members)
    try:
        return world.Create_group(group, zlib.crc32(group_id.encode()) % 32768)
    finally:
        group.Free()


def _member(store: Any, key: str, signer: Any) -> int:
    raw = store.get(key)
    try:
        return int(signer.open(key, raw) if signer is not None else raw)
    except (Rejected, ValueError) as why:
        raise RuntimeError(f"mpi4py backend: the store value at {key} is not this job's "
                           f"({why}); another process wrote to the store") from None
