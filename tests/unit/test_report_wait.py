"""``keeper.await_report``: how long a dead rank's keeper, or a rank a launcher's
SIGTERM reached, holds on before it exits (and the launcher ends the job).

Real channels on loopback; a "silent" rank 0 is a listening socket nobody accepts
on: the connection is made (the kernel's backlog), no question is ever answered --
what a rank 0 inside ``MPI_Abort`` looks like from outside (it holds the GIL, so its
channel thread never runs). Seen in CI: a rank waited the connection's 30-s timeout
for it, and the job's output stayed open that long after its report was out.
"""

from __future__ import annotations

import socket
import time

import pytest

from mpidist.bootstrap.channel import ChannelClient, ChannelServer
from mpidist.bootstrap.signing import SealedStore, Signer
from mpidist.safety import keeper


@pytest.fixture
def signer() -> Signer:
    return Signer(b"k" * 32)


def _waited(store: SealedStore, limit: float) -> float:
    start = time.monotonic()
    try:
        keeper.await_report(store, limit)
    finally:
        store.store.close()  # type: ignore[attr-defined]
    return time.monotonic() - start


def test_returns_once_rank_0_has_reported(signer):
    server = ChannelServer("127.0.0.1")
    try:
        store = SealedStore(ChannelClient("127.0.0.1", server.port), signer)
        store.put(keeper.REPORTED, "1")
        assert _waited(store, limit=60.0) < 30.0
    finally:
        server.close()


def test_waits_for_a_rank_0_that_answers_but_has_not_reported(signer):
    server = ChannelServer("127.0.0.1")
    try:
        store = SealedStore(ChannelClient("127.0.0.1", server.port), signer)
        assert _waited(store, limit=1.0) >= 1.0
    finally:
        server.close()


def test_returns_when_rank_0_is_gone(signer):
    server = ChannelServer("127.0.0.1")
    store = SealedStore(ChannelClient("127.0.0.1", server.port), signer)
    server.close()
    assert _waited(store, limit=60.0) < 30.0


def test_a_silent_rank_0_is_given_up_on_after_one_questions_patience(signer, monkeypatch):
    monkeypatch.setattr(keeper, "_PATIENCE", 0.5)
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        client = ChannelClient("127.0.0.1", silent.getsockname()[1])  # 30-s timeout
        store = SealedStore(client, signer)
        assert _waited(store, limit=60.0) < 10.0
