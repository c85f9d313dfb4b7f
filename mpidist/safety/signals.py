"""React to SIGTERM even while the main thread is stuck inside C code.

A Python signal handler runs only when the main thread returns to the
interpreter, which a rank blocked in a gloo or MPI call never does. But
CPython's C-level handler also writes the signal number to the fd given to
``signal.set_wakeup_fd`` -- from whichever thread the kernel picked -- so a
thread blocked reading the other end of that pipe learns of the signal at
once. Launchers send SIGTERM before SIGKILL (mpirun when another rank died
or the job is aborted; Slurm at its time limit or on scancel).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import threading
from typing import Callable

__all__ = ["HARD_LIMIT", "death_signal", "die_with", "on_sigterm"]

_PR_SET_PDEATHSIG = 1

HARD_LIMIT = 60.0  # seconds from SIGTERM to the end of the process, report or not


def on_sigterm(callback: Callable[[], None]) -> None:
    """Call ``callback`` on a dedicated thread when SIGTERM arrives (main thread only).

    The callback is expected to end the process.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # C handler + wakeup fd
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def wait() -> None:
        while True:
            data = os.read(read_fd, 64)
            if not data or signal.SIGTERM in data:
                # A hard end that needs no GIL (faulthandler's C thread): the launcher's
                # SIGKILL may never come, since it reaches the keeper (safety.keeper).
                faulthandler.dump_traceback_later(HARD_LIMIT, exit=True)
                callback()
                return

    threading.Thread(target=wait, name="mpidist-sigterm", daemon=True).start()


def die_with(parent: int, signum: int, exit_code: int) -> None:
    """Ask the kernel for ``signum`` when ``parent`` (the process that just forked this
    one) dies, and exit with ``exit_code`` at once if it died before the request took
    effect. For forks that must not outlive their parent: the keeper's child, the
    isolation template and its test children."""
    death_signal(signum)
    if os.getppid() != parent:
        os._exit(exit_code)


def death_signal(signum: int) -> None:
    """Ask the kernel for ``signum`` when this process's parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
