"""Signed values in the job's TCPStore: nothing read from the network is trusted.

torch's TCPStore has no authentication and rank 0's listens on every
interface, so anyone who can reach a compute node can write any key. Every
value mpidist writes there is therefore sealed with HMAC-SHA256 over the key
and the value, under a per-job secret that rank 0 draws at bootstrap and
sends to the other ranks over MPI only (never the environment, a file, argv
or the store). A value that does not verify -- forged, corrupt, too large,
not JSON -- is ``Rejected``: the reader ignores it and rank 0 names the key
in a warning. What is read is parsed as JSON, never loaded as Python objects.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["MAX_VALUE", "KeyValueClient", "Rejected", "SealedStore", "Signer", "job_signer",
           "set_job_signer"]

#: the largest value mpidist writes or reads (a failing rank's reports and stacks); torch's
#: TCPStore itself drops a client that sends more than 8 MiB
MAX_VALUE = 4 * 2**20


class Rejected(ValueError):
    """A store value that mpidist did not write (or that was damaged on the way)."""


class Signer:
    """Seals and opens the values of one job.

    Args:
        key: the job's secret (32 random bytes from rank 0).
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_job(cls, comm: MPI.Comm) -> Signer:
        """Collective: rank 0 draws the secret, every rank gets it over MPI."""
        return cls(comm.bcast(secrets.token_bytes(32) if comm.Get_rank() == 0 else None,
                              root=0))

    def job_id(self) -> str:
        """A name for this job that every rank knows and no other job shares (a digest of
        the secret, which does not reveal it): for paths the ranks agree on without
        talking, which a stale file of an earlier job with the same port must not match."""
        return hashlib.sha256(b"mpidist-job:" + self._key).hexdigest()[:12]

    def secret(self) -> bytes:
        """The job's secret, for a rank's keeper over its private pipe (safety.keeper)."""
        return self._key

    def _mac(self, name: str, value: str) -> str:
        message = name.encode() + b"\0" + value.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def seal(self, name: str, value: str) -> str:
        """The value to store at key ``name``."""
        return json.dumps({"v": value, "mac": self._mac(name, value)})

    def open(self, name: str, raw: bytes) -> str:
        """The value sealed at ``name``.

        Raises:
            Rejected: too large, not the sealed JSON, or a MAC that does not verify.
        """
        if len(raw) > MAX_VALUE:
            raise Rejected(f"{len(raw)} bytes, over the {MAX_VALUE}-byte limit")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Rejected("not JSON") from None
        if (not isinstance(data, dict) or not isinstance(data.get("v"), str)
                or not isinstance(data.get("mac"), str)):
            raise Rejected("not a sealed value")
        if not hmac.compare_digest(data["mac"], self._mac(name, data["v"])):
            raise Rejected("bad signature (not written by this job)")
        return str(data["v"])


_job: Signer | None = None


def set_job_signer(signer: Signer | None) -> None:
    """Install (or clear) this process's job signer; ``runtime.init`` does."""
    global _job
    _job = signer


def job_signer() -> Signer | None:
    """The job's signer, for code below the runtime (the mpi4py backend); None when
    mpidist did not bootstrap this process."""
    return _job


class KeyValueClient(Protocol):
    """What ``SealedStore`` needs of a store client (``channel.ChannelClient`` is one;
    named here so that signing need not import the channel)."""

    def set(self, key: str, value: str) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def check(self, keys: list[str]) -> bool: ...
    def num_keys(self) -> int: ...
    def settimeout(self, seconds: float) -> None: ...


class SealedStore:
    """A store client through which every value mpidist writes is sealed and every
    value it reads is verified. A rejected key is remembered (first reason), for the
    warning rank 0 prints; a read never raises for what a stranger wrote there.

    Args:
        store: the client it wraps.
        signer: the job's signer.
    """

    def __init__(self, store: KeyValueClient, signer: Signer) -> None:
        self.store = store
        self.signer = signer
        self.rejected: dict[str, str] = {}

    def put(self, key: str, value: str) -> None:
        """Seal and store ``value``.

        Raises:
            ValueError: the sealed value is over ``MAX_VALUE`` (nothing is written).
        """
        sealed = self.signer.seal(key, value)
        if len(sealed) > MAX_VALUE:
            raise ValueError(f"{len(sealed)} bytes for {key}, over the {MAX_VALUE}-byte limit")
        self.store.set(key, sealed)

    def has(self, key: str) -> bool:
        return self.store.check([key])

    def get(self, key: str) -> str | None:
        """The verified value at ``key``; None if absent or rejected."""
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            return self.signer.open(key, raw)
        except Rejected as why:
            self.rejected.setdefault(key, str(why))
            return None

    def size(self) -> int:
        """How many keys the store holds (a change says: something was written)."""
        return self.store.num_keys()

    def settimeout(self, seconds: float) -> None:
        """How long each later question may wait for its answer."""
        self.store.settimeout(seconds)
