"""Which address of rank 0 the other ranks can reach, and how we know.

Pure socket code, no MPI and no torch, so it is unit-tested directly.
The rule: an interface the user named wins (``MPIDIST_IFNAME``, then
``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``, which torch itself honours);
a single-node job uses loopback; otherwise rank 0 asks the kernel which of its
own addresses it would use to route to each peer node and publishes that one.
Loopback is never published when ranks live on other hosts.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from typing import Callable, Mapping, Sequence

from ..errors import BootstrapError

__all__ = [
    "choose_master_addr",
    "interface_of",
    "interface_addresses",
    "match_interfaces",
    "route_source",
]

_SIOCGIFADDR = 0x8915


def interface_addresses() -> dict[str, str]:
    """Return ``{interface name: IPv4 address}`` for every interface that has one."""
    found: dict[str, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:  # interface down or without IPv4
                continue
            found[name] = socket.inet_ntoa(reply[20:24])
    return found


def _is_loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback


def match_interfaces(spec: str, names: Sequence[str]) -> list[str]:
    """Interfaces selected by a GLOO/NCCL-style spec, in ``names`` order.

    ``eth0,ib0`` selects by prefix (as NCCL does; an exact name is its own
    prefix), ``=eth0`` selects exact names only, ``^docker,lo`` excludes by
    prefix.
    """
    spec = spec.strip()
    if not spec:
        return []
    if spec.startswith("^"):
        banned = [p for p in spec[1:].split(",") if p]
        return [n for n in names if not any(n.startswith(p) for p in banned)]
    exact = spec.startswith("=")
    wanted = [p for p in spec.lstrip("=").split(",") if p]
    picked = []
    for pattern in wanted:
        for name in names:
            hit = name == pattern if exact else name.startswith(pattern)
            if hit and name not in picked:
                picked.append(name)
    return picked


def interface_of(addr: str | None, own: Mapping[str, str]) -> str | None:
    """Name of the interface in ``own`` that holds ``addr`` (None if none does)."""
    return next((name for name, mine in own.items() if mine == addr), None)


def route_source(peer: str) -> str | None:
    """Source address the kernel would use to reach ``peer``; None if unroutable.

    A UDP ``connect`` only consults the routing table: no packet is sent.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((peer, 9))
            addr: str = sock.getsockname()[0]
            return addr
    except OSError:
        return None


def choose_master_addr(
    own: Mapping[str, str],
    peers: Sequence[Mapping[str, str]],
    ifname_specs: Sequence[tuple[str, str]] = (),
    route: Callable[[str], str | None] = route_source,
) -> str:
    """Pick the address rank 0 publishes as MASTER_ADDR.

    Args:
        own: rank 0's ``{interface: IPv4}``.
        peers: the same for one rank on each *other* node (empty: single node).
        ifname_specs: ``(variable name, spec)`` pairs in precedence order, e.g.
            ``[("MPIDIST_IFNAME", "eth1")]``; the first non-empty one decides.
        route: source-address oracle (injectable for tests).

    Raises:
        BootstrapError: a named interface has no IPv4 address on rank 0, or
            rank 0 has no address that routes to the other nodes.
    """
    for variable, spec in ifname_specs:
        if not spec:
            continue
        names = match_interfaces(spec, list(own))
        usable = [own[n] for n in names if not (peers and _is_loopback(own[n]))]
        if usable:
            return usable[0]
        listing = ", ".join(f"{n}={a}" for n, a in own.items()) or "none"
        raise BootstrapError(
            f"{variable}={spec!r} selects no usable IPv4 interface on rank 0 "
            f"({socket.gethostname()}); its interfaces: {listing}. "
            f"Set {variable} to the interface that reaches the other nodes."
        )
    if not peers:
        return "127.0.0.1"
    mine = set(own.values())
    for peer in peers:
        for addr in peer.values():
            if _is_loopback(addr) or addr in mine:
                continue  # loopback, or an address every host has (docker0)
            source = route(addr)
            if source and source in mine and not _is_loopback(source):
                return source
    listing = ", ".join(f"{n}={a}" for n, a in own.items()) or "none"
    raise BootstrapError(
        f"rank 0 ({socket.gethostname()}) has no address that routes to the "
        f"other nodes (its interfaces: {listing}); set MPIDIST_IFNAME to the "
        "interface that reaches them."
    )
