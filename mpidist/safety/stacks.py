"""Where a rank is: the innermost call seen from user code, and every thread's stack.

What a hang report shows for each rank; the runner's and the libraries' own
frames above a test say nothing about where it hangs, so both start at user code.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import traceback
from types import FrameType

__all__ = ["thread_stacks", "where"]

_LIBRARY_DIRS = tuple(  # mpidist's whole package: a checkout installed -e is no user code
    os.path.realpath(p) + os.sep
    for p in {*(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")),
              os.path.dirname(os.path.dirname(__file__))}
)


def where(frame: FrameType | None) -> str:
    """``in barrier at test_x.py:12: dist.barrier()``: the innermost call, seen from user code."""
    if frame is None:
        return "no Python frame"
    stack = traceback.extract_stack(frame)
    inner = stack[-1]
    user = next((f for f in reversed(stack) if not _is_library(f.filename)), None)
    name = next((f.name for f in reversed(stack) if f.name not in ("wrapper", "inner")),
                inner.name)
    if user is None:
        return f"in {name} ({inner.filename}:{inner.lineno})"
    text = f"in {name} at {os.path.relpath(user.filename)}:{user.lineno}"
    return f"{text}: {user.line}" if user.line else text


def _is_library(filename: str) -> bool:
    return filename.startswith("<") or os.path.realpath(filename).startswith(_LIBRARY_DIRS)


def thread_stacks(skip: int | None, own: bool = False) -> str:
    """Every thread's stack, each starting at its first frame of user code
    (the runner's own frames above a test say nothing about where it hangs);
    mpidist's own threads (named ``mpidist-*``: the watchdog, the channel, the
    signal waiter) only with ``own``: they are the same on every rank of every hang."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        if ident == skip or (not own and str(names.get(ident, "")).startswith("mpidist-")):
            continue
        stack = traceback.extract_stack(frame)
        first = next((i for i, f in enumerate(stack) if not _is_library(f.filename)), None)
        shown = stack[first:] if first is not None else stack[-8:]
        parts.append(f"Thread {names.get(ident, ident)}:\n"
                     + "".join(traceback.format_list(shown)))
    return "\n".join(parts)
