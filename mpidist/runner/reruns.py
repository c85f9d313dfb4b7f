"""pytest-rerunfailures under MPI: a test reruns on every rank of its group, or on none.

pytest-rerunfailures reruns a test from its own ``pytest_runtest_protocol``,
which the pipeline replaces (every rank runs the test; the root logs the
merged report). Run on each rank as it is, it would rerun a test that failed
on one rank there only, while the others went on to the next test: a
collective deadlock. So the decision is the root's, on the merged report,
and travels with the verdict: every rank reruns, or none does, and the root
logs each failed attempt once, as ``rerun`` (pytest-rerunfailures' ``R``).

What is used of pytest-rerunfailures: its count and delay (``--reruns``,
``--reruns-delay``, the ``flaky`` marker) and its clean-up between attempts;
its error filters (``--only-rerun``, ``--rerun-except``) and the suite-wide
cap are not applied, since the root decides on the merged report.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

import pytest
from _pytest.reports import TestReport

__all__ = ["mark_rerun", "prepare_rerun", "reruns_of"]


def _plugin(config: pytest.Config) -> Any:
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return None
    return importlib.import_module("pytest_rerunfailures")


def reruns_of(item: pytest.Item) -> tuple[int, float]:
    """How many times ``item`` may rerun and the delay before each (0: never)."""
    plugin = _plugin(item.config)
    if plugin is None:
        return 0, 0.0
    count = plugin.get_reruns_count(item)
    if not count:
        return 0, 0.0
    if item.config.option.usepdb:
        raise pytest.UsageError("--reruns incompatible with --pdb")
    return int(count), float(plugin.get_reruns_delay(item) or 0.0)


def mark_rerun(reports: Sequence[TestReport], attempt: int, again: bool) -> None:
    """Number the root's merged reports; the failed ones of an attempt that runs
    again are logged as ``rerun``, as pytest-rerunfailures logs them."""
    for report in reports:
        report.rerun = attempt  # type: ignore[attr-defined]
        if again and report.failed:
            report.outcome = "rerun"  # type: ignore[assignment]


def prepare_rerun(item: pytest.Item) -> None:
    """What pytest-rerunfailures clears between attempts (whichever helpers this
    version has): failed fixtures' cached results, the item's setup state, its
    test-class instance."""
    plugin = _plugin(item.config)
    for name in ("_remove_cached_results_from_failed_fixtures",
                 "_remove_failed_setup_state_from_session", "_discard_test_class_instance"):
        helper = getattr(plugin, name, None)
        if helper is not None:
            helper(item)
