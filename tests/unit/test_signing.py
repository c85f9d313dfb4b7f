"""Signed values on mpidist's channel (a real one, on loopback): what a stranger
writes is refused, and the channel survives strangers."""

from __future__ import annotations

import json
import pickle
import socket
from pathlib import Path

import pytest

from mpidist.bootstrap import channel as channel_module
from mpidist.bootstrap.channel import (
    MAX_FRAME,
    ChannelClient,
    ChannelError,
    ChannelFull,
    ChannelServer,
)
from mpidist.bootstrap.signing import MAX_VALUE, Rejected, SealedStore, Signer
from mpidist.bootstrap.world import World


class Boom:
    """Unpickling this would create a file: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def store():
    server = ChannelServer("127.0.0.1")
    client = ChannelClient("127.0.0.1", server.port)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def test_channel_basics_and_strangers(store):
    client, server = store
    client.set("a", "1")
    assert client.get("a") == b"1" and client.get("b") is None
    assert client.check(["a"]) and not client.check(["a", "b"]) and client.num_keys() == 1
    for garbage in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x04{not"):
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(garbage)  # an oversized frame, then malformed JSON: dropped
            raw.settimeout(5)
            assert raw.recv(16) == b""
    with pytest.raises(ChannelError):  # the service answers only what it knows
        client._call({"op": "exec", "k": "x"})
    other = ChannelClient("127.0.0.1", server.port)  # the service itself lives on
    assert other.get("a") == b"1"
    other.close()
    assert MAX_FRAME > MAX_VALUE


def test_seal_and_open_round_trip_and_bind_the_key():
    signer = Signer(b"k" * 32)
    sealed = signer.seal("a/b", "timeout")
    assert signer.open("a/b", sealed.encode()) == "timeout"
    with pytest.raises(Rejected, match="bad signature"):
        signer.open("a/c", sealed.encode())  # the same value under another key
    with pytest.raises(Rejected, match="bad signature"):
        Signer(b"x" * 32).open("a/b", sealed.encode())  # another job's secret


@pytest.mark.parametrize("raw, why", [
    (b"{not json", "not JSON"),
    (json.dumps({"v": "timeout"}).encode(), "not a sealed value"),
    (json.dumps({"v": "timeout", "mac": "00" * 32}).encode(), "bad signature"),
    (b" " * (MAX_VALUE + 1), "limit"),
])
def test_what_a_stranger_writes_is_rejected(raw, why):
    with pytest.raises(Rejected, match=why):
        Signer(b"k" * 32).open("mpidist/wd/dump/1", raw)


def test_sealed_store_remembers_rejections_and_never_raises(store):
    client, _server = store
    sealed = SealedStore(client, Signer(b"k" * 32))
    sealed.put("ok", "value")
    assert sealed.get("ok") == "value"
    client.set("forged", "{not json")
    assert sealed.get("forged") is None and sealed.get("absent") is None
    assert set(sealed.rejected) == {"forged"}
    with pytest.raises(ValueError, match="limit"):
        sealed.put("big", "x" * MAX_VALUE)
    assert not client.check(["big"])
    assert sealed.size() == 2


def test_watchdog_refuses_forged_answers_with_a_pickle_inside(store, tmp_path):
    from mpidist.safety.watchdog import Watchdog, _Test

    client, server = store
    world = World(0, 3, 0, 3, 0, 1, ("h",) * 3, (0,) * 3, "127.0.0.1", 0)
    channel = ChannelClient("127.0.0.1", server.port)
    dog = Watchdog(world, 1.0, channel, Signer(b"k" * 32))
    try:
        marker = tmp_path / "pwned"
        evil = pickle.dumps(Boom(marker)).hex()
        client.set("mpidist/wd/stack/1/1", json.dumps(
            {"status": "in the test", "where": "x", "stacks": "", "payload": evil}))
        client.set("mpidist/wd/stack/1/2", pickle.dumps(Boom(marker)).decode("latin-1"))
        dog.store.put("mpidist/wd/stack/1/0", json.dumps(
            {"status": "finished the test", "where": "", "stacks": "", "payload": None}))
        test = _Test(1, None, 5.0, 0.0, (0, 1, 2))
        hang = dog.collect(test, "timeout", wait=0.2)
        assert sorted(hang.states) == [0] and hang.missing == [1, 2]
        assert {"mpidist/wd/stack/1/1", "mpidist/wd/stack/1/2"} <= set(dog.store.rejected)
        assert not marker.exists()
    finally:
        dog.close()
        channel.close()


def test_a_full_channel_refuses_new_keys_and_keeps_working(store, monkeypatch):
    client, _server = store
    monkeypatch.setattr(channel_module, "MAX_KEYS", 2)
    client.set("a", "1")
    client.set("b", "2")
    with pytest.raises(ChannelFull):
        client.set("c", "3")
    client.set("a", "again")  # an existing key may still change
    assert client.get("a") == b"again" and client.num_keys() == 2
