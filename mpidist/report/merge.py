"""Fold every rank's reports for one test into ONE report per phase.

Pure: takes pytest ``TestReport`` objects (the root's own, the others rebuilt
from the wire) and returns new ones; no MPI, no torch. The rules, per phase:

* failed if any rank failed (setup/teardown failures stay errors);
* skipped only if every rank skipped; a skip on some ranks only is a failure
  that says which ranks skipped and why (the test did not run everywhere);
* xfail across ranks: the test failed somewhere -> xfailed; it passed on every
  rank -> xpassed (strict: failed, as pytest does);
* passed if every rank passed;
* a test run through torch's child protocol (``ROOT_DECIDES``) follows torch's
  ``_check_return_codes``: the first rank's outcome, unless another failed.

Failures whose texts differ only in numbers, addresses and host names are shown
once under the list of ranks (``ranks 0-15/16 (host n1)``), with the lines that
differ summarised (``grouping``), the ranks' own texts kept on the report
(``RANK_TEXTS``); captured output of failing ranks is kept, grouped and labelled
the same way; the duration is the slowest rank's; a per-rank outcome map is added
to ``user_properties`` (junitxml writes it). Ranks are named through ``Labels``:
the world, or the group the test ran on.
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

from _pytest.reports import TestReport

from ..bootstrap.world import format_ranks
from .failures import DIFFERS, Labels, RankedFailure
from .grouping import TextGroup, group_texts
from .results import (
    COLLECTIVE_SKIP,
    DIED,
    ECHO,
    PHASES,
    RANK_SHAPE,
    RANK_TEXTS,
    RankResult,
    phase_kind,
    report_text,
    subtest_digest,
    subtest_keys,
    test_outcome,
)
from .shape import rank_shape

__all__ = ["merge_test", "outcome_map"]


def _group(items: Iterable[tuple[int, str]]) -> list[tuple[list[int], str]]:
    """Group ranks by identical text, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for rank, text in items:
        groups.setdefault(text, []).append(rank)
    return [(ranks, text) for text, ranks in groups.items()]


def _texts(reports: dict[int, TestReport], ranks: list[int]) -> list[tuple[list[int], str]]:
    return _group((r, report_text(reports[r])) for r in ranks)


def _labelled_sections(
    labels: Labels, reports: dict[int, TestReport], ranks: list[int],
    kept: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Each section (captured output) once per group of ranks whose contents share a
    skeleton (``grouping``), the values that differ summarised; the contents left out
    go to ``kept``, by rank and section."""
    by_name: dict[str, dict[int, str]] = {}
    for rank in ranks:
        for name, content in reports[rank].sections:
            by_name.setdefault(name, {})[rank] = content
    out = []
    for name, contents in by_name.items():
        for group in group_texts(contents, labels.hosts):
            first = contents[group.ranks[0]]
            if group.differs:
                first = "\n".join([first.rstrip("\n"), DIFFERS, *group.differs, ""])
                if kept is not None:
                    kept.update({f"{labels.describe(r)}: {name}": contents[r]
                                 for r in group.ranks[1:]})
            out.append((f"{name} [{labels.describe_ranks(group.ranks)}]", first))
    return out


def _merge_phase(
    labels: Labels,
    reports: dict[int, TestReport],
    durations: dict[int, float],
    notes: Sequence[str] = (),
) -> TestReport:
    """Merge one phase; ``reports`` has the full reports, ``durations`` the compact ranks."""
    kinds = {rank: phase_kind(rep) for rank, rep in reports.items()}
    kinds.update({rank: "passed" for rank in durations})
    by_kind: dict[str, list[int]] = {}
    for rank in sorted(kinds):
        by_kind.setdefault(kinds[rank], []).append(rank)
    base = reports[min(reports)]
    merged = copy.copy(base)
    merged.sections = list(base.sections)
    merged.duration = max([rep.duration for rep in reports.values()] + list(durations.values()))
    if hasattr(merged, "wasxfail"):
        del merged.wasxfail
    skipped = by_kind.get("skipped", [])
    if by_kind.get("failed"):
        _as_failed(merged, labels, reports, by_kind["failed"], skipped, notes)
    elif len(skipped) == len(kinds):
        _as_skipped(merged, labels, reports, skipped)
    elif skipped:
        _as_partly_skipped(merged, labels, reports, skipped, sorted(kinds), notes)
    elif any(k in by_kind for k in ("xfailed", "xpassed", "xpass_strict")):
        _as_xfail(merged, labels, reports, by_kind, len(kinds), notes)
    else:
        merged.outcome, merged.longrepr = "passed", None
    return merged


def _as_failed(merged: TestReport, labels: Labels, reports: dict[int, TestReport],
               failed: list[int], skipped: list[int], notes: Sequence[str]) -> None:
    """Failed: the failing ranks grouped by what their texts share (``grouping``), the
    cause first; each rank's text left out of the report kept on it (``RANK_TEXTS``)."""
    skip_notes = [f"skipped on {labels.describe_ranks(rs)}: {text}"
                  for rs, text in _texts(reports, skipped)]
    merged.outcome = "failed"
    texts = {rank: report_text(reports[rank]) for rank in failed}
    groups = sorted(group_texts(texts, labels.hosts),
                    key=lambda group: _cause_first(reports[group.ranks[0]]))
    kept = {labels.describe(rank): texts[rank] for group in groups if group.differs
            for rank in group.ranks[1:]}
    merged.longrepr = RankedFailure(
        [(labels.describe_ranks(g.ranks), reports[g.ranks[0]].longrepr) for g in groups],
        [*notes, *skip_notes], label=labels.describe_ranks(failed),
        details=[g.differs for g in groups], message=_crash_message(labels, reports, groups[0]))
    merged.sections = _labelled_sections(labels, reports, failed, kept)
    if kept:
        setattr(merged, RANK_TEXTS, kept)


def _crash_message(labels: Labels, reports: dict[int, TestReport],
                   group: TextGroup) -> str | None:
    """The one-line summary of a group whose messages differ by rank, their values
    summarised (None: the first rank's message says it)."""
    messages = {rank: getattr(getattr(reports[rank].longrepr, "reprcrash", None), "message",
                              None) for rank in group.ranks}
    if not group.differs or None in messages.values():
        return None
    grouped = group_texts({r: str(m) for r, m in messages.items()}, labels.hosts)
    return grouped[0].differs[0] if len(grouped) == 1 and grouped[0].differs else None


def _cause_first(report: TestReport) -> int:
    """Sort key of a failing group: a dead process first, then the ranks where the
    test failed, then those where it failed because another rank's failure ended it."""
    return 0 if getattr(report, DIED, False) else 2 if getattr(report, ECHO, False) else 1


def _as_skipped(merged: TestReport, labels: Labels, reports: dict[int, TestReport],
                skipped: list[int]) -> None:
    merged.outcome = "skipped"
    reasons = _texts(reports, skipped)
    if len(reasons) > 1 and isinstance(merged.longrepr, tuple):
        text = "; ".join(f"{t} (on {labels.describe_ranks(rs)})" for rs, t in reasons)
        merged.longrepr = (merged.longrepr[0], merged.longrepr[1], text)


def _as_partly_skipped(merged: TestReport, labels: Labels, reports: dict[int, TestReport],
                       skipped: list[int], ranks: list[int], notes: Sequence[str]) -> None:
    ran = [r for r in ranks if r not in skipped]
    reason = "; ".join(f"{t} ({labels.describe_ranks(rs)})"
                       for rs, t in _texts(reports, skipped))
    merged.outcome = "failed"
    merged.longrepr = RankedFailure(
        [(labels.describe_ranks(skipped),
          f"skipped on {len(skipped)} of {len(ranks)} ranks only, so the test did "
          f"not run everywhere (it ran on {labels.describe_ranks(ran)}): {reason}")],
        notes)
    merged.sections = _labelled_sections(labels, reports, skipped)


def _as_xfail(merged: TestReport, labels: Labels, reports: dict[int, TestReport],
              by_kind: dict[str, list[int]], total: int, notes: Sequence[str]) -> None:
    xfailed = by_kind.get("xfailed", [])
    strict = by_kind.get("xpass_strict", [])
    source = reports[(xfailed or by_kind.get("xpassed", []) + strict)[0]]
    reason = getattr(source, "wasxfail", "")
    if xfailed:
        merged.outcome, merged.longrepr = "skipped", source.longrepr
        if len(xfailed) < total:
            reason = (f"{reason} (failed on {labels.describe_ranks(xfailed)}, "
                      "passed elsewhere)").strip()
        merged.wasxfail = reason
    elif strict:
        merged.outcome = "failed"
        merged.longrepr = RankedFailure(
            [(labels.describe_ranks(strict), reports[strict[0]].longrepr)], notes)
    else:
        merged.outcome, merged.longrepr = "passed", None
        merged.wasxfail = reason


def outcome_map(labels: Labels, results: Sequence[RankResult]) -> str:
    """``passed=0-2,5;failed=3;error=4``: each rank's outcome for the whole test."""
    per_kind: dict[str, list[int]] = {}
    for result in results:
        outcome = "sat_out" if result.sat_out else test_outcome(result.reports or ())
        per_kind.setdefault(outcome, []).append(result.rank)
    return ";".join(f"{kind}={format_ranks(ranks)}" for kind, ranks in per_kind.items())


def _merge_subtests(labels: Labels, results: Sequence[RankResult],
                    same: set[int]) -> list[TestReport]:
    """One report per subtest. A compact rank whose digest matches the root's ran the
    root's subtests and passed them all; it counts as passed on each. One whose
    digest differs is left out here (its subtests are unknown) and fails the test
    through ``_odd_subtests_note``."""
    keyed: dict[str, dict[int, TestReport]] = {}
    for result in results:
        for key, report in zip(subtest_keys(result.subtests), result.subtests, strict=True):
            keyed.setdefault(key, {})[result.rank] = report
    merged = []
    for per_rank in keyed.values():
        report = _merge_phase(labels, per_rank, {})
        missing = [r.rank for r in results if r.rank not in per_rank and (
            r.reports is not None or (r.rank in same and 0 not in per_rank))]
        if missing and not report.failed:
            report.outcome = "failed"
            report.longrepr = RankedFailure(
                [(labels.describe_ranks(missing), "this subtest never ran on these ranks")])
        merged.append(report)
    return merged


def _compact_like_root(results: Sequence[RankResult]) -> set[int]:
    """Compact ranks that ran exactly the root's subtests (all passed)."""
    compact = [r for r in results if r.reports is None and r.subtest_count]
    if not compact:
        return set()
    root = results[0].subtests
    digest = subtest_digest(root)
    return {r.rank for r in compact if r.subtest_count == len(root) and r.subtest_digest == digest}


def _odd_subtests_note(labels: Labels, results: Sequence[RankResult], same: set[int]) -> str:
    """Compact ranks whose passed subtests are not the root's: the test did not run
    the same way everywhere (say so; their details were not sent)."""
    root = len(results[0].subtests)
    odd = [r for r in results if r.reports is None and r.rank not in same
           and (r.subtest_count or root)]
    if not odd:
        return ""
    counts = ", ".join(sorted({str(r.subtest_count) for r in odd}))
    return (f"{labels.describe_ranks([r.rank for r in odd])} passed {counts} subtest(s), "
            f"not the same ones as rank 0 ({root}): the test ran differently there")


def _collective_skip(results: Sequence[RankResult]) -> TestReport | None:
    """The merged setup report if the ranks agreed to skip (some skipped in setup,
    the rest skipped before the body because of them); else None."""
    skipped, deferred = [], []
    for result in results:
        setup, call = result.phase("setup"), result.phase("call")
        if setup is not None and setup.skipped:
            skipped.append(setup)
        elif call is not None and call.skipped and getattr(call, COLLECTIVE_SKIP, False):
            deferred.append(call)
        else:
            return None
    if not skipped or not deferred:
        return None
    assert isinstance(skipped[0].longrepr, tuple) and isinstance(deferred[0].longrepr, tuple)
    path, lineno, _ = skipped[0].longrepr
    base = results[0].phase("setup")
    assert base is not None
    merged = copy.copy(base)
    merged.outcome, merged.longrepr = "skipped", (path, lineno, deferred[0].longrepr[2])
    merged.sections = []
    merged.duration = max(r.phase("setup").duration for r in results)  # type: ignore[union-attr]
    return merged


def _phase_reports(
    results: Sequence[RankResult], when: str
) -> tuple[dict[int, TestReport], dict[int, float]]:
    """Phase ``when``: the full reports by rank, and the compact ranks' durations."""
    full: dict[int, TestReport] = {}
    compact: dict[int, float] = {}
    for result in results:
        if result.reports is None:
            if when in result.durations:
                compact[result.rank] = result.durations[when]
        elif (report := result.phase(when)) is not None:
            full[result.rank] = report
    return full, compact


def _with_properties(merged: TestReport, props: tuple[str, str],
                     reports: Iterable[TestReport]) -> TestReport:
    """The outcome map, then every rank's own properties once each."""
    merged.user_properties = [*list(merged.user_properties), props]
    for report in reports:
        for prop in report.user_properties:
            if prop not in merged.user_properties:
                merged.user_properties.append(prop)
    return merged


def _all_like_the_root(results: Sequence[RankResult], same: set[int]) -> bool:
    """The common case: the root passed everything plainly, and every other rank sent
    the compact record of the same run. Nothing to fold but durations."""
    root = results[0]
    return all(r.reports is None and (r.rank in same or not (r.subtest_count or root.subtests))
               for r in results[1:]) and all(
        report.passed and not hasattr(report, "wasxfail")
        for group in (root.reports or (), root.subtests) for report in group)


def _as_the_root(results: Sequence[RankResult], props: tuple[str, str]) -> list[TestReport]:
    """``merge_test`` for that case: the root's reports, with the slowest duration.
    They are new objects (pytest logged none of them), so they are reused, not copied."""
    out: list[TestReport] = []
    for report in results[0].reports or ():
        if report.when == "call":
            out.extend(results[0].subtests)
        report.duration = max([report.duration] + [
            r.durations.get(report.when, 0.0) for r in results[1:]])
        report.user_properties = [*report.user_properties, props]
        out.append(report)
    return out


def merge_test(labels: Labels, results: Sequence[RankResult]) -> list[TestReport]:
    """``_merge_test``, each phase's report carrying the ranks' shape (``shape``)."""
    out = _merge_test(labels, results)
    for report in out:
        if type(report) is TestReport:  # not a subtest's
            full, compact = _phase_reports(results, report.when)
            setattr(report, RANK_SHAPE, rank_shape(
                labels, full, compact, [r for r, rep in full.items() if rep.failed]))
    return out


def _merge_test(labels: Labels, results: Sequence[RankResult]) -> list[TestReport]:
    """Merge one test's results from every rank into the reports the root logs.

    ``results`` is indexed by rank; the root's entry must be full. Returns the
    merged setup report, then merged subtest reports, call and teardown, in the
    order pytest would have logged them. Ranks that sat the test out (``SAT_OUT``)
    do not count; an ``mpi_outcomes`` property and failure notes say who ran it.
    For a torch protocol test (``ROOT_DECIDES``) the root's outcome is the test's
    unless another rank failed.
    """
    same = _compact_like_root(results)
    if _all_like_the_root(results, same):
        everyone = format_ranks([r.rank for r in results])
        return _as_the_root(results, ("mpi_outcomes", f"passed={everyone}"))
    props = ("mpi_outcomes", outcome_map(labels, results))
    ran_note: list[str] = []
    sat = [r.rank for r in results if r.sat_out]
    if sat and len(sat) < len(results):
        results = [r for r in results if not r.sat_out]
        ran_note = [f"ran on {labels.describe_ranks([r.rank for r in results])}; "
                    f"{format_ranks(sat)} sat out (the test's world_size is {len(results)})"]
    if results[0].root_decides:  # torch's rule: the first process, or any that failed
        skipped = {r.rank: call for r in results[1:]
                   if not r.failed and (call := r.phase("call")) is not None and call.skipped}
        ran_note += [f"skipped on {labels.describe_ranks(rs)}: {text}"
                     for rs, text in _texts(skipped, sorted(skipped))]
        results = [results[0], *(r for r in results[1:] if r.failed)]
    agreed_skip = _collective_skip(results)
    out: list[TestReport] = []
    if agreed_skip is not None:  # one skip, then the teardown
        out.append(_with_properties(agreed_skip, props, ()))
    for when in PHASES:
        if agreed_skip is not None and when != "teardown":
            continue
        full, compact = _phase_reports(results, when)
        if not full or (when == "call" and out and not out[-1].passed):
            continue  # pytest logs no call after a failed setup
        notes = list(ran_note) if when == "call" else []
        subtests = _merge_subtests(labels, results, same) if when == "call" else []
        out.extend(subtests)
        if when == "setup":
            calls = [r.rank for r in results if (c := r.phase("call")) is not None and c.failed]
            if calls:
                notes.append(f"the test body also failed on {labels.describe_ranks(calls)}")
        odd = _odd_subtests_note(labels, results, same) if when == "call" else ""
        merged = _merge_phase(labels, full, compact, notes)
        failed_subtests = sum(1 for sub in subtests if sub.failed)
        if merged.passed and failed_subtests:  # as pytest does for one process
            merged.outcome = "failed"
            merged.longrepr = f"contains {failed_subtests} failed subtest" + (
                "s" if failed_subtests > 1 else "")
        elif merged.passed and odd:
            merged.outcome = "failed"
            merged.longrepr = RankedFailure([("subtests", odd)])
        out.append(_with_properties(merged, props, full.values()))
    return out
