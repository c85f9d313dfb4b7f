"""torch's own backend name ``"mpi"`` on a torch built without MPI (every PyPI wheel).

Code written for torch's MPI backend -- ``init_process_group("mpi")``,
``dist.is_mpi_available()``, torch's own MPI-backend tests (``BACKEND=mpi``) --
otherwise needs a source build of torch. Under ``--with-mpi`` every rank is an
MPI process already, so torch's MPI branch can be served by mpidist's mpi4py
group: torch builds an MPI group through ``ProcessGroupMPI.create(ranks)``
inside ``_new_process_group_helper``, and a Python ``ProcessGroup`` returned
there becomes the group itself. ``install`` puts a stand-in for that class in
torch's c10d module, hands it the group's name (which ``create`` is not given;
a subgroup's MPI tag is made from it) from a wrapper around the helper, and
says MPI is available. The group's backend name stays ``"mpi"`` (``dist.get_backend()``),
as code written for torch's MPI backend expects. A torch that has MPI keeps it.

torch's MPI world is ``MPI_COMM_WORLD`` because torch's runner starts one MPI job
per test. Under mpidist a test's world is its ranks: a packed group's part of the
job, or the ranks a smaller MultiProcessTestCase runs on. A ``Dup`` of the whole
job there waits for ranks that are in other tests (a one-rank test's
``init_process_group("mpi")`` hung), so the default group is made from the
communicator the runner names with ``set_world`` (``COMM_WORLD`` when none).
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["install", "installed", "set_world"]

_pending: list[str] = []  # the name of the group being made, while torch's helper runs
# installed: the stand-in is in torch's c10d; world: the current test's communicator
# (None: COMM_WORLD)
_state: dict[str, Any] = {"installed": False, "world": None}


def set_world(comm: Any) -> Any:
    """Make ``comm`` (an ``MPI.Comm``; None: ``COMM_WORLD``) the world of the MPI groups
    made from now on; returns the one it replaces, to restore."""
    previous, _state["world"] = _state["world"], comm
    return previous


class _ProcessGroupMPIStandIn:
    """What torch's MPI branch calls: ``create(global_ranks_in_group)``.

    As torch's ``ProcessGroupMPI``: the default group (no ranks) is every MPI
    process, in MPI rank order (torch passes no store, rank or size for it); a
    subgroup is its members in the order given, made by the members alone.
    """

    @staticmethod
    def create(ranks: list[int]) -> Any:
        import zlib

        from mpi4py import MPI

        from .group import MPI4PyProcessGroup

        world = MPI.COMM_WORLD if _state["world"] is None else _state["world"]
        if not ranks:
            comm = world.Dup()
        elif sorted(ranks) == list(range(world.Get_size())):  # every process: no group op
            comm = world.Split(0, list(ranks).index(world.Get_rank()))
        else:
            name = _pending[-1] if _pending else ",".join(map(str, ranks))
            group = world.Get_group().Incl(list(ranks))
            try:
                comm = world.Create_group(group, zlib.crc32(name.encode()) % 32768)
            finally:
                group.Free()
            if comm == MPI.COMM_NULL:
                return None
        return MPI4PyProcessGroup(comm, comm.Get_rank(), comm.Get_size(), backend="mpi")


def installed() -> bool:
    """Whether ``"mpi"`` is served by mpidist's group in this process."""
    return bool(_state["installed"])


def install() -> bool:
    """Serve ``backend="mpi"`` with mpidist's mpi4py group if torch has no MPI backend
    (idempotent). Returns whether the stand-in is in place."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d

    if _state["installed"]:
        return True
    if c10d.is_mpi_available():  # torch's own MPI: never replaced
        return False
    helper = c10d._new_process_group_helper

    @functools.wraps(helper)
    def new_group_helper(group_size: int, group_rank: int, global_ranks_in_group: list[int],
                         backend: Any, store: Any, group_name: Any, *args: Any,
                         **kwargs: Any) -> Any:
        _pending.append(str(group_name))
        try:
            return helper(group_size, group_rank, global_ranks_in_group, backend, store,
                          group_name, *args, **kwargs)
        finally:
            _pending.pop()

    def is_mpi_available() -> bool:
        """True: ``backend="mpi"`` is mpidist's mpi4py group under ``--with-mpi``."""
        return True

    c10d._new_process_group_helper = new_group_helper
    c10d.ProcessGroupMPI = _ProcessGroupMPIStandIn  # type: ignore[misc]
    c10d.is_mpi_available = is_mpi_available
    dist.is_mpi_available = is_mpi_available
    _state["installed"] = True
    return True
