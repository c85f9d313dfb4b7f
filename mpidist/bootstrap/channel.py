"""mpidist's own side channel: a small key-value service on rank 0 for the watchdog.

The watchdog must reach the other ranks while the communicator is blocked, so
it talks over TCP, not MPI. torch's TCPStore would do, but it costs every rank
an ``import torch`` (~2 s of CPU here) even for suites that never touch torch,
and it listens on every interface. This service is the few operations the
watchdog needs (set, get, check, count keys), in the standard library, bound
to the one address rank 0 publishes. Frames are a 4-byte length and a JSON
object; a frame over the limit, a full table, or anything malformed closes
that connection (a stranger's) without touching the others. The values are
sealed by the caller (``signing``): this service stores strings and trusts
nothing.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import threading
from typing import Any

from .signing import MAX_VALUE

__all__ = ["ChannelClient", "ChannelError", "ChannelFull", "ChannelServer"]

_HEADER = struct.Struct("!I")
_FULL = "the channel is full"
MAX_FRAME = MAX_VALUE + 4096
MAX_KEYS = 1 << 20  # a failing test at 128 ranks writes ~130 keys: thousands of failures fit
MAX_BYTES = 256 * 2**20
MAX_CLIENTS = 4096


class ChannelError(OSError):
    """The channel refused a request, or its connection is gone."""


class ChannelFull(ChannelError):
    """The table is at its limit: this write was refused, the channel still works."""


class ChannelServer:
    """The service, on a daemon thread of rank 0.

    Args:
        host: the address to bind (rank 0's published address).
    """

    def __init__(self, host: str) -> None:
        self._data: dict[str, str] = {}
        self._bytes = 0
        self._sock = socket.create_server((host, 0), backlog=128)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._wake, self._waker = socket.socketpair()  # close() interrupts select()
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._buffers: dict[socket.socket, bytearray] = {}
        self.served = 0  # requests answered (benchmarks/bench_fanin.py reads it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="mpidist-channel",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._waker.send(b"x")
        self._thread.join(timeout=2)
        for conn in list(self._buffers):
            conn.close()
        for sock in (self._sock, self._wake, self._waker):
            sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select():
                if key.fileobj is self._wake:
                    return
                if key.fileobj is self._sock:
                    self._accept()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        if len(self._buffers) >= MAX_CLIENTS:
            conn.close()
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffers[conn] = bytearray()
        self._selector.register(conn, selectors.EVENT_READ)

    def _drop(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        self._buffers.pop(conn, None)
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        try:
            chunk = conn.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        buffer = self._buffers[conn]
        buffer += chunk
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if size > MAX_FRAME:
                self._drop(conn)
                return
            if len(buffer) < _HEADER.size + size:
                return
            frame = bytes(buffer[_HEADER.size:_HEADER.size + size])
            del buffer[:_HEADER.size + size]
            reply = self._answer(frame)
            self.served += 1
            if reply is None:
                self._drop(conn)
                return
            try:  # a client that does not read its replies is dropped, not waited for
                conn.settimeout(5.0)
                conn.sendall(_frame(reply))
                conn.setblocking(False)
            except OSError:
                self._drop(conn)
                return

    def _answer(self, frame: bytes) -> dict[str, Any] | None:
        """The reply to one request; None: malformed, drop the connection."""
        try:
            request = json.loads(frame)
            op, key = request["op"], request.get("k", "")
            if not isinstance(op, str) or not isinstance(key, str):
                return None
        except (ValueError, KeyError, TypeError):
            return None
        if op == "set":
            value = request.get("v")
            if not isinstance(value, str):
                return None
            grow = len(value) - len(self._data.get(key, ""))
            if (key not in self._data and len(self._data) >= MAX_KEYS) or \
                    self._bytes + grow > MAX_BYTES:
                return {"ok": False, "error": _FULL}
            self._data[key] = value
            self._bytes += grow
            return {"ok": True}
        if op == "get":
            return {"ok": True, "v": self._data.get(key)}
        if op == "check":
            keys = request.get("keys")
            if not isinstance(keys, list):
                return None
            return {"ok": True, "v": all(k in self._data for k in keys)}
        if op == "count":
            return {"ok": True, "v": len(self._data)}
        return None


def _frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode()
    return _HEADER.pack(len(body)) + body


class ChannelClient:
    """One connection to the service; safe to share between threads.

    Raises:
        ChannelError: on connect, and later when the service is gone.
    """

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ChannelError(f"cannot reach mpidist's channel at {host}:{port} ({exc})") \
                from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lock = threading.Lock()

    def _call(self, request: dict[str, Any]) -> Any:
        with self._lock:
            try:
                self._sock.sendall(_frame(request))
                size = _HEADER.unpack(self._recv(_HEADER.size))[0]
                if size > MAX_FRAME:
                    raise ChannelError("oversized reply")
                reply = json.loads(self._recv(size))
            except (OSError, ValueError) as exc:
                raise ChannelError(f"mpidist's channel: {exc}") from None
        if not reply.get("ok"):
            error = str(reply.get("error", "refused"))
            raise (ChannelFull if error == _FULL else ChannelError)(error)
        return reply.get("v")

    def _recv(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise ChannelError("the channel closed the connection (rank 0 is gone)")
            data += chunk
        return bytes(data)

    def set(self, key: str, value: str) -> None:
        self._call({"op": "set", "k": key, "v": value})

    def get(self, key: str) -> bytes | None:
        value = self._call({"op": "get", "k": key})
        return None if value is None else str(value).encode()

    def check(self, keys: list[str]) -> bool:
        return bool(self._call({"op": "check", "keys": keys}))

    def num_keys(self) -> int:
        return int(self._call({"op": "count"}))

    def settimeout(self, seconds: float) -> None:
        """How long each later call may wait for its answer."""
        self._sock.settimeout(seconds)

    def close(self) -> None:
        self._sock.close()
