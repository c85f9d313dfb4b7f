"""What a process forked for isolation does first: die with its parent, and let go of
the connections it inherited.

Kept apart so that the template and the test's child (which import each other's
work only one way) share it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat

__all__ = ["die_with", "drop_inherited"]

_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """SIGKILL when ``parent`` dies (and at once if it already has)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL),
                                                0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def drop_inherited(keep: int) -> None:
    """Point every inherited socket and pipe above stderr at /dev/null: the launcher
    must see the rank's connections close when the rank does. (``dup2``, not
    ``close``: a Python object that owns one may close its number later.)"""
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in (keep, null):
            continue
        with contextlib.suppress(OSError):
            mode = os.fstat(fd).st_mode
            if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
                os.dup2(null, fd, inheritable=False)
    os.close(null)
