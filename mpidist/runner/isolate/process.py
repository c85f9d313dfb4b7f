"""What the isolation template does first: let go of the connections it inherited.

(Dying with its parent is ``safety.signals.die_with``, shared with the keeper.)
"""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["drop_inherited"]


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
