"""What may stop a session, and how ranks other than the root follow the root's stop.

Kept apart from the pipeline so every runner of tests (the world's loop and
the packed groups') reads the same rule.
"""

from __future__ import annotations

import types

import pytest

__all__ = ["may_stop_on_a_pass", "needs_verdict", "stop_like_the_root"]

#: reporters known to stop a session on failures only: pytest's, mpidist's,
#: pytest-rerunfailures' (its hook, with xdist installed, tidies the stats), and
#: the report writers (pytest-html, pytest-reportlog, pytest-json-report), which
#: only record what they are given
_PASSIVE_REPORTERS = ("_pytest.", "mpidist.", "pytest_rerunfailures", "pytest_html.",
                      "pytest_reportlog.", "pytest_jsonreport.")


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


def needs_verdict(item: pytest.Item, nextitem: pytest.Item | None, may_run_again: bool,
                  stops_on_failure: bool) -> bool:
    """The root: whether the other ranks must hear its verdict on this test before
    they start the next one. Only when the merged result could stop the session or
    run the test again: ``-x``/``--maxfail``/``--sw`` (``stops_on_failure``),
    ``--reruns`` (``may_run_again``: a rerun may follow, or this is one), a reporter
    outside pytest and mpidist, a stop already asked for -- and for the last test,
    so the session ends in step."""
    session = item.session
    return bool(nextitem is None or may_run_again or stops_on_failure
                or session.shouldstop or session.shouldfail or may_stop_on_a_pass(item))


def stop_like_the_root(session: pytest.Session, fail: bool, stop: bool) -> None:
    """A rank other than the root: stop where the root said it stopped."""
    if fail and not session.shouldfail:
        session.shouldfail = "rank 0 stopped the session (-x/--maxfail)"
    if stop and not session.shouldstop:
        session.shouldstop = "rank 0 stopped the session"
