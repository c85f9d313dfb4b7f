"""Rank 0's terminal: a test's reports reach the file in one write, in order."""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace

from _pytest._io import TerminalWriter

from mpidist.report.output import RankOutput


class CountingRaw(io.RawIOBase):
    """An unbuffered file that records each write system call would make."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)


def terminal() -> tuple[CountingRaw, RankOutput, TerminalWriter]:
    """pytest's TerminalWriter over an unbuffered, write-through file (PYTHONUNBUFFERED),
    held by rank 0's output as the session holds the terminal reporter's."""
    raw = CountingRaw()
    file = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # type: ignore[arg-type]
    writer = TerminalWriter(file=file)
    output = RankOutput(0)
    output.hold_terminal_flushes(SimpleNamespace(_tw=writer))
    return raw, output, writer


def test_without_a_hold_every_write_goes_out_at_once() -> None:
    raw, _, writer = terminal()
    for letter in "..F.":
        writer.write(letter, flush=True)
    assert raw.writes == [b".", b".", b"F", b"."]


def test_a_tests_reports_are_one_write_in_order() -> None:
    raw, output, writer = terminal()
    with output.held_flushes():
        for letter in ",,,,.":
            writer.write(letter, flush=True)
        assert raw.writes == []
        with output.held_flushes():  # nested: the outer hold decides
            writer.write("s")
        assert raw.writes == []
    assert raw.writes == [b",,,,.s"]
    writer.write("x")
    assert raw.writes == [b",,,,.s", b"x"]


def test_another_threads_write_goes_out_at_once_after_what_was_held() -> None:
    raw, output, writer = terminal()
    with output.held_flushes():
        writer.write("..")
        other = threading.Thread(target=writer.write, args=("HANG\n",))
        other.start()
        other.join()
        assert b"".join(raw.writes) == b"..HANG\n"
        writer.write(".")
    assert b"".join(raw.writes) == b"..HANG\n."


def test_a_hold_is_released_when_logging_raises() -> None:
    raw, output, writer = terminal()
    try:
        with output.held_flushes():
            writer.write("E")
            raise RuntimeError("a reporter failed")
    except RuntimeError:
        pass
    assert raw.writes == [b"E"]
    writer.write(".")
    assert raw.writes == [b"E", b"."]
