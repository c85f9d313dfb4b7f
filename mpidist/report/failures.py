"""Every failure mpidist makes up, built in one place.

``RankedFailure`` shows a failure seen on several ranks, grouped by identical
rendering; ``failed_reports`` is the setup/call/teardown triple of a test that
no rank could report normally (hung, terminated, or lost with its job);
``describe_hang`` turns the watchdog's ``Hang`` -- every rank's answer: where it
is, its stacks, its reports if it failed -- into one failure that says why the
job was ended and where each group of ranks was. Ranks are grouped by what their
texts share (``grouping``), so at any scale a report is a page. Pure: no MPI, no
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from _pytest._code.code import TerminalRepr
from _pytest.reports import TestReport

from .grouping import group_texts

if TYPE_CHECKING:
    from ..safety.watchdog import Hang
    from .results import RankResult

__all__ = ["Crash", "Labels", "RankedFailure", "describe_hang", "failed_reports"]


class Labels(Protocol):
    """How messages name ranks: a ``World``, or the group a test runs on."""

    @property
    def hosts(self) -> tuple[str, ...]: ...

    def describe(self, rank: int) -> str: ...

    def describe_ranks(self, ranks: list[int]) -> str: ...

    def where(self, rank: int) -> tuple[int, str]: ...


@dataclass(frozen=True)
class Crash:
    """Stands where pytest expects ``longrepr.reprcrash`` (short summary, junitxml)."""

    path: str
    lineno: int
    message: str


#: heads the lines of a group's text that differ between its ranks (``grouping``)
DIFFERS = ("these lines differ between the ranks above (every rank's own text: "
           "--mpi-rank-texts):")


class RankedFailure(TerminalRepr):
    """A failure seen on several ranks, grouped by what the ranks' texts share.

    Renders each group under a ``[ranks ...]`` header, through the original
    representation's own ``toterminal`` so colours and formatting survive, then
    the group's ``details``: the lines that differ between its ranks, each value
    that differs summarised (``grouping``). ``message`` replaces the first group's
    one-line summary (its values summarised the same way).
    """

    def __init__(
        self,
        groups: list[tuple[str, Any]],
        notes: Sequence[str] = (),
        label: str | None = None,
        details: Sequence[Sequence[str]] = (),
        message: str | None = None,
    ) -> None:
        self.groups = groups
        self.notes = list(notes)
        #: where it happened, for the history (``culprits``); set by who knows
        self.culprits: list[list[Any]] = []
        self.details = [list(d) for d in details] or [[] for _ in groups]
        first_label, first = groups[0]
        first_label = label or first_label
        crash = getattr(first, "reprcrash", None)
        if message is None:
            message = crash.message if crash is not None else _first_line(first)
        self.reprcrash = Crash(
            getattr(crash, "path", ""), getattr(crash, "lineno", 0),
            f"[{first_label}] {message}",
        )

    def toterminal(self, tw: Any) -> None:
        for (label, longrepr), lines in zip(self.groups, self.details, strict=True):
            tw.line(f"[{label}]", bold=True, red=True)
            if hasattr(longrepr, "toterminal"):
                longrepr.toterminal(tw)
            else:
                tw.line(str(longrepr))
            if lines:
                tw.line(DIFFERS, yellow=True)
                for line in lines:
                    tw.line(line)
        for note in self.notes:
            tw.line(note, yellow=True)

    def __str__(self) -> str:
        # The first line is the one-line summary: pytest shows it for a report
        # that crossed the wire as text (JUnit, the journal, mpidist run).
        parts = [self.reprcrash.message]
        for (label, longrepr), lines in zip(self.groups, self.details, strict=True):
            parts.append(f"[{label}]\n{longrepr}")
            if lines:
                parts.append("\n".join([DIFFERS, *lines]))
        return "\n".join(parts + self.notes)


def _first_line(longrepr: Any) -> str:
    text = str(longrepr).strip()
    return text.splitlines()[-1] if text else ""


def failed_reports(
    nodeid: str,
    location: tuple[str, int | None, str],
    longrepr: Any,
    *,
    duration: float = 0.0,
    properties: Sequence[tuple[str, object]] = (),
    abnormal: str = "",
) -> list[TestReport]:
    """The reports of a test that failed outside the normal path: setup passed, the
    call failed with ``longrepr``, teardown passed (carrying ``properties``)."""
    call = TestReport(nodeid, location, {}, "failed", longrepr, "call", duration=duration)
    if abnormal:
        from .results import ABNORMAL

        setattr(call, ABNORMAL, abnormal)
    return [
        TestReport(nodeid, location, {}, "passed", None, "setup"),
        call,
        TestReport(nodeid, location, {}, "passed", None, "teardown",
                   user_properties=list(properties)),
    ]


_HEADLINES = {  # why -> (the summary's words, what the option is)
    "timeout": ("Timeout: the test exceeded its {timeout:g} s limit",
                " (--mpi-timeout, mpi(timeout=), pytest-timeout's marker or --timeout)"),
    "peer-failure": ("{failed} failed and the other ranks did not finish within {grace:g} s",
                     " (--mpi-peer-grace)"),
    "terminated": ("the job was terminated (SIGTERM) while this test ran",
                   ": a rank died or the launcher stopped the job"),
    "died": ("{died} while this test ran", ""),
}


def _rank_failures(labels: Labels, hang: Hang, decode: Callable[[int, bytes], RankResult]
                   ) -> list[tuple[int, Any]]:
    """(rank, longrepr) of each rank that sent its failed reports with its answer."""
    failures: list[tuple[int, Any]] = []
    for rank, state in sorted(hang.states.items()):
        if state.payload is None:
            continue
        try:
            result = decode(rank, state.payload)
        except (ValueError, KeyError, TypeError) as exc:
            failures.append((rank, f"its report could not be read ({exc})"))
            continue
        failed = next((r for r in result.reports or () if r.failed), None)
        if failed is not None:
            failures.append((rank, failed.longrepr))
    return failures


def _by_text(labels: Labels, texts: dict[int, str]) -> list[tuple[str, str]]:
    """(ranks' label, text) per group of ranks with the same text: a place in the code
    is a place (a line number that differs is another place, not a value)."""
    ranks_of: dict[str, list[int]] = {}
    for rank, text in sorted(texts.items()):
        ranks_of.setdefault(text, []).append(rank)
    return [(labels.describe_ranks(ranks), text) for text, ranks in ranks_of.items()]


def _where_lines(labels: Labels, hang: Hang) -> tuple[list[str], str]:
    """Where each group of ranks was, who did not answer, the stacks of the ranks
    still inside the test, grouped by their frames; and the one-line summary of who
    was left waiting."""
    by_where = _by_text(labels, {
        rank: state.where if state.status == "in the test"
        else "finished the test; waiting for the other ranks"
        for rank, state in hang.states.items()})
    lines = [f"  {ranks} {where}" for ranks, where in by_where]
    silent = [rank for rank in hang.missing if rank not in hang.died]
    if silent:
        lines.append(f"  {labels.describe_ranks(silent)} did not answer "
                     "(dead, or holding the GIL); the launcher's message above "
                     "names its exit code or signal")
    for ranks, text in _by_text(labels, {rank: state.stacks for rank, state
                                         in hang.states.items()
                                         if state.status == "in the test"}):
        lines.append(f"\n--- Python stacks of {ranks} ---\n{text}")
    waiting = "; ".join(f"{ranks} {where}" for ranks, where in by_where
                        if not where.startswith("finished"))
    return lines, waiting or "no rank answered"


def describe_hang(
    labels: Labels, hang: Hang, decode: Callable[[int, bytes], RankResult]
) -> RankedFailure:
    """The failure shown for ``hang``; ``decode`` rebuilds a rank's sent reports."""
    failures = _rank_failures(labels, hang, decode)
    summary, detail = _HEADLINES[hang.why]
    died = "; ".join(f"{labels.describe(rank)} died: {how}"
                     for rank, how in sorted(hang.died.items()))
    summary = summary.format(timeout=hang.timeout, grace=hang.grace, died=died,
                             failed=labels.describe_ranks([r for r, _ in failures]))
    where, waiting = _where_lines(labels, hang)
    if hang.why in ("terminated", "died"):
        ended = _terminated(labels, hang, failures, [summary + detail, *where])
        ended.culprits = culprits(labels, sorted(hang.died) or [r for r, _ in failures], summary)
        return ended
    shown = group_texts({rank: str(longrepr) for rank, longrepr in failures}, labels.hosts)
    longreprs = dict(failures)
    groups = [(labels.describe_ranks(g.ranks), longreprs[g.ranks[0]]) for g in shown]
    failure = RankedFailure([*groups, ("hang", "\n".join([summary + detail, *where]))],
                            details=[*(g.differs for g in shown), []])
    crash = failure.reprcrash
    if failures:  # lead with the failing rank's own error
        failure.reprcrash = Crash(crash.path, crash.lineno, f"{crash.message}; left waiting: "
                                  f"{waiting}")
    else:
        failure.reprcrash = Crash("", 0, f"{summary}; {waiting}")
    failure.culprits = culprits(labels, [r for r, _ in failures] or sorted(hang.died),
                                failure.reprcrash.message)
    return failure


def culprits(labels: Labels, ranks: list[int], cause: str) -> list[list[Any]]:
    """``[[host, [global ranks], cause], ...]``: where a synthesized failure happened, in
    the history's form (``shape``)."""
    hosts: dict[str, list[Any]] = {}
    for rank in ranks:
        glob, host = labels.where(rank)
        hosts.setdefault(host, [host, [], cause[:200]])[1].append(glob)
    return list(hosts.values())


def _terminated(labels: Labels, hang: Hang, failures: list[tuple[int, Any]],
                lines: list[str]) -> RankedFailure:
    """The cause is who died; the others' failures ("connection reset") are its
    echo, one line each -- and the launcher's SIGKILL is ~1 s away, so the
    report must be quick to render."""
    firsts = {}
    for rank, longrepr in failures:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr)
        firsts[rank] = text.splitlines()[0][:160] if text else ""
    echoes = [f"  {labels.describe_ranks(g.ranks)} failed: "
              f"{g.differs[0] if g.differs else g.texts[g.ranks[0]]}"
              for g in group_texts(firsts, labels.hosts)]
    title = "rank died" if hang.died else "job terminated"
    failure = RankedFailure([(title, "\n".join([lines[0], *echoes, *lines[1:]]))])
    if hang.died:
        failure.reprcrash = Crash("", 0, lines[0])
        return failure
    dead = (f"no answer from {labels.describe_ranks(hang.missing)}"
            if hang.missing else "every rank answered")
    failure.reprcrash = Crash(
        "", 0, f"the job was terminated (SIGTERM) while this test ran; {dead}")
    return failure
