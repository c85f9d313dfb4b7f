"""Fold every rank's reports for one test into ONE report per phase.

Pure: takes pytest ``TestReport`` objects (rank 0's own, the others rebuilt
from the wire) and returns new ones; no MPI, no torch. The rules, per phase:

* failed if any rank failed (setup/teardown failures stay errors);
* skipped only if every rank skipped; a skip on some ranks only is a failure
  that says which ranks skipped and why (the test did not run everywhere);
* xfail across ranks: the test failed somewhere -> xfailed; it passed on every
  rank -> xpassed (strict: failed, as pytest does);
* passed if every rank passed.

Failures that render identically are shown once under the list of ranks
(``ranks 0-15/16 (host n1)``); captured output of failing ranks is kept,
labelled the same way; the duration is the slowest rank's; a per-rank
outcome map is added to ``user_properties`` (junitxml writes it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from _pytest._code.code import TerminalRepr
from _pytest.reports import TestReport

from .world import World, format_ranks

__all__ = ["COLLECTIVE_SKIP", "SAT_OUT", "Crash", "RankResult", "RankedFailure", "merge_test",
           "outcome_map"]

PHASES = ("setup", "call", "teardown")
STRICT_XPASS = "[XPASS(strict)]"
#: set on the call report of a rank that skipped because other ranks did
COLLECTIVE_SKIP = "mpi_collective_skip"
#: set on the call report of a rank the test did not use (a MultiProcessTestCase
#: whose world_size is smaller than the MPI world): left out of the outcome
SAT_OUT = "mpi_sat_out"


@dataclass
class RankResult:
    """What one rank sent for one test.

    Attributes:
        rank: the rank.
        reports: its setup/call/teardown reports, or None for a rank that sent
            the compact record (every phase passed, nothing else to say).
        subtests: its subtest reports, in the order they were made.
        durations: phase -> seconds, for compact ranks.
    """

    rank: int
    reports: list[TestReport] | None
    subtests: list[TestReport] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)

    def phase(self, when: str) -> TestReport | None:
        for report in self.reports or ():
            if report.when == when:
                return report
        return None


@dataclass(frozen=True)
class Crash:
    """Stands where pytest expects ``longrepr.reprcrash`` (short summary, junitxml)."""

    path: str
    lineno: int
    message: str


class RankedFailure(TerminalRepr):
    """A failure seen on several ranks, grouped by identical rendering.

    Renders each group under a ``[ranks ...]`` header, through the original
    representation's own ``toterminal`` so colours and formatting survive.
    """

    def __init__(
        self,
        groups: list[tuple[str, Any]],
        notes: Sequence[str] = (),
        label: str | None = None,
    ) -> None:
        self.groups = groups
        self.notes = list(notes)
        first_label, first = groups[0]
        first_label = label or first_label
        crash = getattr(first, "reprcrash", None)
        message = crash.message if crash is not None else _first_line(first)
        self.reprcrash = Crash(
            getattr(crash, "path", ""), getattr(crash, "lineno", 0),
            f"[{first_label}] {message}",
        )

    def toterminal(self, tw: Any) -> None:
        for label, longrepr in self.groups:
            tw.line(f"[{label}]", bold=True, red=True)
            if hasattr(longrepr, "toterminal"):
                longrepr.toterminal(tw)
            else:
                tw.line(str(longrepr))
        for note in self.notes:
            tw.line(note, yellow=True)

    def __str__(self) -> str:
        # The first line is the one-line summary: pytest shows it for a report
        # that crossed the wire as text (JUnit, the journal, mpidist run).
        parts = [self.reprcrash.message]
        for label, longrepr in self.groups:
            parts.append(f"[{label}]\n{longrepr}")
        return "\n".join(parts + self.notes)


def _first_line(longrepr: Any) -> str:
    text = str(longrepr).strip()
    return text.splitlines()[-1] if text else ""


def _text(report: TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # skip: (path, lineno, reason)
        return str(longrepr[2])
    return str(longrepr) if longrepr is not None else ""


def _kind(report: TestReport) -> str:
    """passed | failed | skipped | xfailed | xpassed | xpass_strict."""
    xfail = hasattr(report, "wasxfail")
    if report.failed:
        if not xfail and _text(report).startswith(STRICT_XPASS):
            return "xpass_strict"
        return "failed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "xpassed" if xfail else "passed"


def _group(items: Iterable[tuple[int, str]]) -> list[tuple[list[int], str]]:
    """Group ranks by identical text, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for rank, text in items:
        groups.setdefault(text, []).append(rank)
    return [(ranks, text) for text, ranks in groups.items()]


def _labelled_sections(
    world: World, reports: dict[int, TestReport], ranks: list[int]
) -> list[tuple[str, str]]:
    by_section: dict[tuple[str, str], list[int]] = {}
    for rank in ranks:
        for name, content in reports[rank].sections:
            by_section.setdefault((name, content), []).append(rank)
    return [
        (f"{name} [{world.describe_ranks(rs)}]", content)
        for (name, content), rs in by_section.items()
    ]


def _merge_phase(
    world: World,
    reports: dict[int, TestReport],
    durations: dict[int, float],
    notes: Sequence[str] = (),
) -> TestReport:
    """Merge one phase; ``reports`` has the full reports, ``durations`` the compact ranks."""
    base = reports[min(reports)]
    kinds = {rank: _kind(rep) for rank, rep in reports.items()}
    kinds.update({rank: "passed" for rank in durations})
    ranks_by_kind: dict[str, list[int]] = {}
    for rank in sorted(kinds):
        ranks_by_kind.setdefault(kinds[rank], []).append(rank)
    merged = copy.copy(base)
    merged.sections = list(base.sections)
    merged.duration = max(
        [rep.duration for rep in reports.values()] + list(durations.values())
    )
    if hasattr(merged, "wasxfail"):
        del merged.wasxfail
    total = len(kinds)

    failed = ranks_by_kind.get("failed", [])
    skipped = ranks_by_kind.get("skipped", [])
    xfailed = ranks_by_kind.get("xfailed", [])
    xpassed = ranks_by_kind.get("xpassed", []) + ranks_by_kind.get("xpass_strict", [])
    if failed:
        groups = _group((r, _text(reports[r])) for r in failed)
        merged.outcome = "failed"
        skip_notes = [f"skipped on {world.describe_ranks(rs)}: {text}"
                      for rs, text in _group((r, _text(reports[r])) for r in skipped)]
        merged.longrepr = RankedFailure(
            [(world.describe_ranks(rs), reports[rs[0]].longrepr) for rs, _ in groups],
            [*notes, *skip_notes],
            label=world.describe_ranks(failed),
        )
        merged.sections = _labelled_sections(world, reports, failed)
    elif len(skipped) == total:
        merged.outcome = "skipped"
        reasons = _group((r, _text(reports[r])) for r in skipped)
        if len(reasons) > 1 and isinstance(base.longrepr, tuple):
            text = "; ".join(f"{t} (on {world.describe_ranks(rs)})" for rs, t in reasons)
            merged.longrepr = (base.longrepr[0], base.longrepr[1], text)
    elif skipped:
        ran = [r for r in kinds if r not in skipped]
        reason = "; ".join(
            f"{t} ({world.describe_ranks(rs)})"
            for rs, t in _group((r, _text(reports[r])) for r in skipped)
        )
        merged.outcome = "failed"
        merged.longrepr = RankedFailure(
            [(world.describe_ranks(skipped),
              f"skipped on {len(skipped)} of {total} ranks only, so the test did "
              f"not run everywhere (it ran on {world.describe_ranks(ran)}): {reason}")],
            notes,
        )
        merged.sections = _labelled_sections(world, reports, skipped)
    elif xfailed or xpassed:
        source = reports[(xfailed or xpassed)[0]]
        reason = getattr(source, "wasxfail", "")
        if xfailed:
            merged.outcome, merged.longrepr = "skipped", source.longrepr
            if len(xfailed) < total:
                reason = (f"{reason} (failed on {world.describe_ranks(xfailed)}, "
                          f"passed elsewhere)").strip()
            merged.wasxfail = reason
        elif ranks_by_kind.get("xpass_strict"):
            merged.outcome, merged.longrepr = "failed", source.longrepr
            strict = ranks_by_kind["xpass_strict"]
            merged.longrepr = RankedFailure(
                [(world.describe_ranks(strict), reports[strict[0]].longrepr)], notes
            )
        else:
            merged.outcome, merged.longrepr = "passed", None
            merged.wasxfail = reason
    else:
        merged.outcome = "passed"
        merged.longrepr = None
    return merged


def outcome_map(world: World, results: Sequence[RankResult]) -> str:
    """``passed=0-2,5;failed=3;error=4``: each rank's outcome for the whole test."""
    per_kind: dict[str, list[int]] = {}
    for result in results:
        outcome = "passed"
        for report in result.reports or ():
            kind = _kind(report)
            if report.when != "call" and kind == "failed":
                outcome = "error"
                break
            if kind in ("failed", "xpass_strict"):
                outcome = "failed"
            elif outcome == "passed" and kind != "passed":
                outcome = kind
        if _sat_out(result):
            outcome = "sat_out"
        per_kind.setdefault(outcome, []).append(result.rank)
    return ";".join(f"{kind}={format_ranks(ranks)}" for kind, ranks in per_kind.items())


def _merge_subtests(world: World, results: Sequence[RankResult]) -> list[TestReport]:
    keyed: dict[str, dict[int, TestReport]] = {}
    for result in results:
        seen: dict[str, int] = {}
        for report in result.subtests:
            describe = getattr(report, "_sub_test_description", None)
            base = str(describe() if describe else report.head_line)
            n = seen[base] = seen.get(base, 0) + 1
            keyed.setdefault(f"{base}#{n}", {})[result.rank] = report
    merged = []
    for per_rank in keyed.values():
        report = _merge_phase(world, per_rank, {})
        missing = [r.rank for r in results if r.rank not in per_rank]
        if missing and not report.failed:
            report.outcome = "failed"
            report.longrepr = RankedFailure(
                [(world.describe_ranks(missing), "this subtest never ran on these ranks")]
            )
        merged.append(report)
    return merged


def _collective_skip(results: Sequence[RankResult]) -> TestReport | None:
    """The merged setup report if the ranks agreed to skip (some skipped in setup,
    the rest skipped before the body because of them); else None."""
    skipped, deferred = [], []
    for result in results:
        setup, call = result.phase("setup"), result.phase("call")
        if setup is not None and setup.skipped:
            skipped.append(result)
        elif call is not None and call.skipped and getattr(call, COLLECTIVE_SKIP, False):
            deferred.append(result)
        else:
            return None
    if not skipped or not deferred:
        return None
    first = skipped[0].phase("setup")
    assert first is not None and isinstance(first.longrepr, tuple)
    path, lineno, _ = first.longrepr
    call = deferred[0].phase("call")
    assert call is not None and isinstance(call.longrepr, tuple)
    base = results[0].phase("setup")
    assert base is not None
    merged = copy.copy(base)
    merged.outcome, merged.longrepr = "skipped", (path, lineno, call.longrepr[2])
    merged.sections = []
    merged.duration = max(r.phase("setup").duration for r in results)  # type: ignore[union-attr]
    return merged


def _sat_out(result: RankResult) -> bool:
    call = result.phase("call")
    return call is not None and bool(getattr(call, SAT_OUT, False))


def merge_test(world: World, results: Sequence[RankResult]) -> list[TestReport]:
    """Merge one test's results from every rank into the reports rank 0 logs.

    ``results`` is indexed by rank; rank 0's entry must be full. Returns the
    merged setup report, then merged subtest reports, call and teardown, in the
    order pytest would have logged them. Ranks that sat the test out (``SAT_OUT``)
    do not count; an ``mpi_ranks`` property and failure notes say who ran it.
    """
    props = ("mpi_outcomes", outcome_map(world, results))
    sat = [r.rank for r in results if _sat_out(r)]
    ran_note: list[str] = []
    if sat and len(sat) < len(results):
        results = [r for r in results if r.rank not in sat]
        ran = [r.rank for r in results]
        ran_note = [f"ran on {world.describe_ranks(ran)}; {format_ranks(sat)} sat out "
                    f"(the test's world_size is {len(ran)})"]
    out: list[TestReport] = []
    setup_ok = True
    agreed_skip = _collective_skip(results)
    for when in PHASES:
        if agreed_skip is not None and when != "teardown":
            if when == "setup":
                agreed_skip.user_properties = [*agreed_skip.user_properties, props]
                out.append(agreed_skip)
            continue
        full: dict[int, TestReport] = {}
        compact: dict[int, float] = {}
        for result in results:
            if result.reports is None:
                if when in result.durations:
                    compact[result.rank] = result.durations[when]
                continue
            report = result.phase(when)
            if report is not None:
                full[result.rank] = report
        if not full:
            continue
        subtests: list[TestReport] = []
        if when == "call":
            if not setup_ok:
                continue  # pytest logs no call after a failed setup
            subtests = _merge_subtests(world, results)
            out.extend(subtests)
        notes: list[str] = list(ran_note) if when == "call" else []
        if when == "setup":
            ran_call = [r for r in results if r.phase("call") is not None]
            calls = [r.rank for r in ran_call if r.phase("call").failed]  # type: ignore[union-attr]
            if calls:
                notes.append(f"the test body also failed on {world.describe_ranks(calls)}")
        merged = _merge_phase(world, full, compact, notes)
        failed_subtests = sum(1 for sub in subtests if sub.failed)
        if merged.passed and failed_subtests:  # as pytest does for one process
            merged.outcome = "failed"
            merged.longrepr = f"contains {failed_subtests} failed subtest" + (
                "s" if failed_subtests > 1 else "")
        merged.user_properties = [*list(merged.user_properties), props]
        for _rank, report in full.items():
            for prop in report.user_properties:
                if prop not in merged.user_properties:
                    merged.user_properties.append(prop)
        if when == "setup" and not merged.passed:
            setup_ok = False
        out.append(merged)
    return out
