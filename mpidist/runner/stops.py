"""What may stop a session, and how ranks other than the root follow the root's stop.

Kept apart from the pipeline so every runner of tests (the world's loop and
the packed groups') reads the same rule.
"""

from __future__ import annotations

import types

import pytest

__all__ = ["may_stop_on_a_pass", "stop_like_the_root"]

#: reporters known to stop a session on failures only: pytest's, mpidist's, and
#: pytest-rerunfailures' (its hook, with xdist installed, tidies the stats)
_PASSIVE_REPORTERS = ("_pytest.", "mpidist.", "pytest_rerunfailures")


def may_stop_on_a_pass(item: pytest.Item) -> bool:
    """Whether a ``pytest_runtest_logreport`` outside pytest and mpidist could stop
    the session on a passing report (pytest's own stop only on failures). Such a
    stop cannot be undone (pytest refuses to unset ``shouldstop``), so with one
    registered the verdict always waits for the replay."""
    for impl in item.ihook.pytest_runtest_logreport.get_hookimpls():
        plugin = impl.plugin
        name = (plugin.__name__ if isinstance(plugin, types.ModuleType)
                else type(plugin).__module__)
        if not name.startswith(_PASSIVE_REPORTERS):
            return True
    return False


def stop_like_the_root(session: pytest.Session, fail: bool, stop: bool) -> None:
    """A rank other than the root: stop where the root said it stopped."""
    if fail and not session.shouldfail:
        session.shouldfail = "rank 0 stopped the session (-x/--maxfail)"
    if stop and not session.shouldstop:
        session.shouldstop = "rank 0 stopped the session"
