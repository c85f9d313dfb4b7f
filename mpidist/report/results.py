"""What one rank says about one test, and the one outcome classifier.

Pure: no MPI, no torch. ``RankResult`` is a rank's result as the runner and
the merge see it (full reports, or phase durations for a rank that sent the
compact record). ``phase_kind`` names a phase report's outcome the way the
merge needs it (pytest's three outcomes plus the xfail cases), and
``test_outcome`` folds a test's phases into one word; every place that
classifies an outcome calls these two.

Report attributes set by the layers above and read by the merge travel with
pytest's own serialization (it keeps a report's extra attributes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import pytest

if TYPE_CHECKING:
    from _pytest.reports import TestReport

__all__ = ["ABNORMAL", "AGREED", "CALL_MARKS", "COLLECTIVE_SKIP", "DIED", "ECHO", "LEFT_EARLY",
           "PHASES", "RANK_SHAPE", "RANK_TEXTS",
           "ROOT_DECIDES", "SAT_OUT", "RankResult", "mark_call",
           "phase_kind", "report_text", "subtest_digest", "subtest_keys", "test_outcome"]

PHASES = ("setup", "call", "teardown")
STRICT_XPASS = "[XPASS(strict)]"
#: on the call report of a rank that skipped because other ranks did
COLLECTIVE_SKIP = "mpi_collective_skip"
#: on the call report of a rank the test did not use (a torch class whose
#: world_size is smaller than the group): left out of the outcome
SAT_OUT = "mpi_sat_out"
#: on the call report of a rank that left the body early (torch's skip exit
#: code): the other ranks may be waiting for it, as for a failure
LEFT_EARLY = "mpi_left_early"
#: on the call reports of a test run through torch's child protocol: the first
#: rank's outcome is the test's, others count only if they failed (torch's
#: ``_check_return_codes`` reads the first process's exit code)
ROOT_DECIDES = "mpi_root_decides"
#: item stash key: the attributes above that a layer wants on this rank's call
#: report (the pipeline sets them once per test, not in a hook run per report)
CALL_MARKS = pytest.StashKey[tuple[str, ...]]()
#: item stash key: this rank took part in the item's body agreement ("" or why
#: the body did not run)
AGREED = pytest.StashKey[str]()
#: on the merged call report of a test that ended the job (timeout,
#: peer-failure, terminated): the journal records it, ``mpidist run`` resumes
ABNORMAL = "mpi_abnormal"
#: on the call report of a rank whose isolated test's process died or hung (it sent no
#: reports): the merge leads the failure with it, the cause rather than its echoes
DIED = "mpi_died"
#: on the call report of a rank that failed only because another rank's failure ended
#: the test there too (hypothesis's examples, agreed across ranks): the merge shows
#: the ranks where it failed first, these after them
ECHO = "mpi_echo"
#: on a merged report whose failure texts the report groups: each rank's own text left
#: out of it ({label: text}), for the JUnit file or a directory (``--mpi-rank-texts``)
RANK_TEXTS = "mpi_rank_texts"
#: merged phase report attribute: the ranks' shape for the history (``history``): the
#: median and slowest ranks' seconds, and each failing host's ranks and cause
RANK_SHAPE = "mpi_rank_shape"


def mark_call(item: pytest.Item, reports: list[TestReport]) -> None:
    """Put on this rank's call report what the runner and the layers above say
    about it: a skip made by the body agreement (``COLLECTIVE_SKIP``) and the
    item's ``CALL_MARKS``. Once per test, after the fact: a hook wrapper would
    run for every report (each subtest's too)."""
    agreed = item.stash.get(AGREED, "")
    del item.stash[AGREED]
    marks = item.stash.get(CALL_MARKS, ())
    if not (agreed or marks):
        return
    if marks:
        del item.stash[CALL_MARKS]
    for report in reports:
        if report.when == "call":
            if agreed and report.skipped:
                setattr(report, COLLECTIVE_SKIP, True)
            for name in marks:
                setattr(report, name, True)


@dataclass
class RankResult:
    """What one rank sent for one test.

    Attributes:
        rank: the rank, in the test's group.
        reports: its setup/call/teardown reports, or None for a rank that sent
            the compact record (every phase passed, nothing else to say).
        subtests: its subtest reports, in the order they were made.
        durations: phase -> seconds, for compact ranks.
        subtest_count: how many subtests a compact rank ran (every one passed).
        subtest_digest: ``subtest_digest`` of those subtests' identities.
    """

    rank: int
    reports: list[TestReport] | None
    subtests: list[TestReport] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    subtest_count: int = 0
    subtest_digest: int = 0

    def phase(self, when: str) -> TestReport | None:
        """This rank's report of phase ``when``, if it sent one."""
        for report in self.reports or ():
            if report.when == when:
                return report
        return None

    @property
    def failed(self) -> bool:
        """Whether any phase or subtest failed here (a compact rank never did)."""
        return any(r.failed for r in (*(self.reports or ()), *self.subtests))

    @property
    def root_decides(self) -> bool:
        """Whether the test ran torch's child protocol (on the root's report)."""
        call = self.phase("call")
        return call is not None and bool(getattr(call, ROOT_DECIDES, False))

    @property
    def sat_out(self) -> bool:
        """Whether the test did not use this rank."""
        call = self.phase("call")
        return call is not None and bool(getattr(call, SAT_OUT, False))


def subtest_keys(subtests: Sequence[TestReport]) -> list[str]:
    """Each subtest's identity: its description, numbered when it repeats (so the same
    subtest has the same key on every rank)."""
    seen: dict[str, int] = {}
    keys = []
    for report in subtests:
        describe = getattr(report, "_sub_test_description", None)
        base = str(describe() if describe else report.head_line)
        n = seen[base] = seen.get(base, 0) + 1
        keys.append(f"{base}#{n}")
    return keys


def subtest_digest(subtests: Sequence[TestReport]) -> int:
    """48 bits of a hash of the subtests' keys, in order: exact in a float64 record."""
    digest = hashlib.sha1(usedforsecurity=False)
    for key in subtest_keys(subtests):
        digest.update(key.encode())
        digest.update(b"\0")
    return int.from_bytes(digest.digest()[:6], "big")


def report_text(report: TestReport) -> str:
    """A report's longrepr as text (a skip's reason for skips)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # skip: (path, lineno, reason)
        return str(longrepr[2])
    return str(longrepr) if longrepr is not None else ""


def phase_kind(report: TestReport) -> str:
    """passed | failed | skipped | xfailed | xpassed | xpass_strict."""
    xfail = hasattr(report, "wasxfail")
    if report.failed:
        if not xfail and report_text(report).startswith(STRICT_XPASS):
            return "xpass_strict"
        return "failed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "xpassed" if xfail else "passed"


def test_outcome(reports: Iterable[TestReport]) -> str:
    """One word for a whole test: error (setup/teardown failed) > failed > the first
    other non-passing kind (skipped, xfailed, xpassed) > passed."""
    outcome = "passed"
    for report in reports:
        kind = phase_kind(report)
        if report.when != "call" and kind == "failed":
            return "error"
        if kind in ("failed", "xpass_strict"):
            outcome = "failed"
        elif outcome == "passed" and kind != "passed":
            outcome = kind
    return outcome


test_outcome.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest
