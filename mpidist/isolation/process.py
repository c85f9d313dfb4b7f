"""What the isolation template does to itself: let go of the connections it inherited
(first), and back its memory with huge pages (once collected, at its 32nd child).

(Dying with its parent is ``safety.signals.die_with``, shared with the keeper.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat

__all__ = ["collapse_to_huge_pages", "collapsible", "drop_inherited", "huge_page_mib"]

_MADV_COLLAPSE = 25  #: Linux 6.1's madvise(2) advice: make this range huge pages now
_HUGE = 2 << 20


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


def collapse_to_huge_pages() -> int:
    """Back the process's private anonymous memory (the heap and the anonymous mappings:
    torch's and Python's objects) with 2 MiB pages; the MiB that then are. Why: every
    fork copies one page-table entry per 4 KiB page present (a torch process holds
    about 230 MB) and every exit drops them, where a huge page is one entry; a child's
    write still copies only the 4 KiB it touches (the kernel splits the huge page in
    the child). Measured on a torch template, fork + gloo group + exit: 23 ms of CPU
    a child with 4 KiB pages, 13-16 ms collapsed. Best effort: a kernel before 6.1,
    THP off, or no memory to spare leaves the pages as they were (0)."""
    if not collapsible():
        return 0
    try:
        madvise = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if fields[1] != "rw-p" or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        start = -(-start // _HUGE) * _HUGE
        end = end // _HUGE * _HUGE
        if end > start:
            madvise(start, end - start, _MADV_COLLAPSE)
    return huge_page_mib()


def collapsible() -> bool:
    """Whether this kernel can collapse memory into huge pages on request: Linux 6.1
    or later (``MADV_COLLAPSE``) with transparent huge pages not ``never``."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as enabled:
            if "[never]" in enabled.read():
                return False
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except (OSError, ValueError):
        return False
    return (major, minor) >= (6, 1)


def huge_page_mib(pid: int | str = "self") -> int:
    """The MiB of a process's anonymous memory in huge pages (0 if unknown)."""
    with contextlib.suppress(OSError, IndexError, ValueError), \
            open(f"/proc/{pid}/smaps_rollup") as rollup:
        return int(rollup.read().split("AnonHugePages:")[1].split()[0]) // 1024
    return 0
