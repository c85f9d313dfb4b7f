"""Signed store values, on a real TCPStore: what a stranger writes is refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from mpidist.bootstrap.signing import MAX_VALUE, Rejected, SealedStore, Signer
from mpidist.bootstrap.world import World

torch_dist = pytest.importorskip("torch.distributed")


class Boom:
    """Unpickling this would create a file: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def store():
    server = torch_dist.TCPStore("127.0.0.1", 0, 1, True, wait_for_workers=False)
    return torch_dist.TCPStore("127.0.0.1", server.port, 1, False), server


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


def test_watchdog_refuses_forged_answers_with_a_pickle_inside(store, tmp_path):
    from mpidist.safety.watchdog import Watchdog, _Test

    client, server = store
    world = World(0, 3, 0, 3, 0, 1, ("h",) * 3, (0,) * 3, "127.0.0.1", server.port)
    dog = Watchdog(world, 1.0, Signer(b"k" * 32))
    try:
        marker = tmp_path / "pwned"
        evil = pickle.dumps(Boom(marker)).hex()
        client.set("mpidist/wd/stack/1/1", json.dumps(
            {"status": "in the test", "where": "x", "stacks": "", "payload": evil}))
        client.set("mpidist/wd/stack/1/2", pickle.dumps(Boom(marker)))
        dog.store.put("mpidist/wd/stack/1/0", json.dumps(
            {"status": "finished the test", "where": "", "stacks": "", "payload": None}))
        test = _Test(1, None, 5.0, 0.0, (0, 1, 2))
        hang = dog.collect(test, "timeout", wait=0.2)
        assert sorted(hang.states) == [0] and hang.missing == [1, 2]
        assert {"mpidist/wd/stack/1/1", "mpidist/wd/stack/1/2"} <= set(dog.store.rejected)
        assert not marker.exists()
    finally:
        dog.close()
