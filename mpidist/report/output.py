"""Where ranks other than 0 write: nowhere, a per-rank log, or prefixed lines.

One terminal report means ranks > 0 must be silent, including output that
bypasses Python (C++ warnings from gloo/NCCL, ``-s``). So their file
descriptors 1 and 2 are redirected at the OS level, before pytest starts
capturing: to /dev/null by default, to ``<log dir>/rank-N.log`` with
``--mpi-log-dir``, and with ``--mpi-rank-output`` through a pipe whose reader
thread copies each line to the real terminal as ``[rank N] line`` (and to the
log, if any).
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import sys
import termios
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, TextIO

import pytest

from .. import runtime
from ..bootstrap import settings
from ..bootstrap.settings import setting
from ..errors import MpidistError

__all__ = ["OUTPUT", "RankOutput", "drain", "start"]


class _HeldFlushes:
    """Rank 0's terminal file, which holds what a test's reports write until they
    are all logged, then writes it at once.

    pytest's terminal reporter flushes after every report, a subtest's too, and
    with ``PYTHONUNBUFFERED`` (common in containers and batch scripts) every write
    is a system call. Under a launcher rank 0's stdout is a pseudo-terminal (Open
    MPI) or a pipe, so each one wakes a kernel worker or the launcher's forwarder
    on rank 0's core -- and every other rank waits for rank 0 at the next test.
    Measured on the real-shaped suite (docs/performance.md): 7,453 writes and
    7,085 kernel wake-ups in one 2-s run, each preempting rank 0. Held, a test's
    reports cost one write. Only the holding thread's writes wait: a hang report
    from the watchdog's thread goes out at once, after what was held.
    """

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self._held: list[str] | None = None
        self._holder = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        held = self._held
        if held is not None and threading.get_ident() == self._holder:
            held.append(text)
            return len(text)
        with self._lock:
            self._write_held()
            return self.file.write(text)

    def flush(self) -> None:
        if self._held is None or threading.get_ident() != self._holder:
            with self._lock:
                self._write_held()
            self.file.flush()

    def hold(self) -> bool:
        """Start holding this thread's writes; False if already holding."""
        if self._held is not None:
            return False
        self._holder, self._held = threading.get_ident(), []
        return True

    def release(self) -> None:
        """Write what was held, in one call, and flush."""
        with self._lock:
            self._write_held()
            self._held = None
        self.file.flush()

    def _write_held(self) -> None:
        held = self._held
        if held:  # the holder may append meanwhile (from another thread): take a prefix
            count = len(held)
            text = "".join(held[:count])
            del held[:count]
            self.file.write(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...
        return getattr(self.file, name)


class RankOutput:
    """Owns the redirection of this rank's stdout/stderr; ``close`` undoes it."""

    def __init__(self, rank: int, log_dir: str = "", show: bool = False) -> None:
        self.rank = rank
        self.log: BinaryIO | None = None
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.log = open(Path(log_dir) / f"rank-{rank}.log", "wb", buffering=0)  # noqa: SIM115
        self._saved = (-1, -1)
        self._thread: threading.Thread | None = None
        self._terminal: _HeldFlushes | None = None
        if rank == 0:
            return  # rank 0 owns the terminal
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        if show:
            read_fd, write_fd = os.pipe()
            self._thread = threading.Thread(
                target=self._pump, args=(read_fd, self._saved[0]),
                name="mpidist-rank-output", daemon=True,
            )
            self._thread.start()
            target = write_fd
        elif self.log is not None:
            target = self.log.fileno()
        else:
            target = os.open(os.devnull, os.O_WRONLY)
        os.dup2(target, 1)
        os.dup2(target, 2)
        if target != getattr(self.log, "fileno", lambda: -2)():
            os.close(target)

    def _pump(self, read_fd: int, terminal_fd: int) -> None:
        prefix = f"[rank {self.rank}] ".encode()
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._emit(terminal_fd, prefix + line + b"\n")
            if pending:
                self._emit(terminal_fd, prefix + pending + b"\n")

    def _emit(self, terminal_fd: int, data: bytes) -> None:
        os.write(terminal_fd, data)
        if self.log is not None:
            self.log.write(data)

    def hold_terminal_flushes(self, reporter: Any) -> None:
        """Rank 0: let ``held_flushes`` hold the flushes of pytest's terminal
        ``reporter`` (its writer's file, as pytest-xdist reaches ``_tw``)."""
        writer = getattr(reporter, "_tw", None)
        file = getattr(writer, "_file", None)
        if file is not None and not isinstance(file, _HeldFlushes):
            self._terminal = writer._file = _HeldFlushes(file)  # type: ignore[union-attr]

    @contextmanager
    def held_flushes(self) -> Iterator[None]:
        """While a test's reports are logged: what they write goes out at once, at the end."""
        terminal = self._terminal
        if terminal is None or not terminal.hold():
            yield
            return
        try:
            yield
        finally:
            terminal.release()

    def release_terminal(self) -> None:
        """Write what ``held_flushes`` holds now (a thread that will never leave it)."""
        if self._terminal is not None:
            self._terminal.release()

    @property
    def launcher_stderr(self) -> int:
        """The stderr the launcher gave this rank (crash tracebacks go there)."""
        return self._saved[1] if self._saved[1] >= 0 else 2

    def write_line(self, text: str) -> None:
        """A line of mpidist's own per-rank record (results), to the log or stream."""
        if self.log is not None and self._thread is None:
            self.log.write(text.encode() + b"\n")
        elif self.rank != 0 and self._thread is not None:
            os.write(1, text.encode() + b"\n")

    @property
    def recording(self) -> bool:
        """Whether per-rank lines go anywhere."""
        return self.log is not None or self._thread is not None

    def close(self) -> None:
        """Restore fds 1 and 2; let the prefix thread drain its pipe."""
        if self._saved[0] >= 0:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            if self._thread is not None:
                self._thread.join(timeout=5)
            os.close(self._saved[0])
            os.close(self._saved[1])
            self._saved = (-1, -1)
        if self.log is not None:
            self.log.close()
            self.log = None


#: this rank's output redirection, made before pytest captures anything
OUTPUT = pytest.StashKey[RankOutput]()


def start(config: pytest.Config, namespace: Any) -> RankOutput:
    """Early (before capture): attach to MPI and redirect the output of ranks > 0.

    Raises:
        pytest.UsageError: no MPI, an MPI that is not the launcher's, or a bad
            output setting -- said once, by rank 0 (or the launcher's task 0).
    """
    if OUTPUT in config.stash:
        return config.stash[OUTPUT]
    try:
        world = runtime.attach()
    except MpidistError as exc:
        raise pytest.UsageError(str(exc)) from None
    task = settings.launcher_task()
    if world.size == 1 and task is not None:
        variable, rank, size = task
        config.stash[OUTPUT] = RankOutput(rank)  # only the launcher's task 0 speaks
        raise pytest.UsageError(
            f"the launcher started {size} tasks ({variable}={size}) but MPI sees a world "
            "of 1: mpi4py's MPI is not the launcher's (use srun --mpi=pmix, or the mpirun "
            "of the MPI that mpi4py loads)")
    try:
        log_dir = setting(config, settings.LOG_DIR, namespace)
        show = setting(config, settings.RANK_OUTPUT, namespace)
    except pytest.UsageError:
        config.stash[OUTPUT] = RankOutput(world.rank)  # say it once, from rank 0
        raise
    config.stash[OUTPUT] = RankOutput(world.rank, log_dir, show)
    return config.stash[OUTPUT]


def drain(limit: float = 2.0) -> None:
    """Flush, then wait (at most ``limit`` s) until the launcher has read what this
    process wrote to its stdout and stderr pipes.

    Before ``MPI_Abort`` or a hard exit: a launcher tears the job down on either
    and drops what its forwarder had not read yet -- rank 0's report, cut after
    its first lines (seen under MPICH). ``FIONREAD`` counts the bytes still in a
    pipe from either end; other kinds of output (a file, a terminal) need no wait.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    deadline = time.monotonic() + limit
    for fd in (1, 2):
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                continue
            while time.monotonic() < deadline:
                unread = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
                if unread <= 0:
                    break
                time.sleep(0.01)
        except OSError:
            continue
