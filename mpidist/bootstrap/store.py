"""Rank 0's TCPStore and the torchrun environment contract.

Rank 0 picks an address every rank can reach (``netif``), binds a TCPStore on
a kernel-chosen free port (port 0: no probe-then-bind race) and broadcasts
both over MPI. Every rank then connects and exports the variables torchrun
would (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, ...), with
``TORCHELASTIC_USE_AGENT_STORE=True`` so that user code calling
``init_process_group(init_method="env://")`` joins our store as a client
instead of trying to host a second one on the same port.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import TYPE_CHECKING, MutableMapping

from ..errors import BootstrapError
from .agree import raise_together
from .netif import choose_master_addr, interface_addresses, interface_of, route_source
from .world import World

if TYPE_CHECKING:
    from mpi4py import MPI
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # no __all__ entry

__all__ = ["connect_store", "export_torch_env", "ifname_specs"]


def ifname_specs(
    explicit: str = "", environ: MutableMapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Interface selections in precedence order, named by where they came from."""
    environ = os.environ if environ is None else environ
    return [
        ("MPIDIST_IFNAME", explicit or environ.get("MPIDIST_IFNAME", "")),
        ("GLOO_SOCKET_IFNAME", environ.get("GLOO_SOCKET_IFNAME", "")),
        ("NCCL_SOCKET_IFNAME", environ.get("NCCL_SOCKET_IFNAME", "")),
    ]


def connect_store(
    world: World,
    comm: MPI.Comm,
    node_comm: MPI.Comm,
    timeout: float,
    ifname: str = "",
) -> tuple[World, TCPStore]:
    """Collective: host the store on rank 0, connect every rank to it.

    Returns the world with ``master_addr``/``master_port`` filled in, and this
    rank's store client (rank 0: the server).

    Raises:
        BootstrapError: on every rank, if rank 0 cannot pick an address or
            any rank cannot reach the store; the message names rank and host.
    """
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # no __all__ entry

    # Node leaders publish their interfaces so rank 0 can route to them.
    mine = interface_addresses() if node_comm.Get_rank() == 0 else None
    leaders = comm.gather(mine, root=0)
    store: TCPStore | None = None
    endpoint: tuple[str, int] | None = None
    error: BaseException | None = None
    if world.rank == 0:
        try:
            assert leaders is not None and mine is not None
            others = [
                addrs for node, addrs in enumerate(leaders)
                if addrs is not None and world.nodes[node] != world.node_rank
            ]
            addr = choose_master_addr(mine, others, ifname_specs(ifname))
            store = TCPStore(
                addr, 0, world.size, True,
                timeout=timedelta(seconds=timeout), wait_for_workers=False,
            )
            endpoint = (addr, store.port)
        except Exception as exc:  # reported on every rank below
            error = exc
    raise_together(comm, error, BootstrapError)
    endpoint = comm.bcast(endpoint, root=0)
    assert endpoint is not None
    addr, port = endpoint
    if world.rank != 0:
        try:
            store = TCPStore(
                addr, port, world.size, False, timeout=timedelta(seconds=timeout)
            )
        except Exception as exc:
            error = BootstrapError(
                f"cannot reach rank 0's store at {addr}:{port} within {timeout:g} s "
                f"({exc}); set MPIDIST_IFNAME to the interface of rank 0 that "
                "this host can reach"
            )
    raise_together(comm, error, BootstrapError)
    assert store is not None
    return dataclasses.replace(world, master_addr=addr, master_port=port), store


def export_torch_env(
    world: World, environ: MutableMapping[str, str] | None = None
) -> None:
    """Set the variables torchrun sets, so torchrun-style code runs unchanged."""
    environ = os.environ if environ is None else environ
    if world.num_nodes > 1 and not environ.get("GLOO_SOCKET_IFNAME"):
        # gloo otherwise binds the address its hostname resolves to, which on
        # many clusters (and network namespaces) is not the one that reaches rank 0.
        ifname = interface_of(route_source(world.master_addr), interface_addresses())
        if ifname and ifname != "lo":
            environ["GLOO_SOCKET_IFNAME"] = ifname
    environ.update(
        MASTER_ADDR=world.master_addr,
        MASTER_PORT=str(world.master_port),
        RANK=str(world.rank),
        WORLD_SIZE=str(world.size),
        LOCAL_RANK=str(world.local_rank),
        LOCAL_WORLD_SIZE=str(world.local_size),
        GROUP_RANK=str(world.node_rank),
        GROUP_WORLD_SIZE=str(world.num_nodes),
        ROLE_RANK=str(world.rank),
        ROLE_WORLD_SIZE=str(world.size),
        NODE_RANK=str(world.node_rank),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
