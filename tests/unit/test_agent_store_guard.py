"""bootstrap.store.guard_env_rendezvous: TORCHELASTIC_USE_AGENT_STORE holds for mpidist's
store only; ``env://`` on a port the code picked itself hosts its store (no MPI here: one
rank, world size 1)."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest

dist = pytest.importorskip("torch.distributed")

from mpidist.bootstrap import store  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def agent_env(monkeypatch):
    """mpidist's exported store on one port, the agent variable set, as under --with-mpi."""
    served = str(_free_port())
    monkeypatch.setattr(store, "_SERVED", {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": served})
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", served)
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    store.guard_env_rendezvous()
    return served


def test_a_port_of_its_own_gets_a_hosted_store(agent_env, monkeypatch):
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    rdzv = dist.rendezvous("env://?rank=0&world_size=1", timeout=timedelta(seconds=5))
    tcp, rank, size = next(rdzv)
    tcp.set("k", "v")
    assert (tcp.get("k"), rank, size) == (b"v", 0, 1)
    assert os.environ["TORCHELASTIC_USE_AGENT_STORE"] == "True"  # put back at once


def test_mpidist_port_still_means_the_agent_store(agent_env):
    # nothing listens on mpidist's port here: as torchrun's client, rank 0 waits and fails
    rdzv = dist.rendezvous("env://?rank=0&world_size=1", timeout=timedelta(seconds=1))
    with pytest.raises(dist.DistNetworkError, match="client socket has timed out"):
        next(rdzv)


def test_the_guard_wraps_once(agent_env):
    import importlib

    handlers = importlib.import_module("torch.distributed.rendezvous")._rendezvous_handlers
    guarded = handlers["env"]
    store.guard_env_rendezvous()
    assert handlers["env"] is guarded
