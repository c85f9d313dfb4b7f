"""netif: which address rank 0 publishes."""

from __future__ import annotations

import pytest

from mpidist.bootstrap.netif import (
    choose_master_addr,
    interface_addresses,
    interface_of,
    match_interfaces,
    route_source,
)
from mpidist.errors import BootstrapError

OWN = {"lo": "127.0.0.1", "docker0": "172.17.0.1", "eth0": "10.9.0.1", "ib0": "10.77.0.1"}
PEER = {"lo": "127.0.0.1", "docker0": "172.17.0.1", "eth0": "10.9.0.2", "ib0": "10.77.0.2"}


def routes(table: dict[str, str]):
    return lambda peer: table.get(peer)


def test_single_node_uses_loopback():
    assert choose_master_addr(OWN, []) == "127.0.0.1"


def test_multi_node_uses_the_routed_source_never_loopback_or_shared_addresses():
    route = routes({"10.9.0.2": "10.9.0.1", "172.17.0.1": "127.0.0.1"})
    assert choose_master_addr(OWN, [PEER], route=route) == "10.9.0.1"


def test_named_interface_wins_in_precedence_order():
    specs = [("MPIDIST_IFNAME", ""), ("GLOO_SOCKET_IFNAME", "ib0"), ("NCCL_SOCKET_IFNAME", "eth")]
    assert choose_master_addr(OWN, [PEER], specs, route=routes({})) == "10.77.0.1"


def test_named_interface_missing_is_an_error_naming_the_variable():
    with pytest.raises(BootstrapError, match=r"MPIDIST_IFNAME='eth7' selects no usable"):
        choose_master_addr(OWN, [PEER], [("MPIDIST_IFNAME", "eth7")])


def test_no_route_is_an_error_naming_the_fix():
    with pytest.raises(BootstrapError, match="set MPIDIST_IFNAME"):
        choose_master_addr({"lo": "127.0.0.1"}, [PEER], route=routes({}))


@pytest.mark.parametrize(
    ("spec", "picked"),
    [("eth", ["eth0", "eth1"]), ("=eth0", ["eth0"]), ("^eth,lo", ["ib0"]),
     ("ib0,eth1", ["ib0", "eth1"]), ("", [])],
)
def test_match_interfaces_follows_nccl_syntax(spec, picked):
    assert match_interfaces(spec, ["lo", "eth0", "eth1", "ib0"]) == picked


def test_interface_of():
    assert interface_of("10.77.0.1", OWN) == "ib0"
    assert interface_of("10.1.1.1", OWN) is None
    assert interface_of(None, OWN) is None


def test_real_interfaces_and_routes():
    addrs = interface_addresses()
    assert addrs.get("lo") == "127.0.0.1"
    assert route_source("127.0.0.1") == "127.0.0.1"
