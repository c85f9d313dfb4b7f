"""``output.drain``: before MPI_Abort, rank 0 waits until the launcher has read its report."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mpidist.report.output import drain


@contextmanager
def stdout_into_a_pipe() -> Iterator[int]:
    """fd 1 is the write end of a fresh pipe (as under a launcher); yields the read end."""
    read_fd, write_fd = os.pipe()
    saved = os.dup(1)
    os.dup2(write_fd, 1)
    os.close(write_fd)
    try:
        yield read_fd
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(read_fd)


def test_drain_returns_once_the_reader_has_everything() -> None:
    with stdout_into_a_pipe() as read_fd:
        os.write(1, b"the report\n" * 100)
        got = bytearray()

        def launcher() -> None:  # reads late, as a busy forwarder does
            time.sleep(0.2)
            while len(got) < 1100:
                got.extend(os.read(read_fd, 65536))

        reader = threading.Thread(target=launcher)
        reader.start()
        drain(limit=30.0)
        drained_at = len(got)
        reader.join()
    assert drained_at == 1100  # nothing was left in the pipe when drain returned


def test_drain_gives_up_after_its_limit_when_nobody_reads() -> None:
    with stdout_into_a_pipe():
        os.write(1, b"unread")
        start = time.monotonic()
        drain(limit=0.3)
        assert time.monotonic() - start >= 0.25


def test_drain_does_not_wait_on_a_file(tmp_path: Path) -> None:
    saved = os.dup(1)
    with open(tmp_path / "out", "wb") as out:
        os.dup2(out.fileno(), 1)
        try:
            os.write(1, b"to a file")
            start = time.monotonic()
            drain(limit=30.0)
            assert time.monotonic() - start < 10.0
        finally:
            os.dup2(saved, 1)
            os.close(saved)
