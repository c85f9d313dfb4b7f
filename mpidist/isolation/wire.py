"""Length-prefixed JSON between a rank and its template (a local socket pair).

JSON, not pickle: the template answers with pytest's own serialized reports
(``pytest_report_to_serializable``), which are plain data. The first message
may carry file descriptors (the rank's stdout and stderr).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

__all__ = ["MAX_MESSAGE", "receive", "send"]

_HEADER = struct.Struct("!Q")
MAX_MESSAGE = 1 << 30  #: a larger header is a broken stream, not a message


def send(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    """Send one message (and ``fds`` with its header)."""
    data = json.dumps(message).encode()
    header = _HEADER.pack(len(data))
    if fds:
        socket.send_fds(sock, [header], list(fds))
        sock.sendall(data)
    else:
        sock.sendall(header + data)


def receive(sock: socket.socket, with_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors sent with it; ``(None, [])`` at the end of
    the stream (the other process is gone)."""
    fds: list[int] = []
    header = b""
    while len(header) < _HEADER.size:
        if with_fds and not header:
            chunk, fds, _, _ = socket.recv_fds(sock, _HEADER.size, with_fds)
        else:
            chunk = sock.recv(_HEADER.size - len(header))
        if not chunk:
            return None, fds
        header += chunk
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        return None, fds
    view = bytearray(size)
    got = 0
    while got < size:
        count = sock.recv_into(memoryview(view)[got:])
        if not count:
            return None, fds
        got += count
    return json.loads(view), fds
