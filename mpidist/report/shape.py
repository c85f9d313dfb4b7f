"""The ranks' shape of one merged phase, for the history: how long the ranks took (the
median and the three slowest, named by global rank and host) and, for a failure, each
failing host with its global ranks and the cause in one line. Small on purpose: it
travels with the merged report (a packed group's root sends it to rank 0) and into the
journal, at any number of ranks."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _pytest.reports import TestReport

    from .failures import Labels

__all__ = ["rank_shape"]

CAUSE_CHARS = 200


def rank_shape(labels: Labels, reports: dict[int, TestReport], durations: dict[int, float],
               failed: list[int]) -> dict[str, Any]:
    """``reports``: the ranks' full reports; ``durations``: the compact ranks' seconds;
    ``failed``: the ranks (of ``labels``) whose phase failed."""
    seconds = {rank: report.duration for rank, report in reports.items()}
    seconds.update(durations)
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:3]
    shape: dict[str, Any] = {
        "median": statistics.median(seconds.values()) if seconds else 0.0,
        "slowest": [[*labels.where(rank), round(secs, 4)] for rank, secs in slowest]}
    hosts: dict[str, list[Any]] = {}
    for rank in failed:
        glob, host = labels.where(rank)
        hosts.setdefault(host, [host, [], _cause(reports[rank])])[1].append(glob)
    if hosts:
        shape["failed"] = list(hosts.values())
    return shape


def _cause(report: TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr or report.outcome)
    return (text.strip().splitlines() or [""])[0][:CAUSE_CHARS]
