"""Replay a test's reports into pytest's logging hooks: the only way results reach a reporter.

The terminal, ``-x``/``--maxfail``, ``--junitxml``, ``--durations`` and any
other plugin see a test through ``pytest_runtest_logstart`` / ``logreport`` /
``logfinish``, keyed by node id, exactly as in a one-process run (pytest-xdist's
controller does the same with its workers' reports). The live run, the hang
path and the journal replay all call ``replay``, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any, Sequence

from _pytest.reports import TestReport

__all__ = ["replay"]


def replay(
    hook: Any,
    nodeid: str,
    location: tuple[str, int | None, str],
    reports: Sequence[TestReport],
    *,
    started: bool = False,
) -> None:
    """Log ``reports`` as test ``nodeid``; ``started``: its logstart was already sent."""
    if not started:
        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    for report in reports:
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)
