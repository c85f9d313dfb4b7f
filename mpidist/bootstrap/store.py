"""Rank 0's address, mpidist's channel, torch's TCPStore, and the torchrun contract.

Rank 0 picks an address every rank can reach (``netif``) and starts mpidist's
channel there (``channel``: the watchdog's side channel, no torch needed).
When a process group is wanted it also binds torch's TCPStore on a
kernel-chosen free port (port 0: no probe-then-bind race); both ports go to
every rank over MPI. Every rank then exports the variables torchrun would
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, ...), with
``TORCHELASTIC_USE_AGENT_STORE=True`` when MASTER_PORT is our store, so that
user code calling ``init_process_group(init_method="env://")`` joins it as a
client instead of trying to host a second one on the same port.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterator, MutableMapping

from ..errors import BootstrapError
from .agree import raise_together
from .channel import ChannelClient, ChannelServer
from .netif import choose_master_addr, interface_addresses, interface_of, route_source
from .world import World

if TYPE_CHECKING:
    from mpi4py import MPI
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # no __all__ entry

__all__ = ["TORCH_ENV", "Rendezvous", "export_torch_env", "guard_env_rendezvous",
           "ifname_specs", "launch_env", "rendezvous", "start_torch_store"]

#: the variables ``export_torch_env`` sets (torchrun's)
TORCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK",
             "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
             "ROLE_WORLD_SIZE", "NODE_RANK", "TORCHELASTIC_USE_AGENT_STORE",
             "GLOO_SOCKET_IFNAME")
_LAUNCH: dict[str, str | None] = {}  # their values before mpidist first set them
_AGENT = "TORCHELASTIC_USE_AGENT_STORE"
_SERVED: dict[str, str] = {}  # MASTER_ADDR/MASTER_PORT of the store mpidist exported


def launch_env() -> dict[str, str | None]:
    """``TORCH_ENV`` as the launcher gave them to this process (None: unset), before
    mpidist set them: what a test run by torch's own runner would have seen."""
    return dict(_LAUNCH) if _LAUNCH else {name: os.environ.get(name) for name in TORCH_ENV}


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


@dataclass
class Rendezvous:
    """What ``rendezvous`` set up for this rank.

    Attributes:
        world: the world with ``master_addr``/``master_port`` filled in.
        channel: this rank's connection to mpidist's channel (the watchdog's).
        channel_port: the channel's port on ``world.master_addr``.
        server: the channel service (rank 0 only).
        store: torch's TCPStore (rank 0: the server), or None until a process
            group needs one (``start_torch_store``).
    """

    world: World
    channel: ChannelClient
    channel_port: int
    server: ChannelServer | None = None
    store: TCPStore | None = None


def rendezvous(world: World, comm: MPI.Comm, node_comm: MPI.Comm, timeout: float,
               ifname: str = "", torch_store: bool = True) -> Rendezvous:
    """Collective: rank 0 picks its address and starts mpidist's channel there (and
    torch's TCPStore when ``torch_store``); every rank connects.

    Without a torch store, MASTER_PORT is a port rank 0 found free, for code that
    runs its own ``env://`` rendezvous (no ``import torch`` is paid for it here).

    Raises:
        BootstrapError: on every rank, if rank 0 cannot pick an address or
            any rank cannot reach it; the message names rank and host.
    """
    # Node leaders publish their interfaces so rank 0 can route to them.
    mine = interface_addresses() if node_comm.Get_rank() == 0 else None
    leaders = comm.gather(mine, root=0)
    server: ChannelServer | None = None
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
            server = ChannelServer(addr)
            endpoint = (addr, server.port)
        except Exception as exc:  # reported on every rank below
            error = exc
    raise_together(comm, error, BootstrapError)
    endpoint = comm.bcast(endpoint, root=0)
    assert endpoint is not None
    addr, channel_port = endpoint
    try:
        channel = ChannelClient(addr, channel_port, timeout)
    except Exception as exc:
        error = BootstrapError(
            f"cannot reach rank 0 at {addr}:{channel_port} ({exc}); set MPIDIST_IFNAME "
            "to the interface of rank 0 that this host can reach")
    raise_together(comm, error, BootstrapError)
    rv = Rendezvous(dataclasses.replace(world, master_addr=addr), channel, channel_port,
                    server)
    if torch_store:
        start_torch_store(rv, comm, timeout)
    else:
        port = _free_port(addr) if world.rank == 0 else None
        rv.world = dataclasses.replace(rv.world, master_port=comm.bcast(port, root=0))
    return rv


def _free_port(addr: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET) as sock:
        sock.bind((addr, 0))
        return int(sock.getsockname()[1])


def start_torch_store(rv: Rendezvous, comm: MPI.Comm, timeout: float) -> None:
    """Collective: rank 0 hosts torch's TCPStore on a free port, every rank connects;
    ``rv.world.master_port`` becomes its port.

    Raises:
        BootstrapError: on every rank, naming the rank that cannot reach it.
    """
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # no __all__ entry

    world, addr = rv.world, rv.world.master_addr
    error: BaseException | None = None
    port = None
    if world.rank == 0:
        try:
            rv.store = TCPStore(addr, 0, world.size, True,
                                timeout=timedelta(seconds=timeout), wait_for_workers=False)
            port = rv.store.port
        except Exception as exc:
            error = exc
    raise_together(comm, error, BootstrapError)
    port = comm.bcast(port, root=0)
    if world.rank != 0:
        try:
            rv.store = TCPStore(addr, port, world.size, False,
                                timeout=timedelta(seconds=timeout))
        except Exception as exc:
            error = BootstrapError(
                f"cannot reach rank 0's store at {addr}:{port} within {timeout:g} s "
                f"({exc}); set MPIDIST_IFNAME to the interface of rank 0 that "
                "this host can reach")
    raise_together(comm, error, BootstrapError)
    rv.world = dataclasses.replace(world, master_port=port)


def export_torch_env(
    world: World, environ: MutableMapping[str, str] | None = None, agent_store: bool = True
) -> None:
    """Set the variables torchrun sets, so torchrun-style code runs unchanged.

    ``agent_store``: MASTER_PORT is mpidist's TCPStore, which ``env://`` code joins as
    a client (torchrun's agent store); else rank 0's ``env://`` code hosts one there.
    """
    environ = os.environ if environ is None else environ
    if environ is os.environ and not _LAUNCH:
        _LAUNCH.update((name, environ.get(name)) for name in TORCH_ENV)
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
    )
    if agent_store:
        environ[_AGENT] = "True"
    else:
        environ.pop(_AGENT, None)
    if environ is os.environ:
        _SERVED.update(MASTER_ADDR=environ["MASTER_ADDR"], MASTER_PORT=environ["MASTER_PORT"])


def guard_env_rendezvous() -> None:
    """``TORCHELASTIC_USE_AGENT_STORE=True`` holds for mpidist's store only (idempotent).

    The variable tells torch's ``env://`` rendezvous that a store already serves
    MASTER_PORT, so every rank joins it as a client. Code that picks its own
    MASTER_ADDR/MASTER_PORT (torch's ``test_c10d_common.py`` sets port 6789, as
    under torch's runner, where no agent exists) would then wait for a server nobody
    starts. For such a call torch's handler runs with the variable unset, so rank 0
    hosts the store, as it would outside mpidist.
    """
    import importlib

    # the module, not torch.distributed's function of the same name
    rdzv = importlib.import_module("torch.distributed.rendezvous")
    handler = rdzv._rendezvous_handlers.get("env")
    if handler is None or getattr(handler, "_mpidist_guard", False):
        return

    def env_handler(url: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        own = any(os.environ.get(k, v) != v for k, v in _SERVED.items())
        if not own or os.environ.get(_AGENT) != "True":
            steps: Iterator[Any] = handler(url, *args, **kwargs)
            return steps
        saved = os.environ.pop(_AGENT)
        try:  # torch reads the variable at the first step; init_process_group takes one
            inner = handler(url, *args, **kwargs)
            first = next(inner)
        finally:
            os.environ[_AGENT] = saved
        return itertools.chain([first], inner)

    env_handler._mpidist_guard = True  # type: ignore[attr-defined]
    rdzv._rendezvous_handlers["env"] = env_handler
