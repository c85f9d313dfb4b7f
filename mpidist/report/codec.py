"""One rank's result for one test as bytes, and back: JSON only, so it parses but never runs.

Reports cross ranks only through pytest's own ``pytest_report_to_serializable``
/ ``pytest_report_from_serializable`` hooks (as pytest-xdist does), so
plugin-defined report types (pytest 9 subtests) survive, and the bytes are
JSON, so a payload that arrives over MPI or the store can be parsed but never
executed. A rank whose every phase passed with nothing to add sends only the
fixed-size ``Record``; the full payload is sent only by ranks that did not
pass, which keeps the per-test cost of a healthy run flat in the number of
ranks.
"""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from .results import PHASES, RankResult, subtest_digest

if TYPE_CHECKING:
    import pytest
    from _pytest.reports import TestReport

__all__ = ["Record", "decode", "decode_payload", "encode", "is_compact", "result_of", "to_json"]


@dataclass
class Record:
    """The fixed-size part of a rank's result: what the root always receives.

    Attributes:
        payload_len: bytes of the full payload that follows (0: compact, none).
        durations: phase -> seconds, for the phases this rank ran.
        subtests: how many subtests ran (compact: all of them passed).
        digest: 48 bits identifying those subtests (``results.subtest_digest``).
    """

    payload_len: int = 0
    durations: dict[str, float] = field(default_factory=dict)
    subtests: int = 0
    digest: int = 0

    #: doubles on the wire: length, one per phase, subtest count, digest
    SIZE = 3 + len(PHASES)

    def to_array(self) -> array[float]:
        return array("d", [float(self.payload_len)]
                     + [self.durations.get(when, math.nan) for when in PHASES]
                     + [float(self.subtests), float(self.digest)])

    @classmethod
    def from_array(cls, values: Sequence[float]) -> Record:
        n = len(PHASES)
        durations = {when: values[1 + i] for i, when in enumerate(PHASES)
                     if not math.isnan(values[1 + i])}
        return cls(int(values[0]), durations, int(values[1 + n]), int(values[2 + n]))


def is_compact(reports: Sequence[TestReport], subtests: Sequence[TestReport]) -> bool:
    """True when the compact record says everything the root needs: every phase and
    every subtest passed, with nothing to add (a passed subtest is known by its
    identity alone, which the record's digest carries)."""
    return all(
        report.passed and not hasattr(report, "wasxfail") and not report.user_properties
        for group in (reports, subtests) for report in group
    )


def encode(
    config: pytest.Config,
    reports: Sequence[TestReport],
    subtests: Sequence[TestReport],
    *,
    serialize: bool = True,
) -> tuple[Record, bytes | None]:
    """Return the fixed record and, unless compact, the serialized reports
    (``serialize=False``: the record alone, for a root that keeps its objects)."""
    record = Record(0, {report.when: report.duration for report in reports}, len(subtests))
    if not serialize:  # the root's own record is never sent
        return record, None
    if is_compact(reports, subtests):
        record.digest = subtest_digest(subtests) if subtests else 0
        return record, None
    payload = to_json(config, reports, subtests)
    record.payload_len = len(payload)
    return record, payload


def to_json(config: pytest.Config, reports: Sequence[TestReport],
              subtests: Sequence[TestReport], **head: Any) -> bytes:
    """The reports as JSON through pytest's own hook, with ``head``'s fields beside
    them (a packed group's result carries its test's number and index)."""
    to_wire = config.hook.pytest_report_to_serializable
    return json.dumps({
        **head,
        "reports": [to_wire(config=config, report=r) for r in reports],
        "subtests": [to_wire(config=config, report=r) for r in subtests],
    }, default=str).encode()


def decode(config: pytest.Config, rank: int, record: Record, payload: bytes | None) -> RankResult:
    """Rebuild a rank's result from its record and payload."""
    if payload is None:
        return RankResult(rank, None, durations=dict(record.durations),
                          subtest_count=record.subtests, subtest_digest=record.digest)
    return decode_payload(config, rank, payload)


def decode_payload(config: pytest.Config, rank: int, payload: bytes) -> RankResult:
    """Rebuild a rank's full result from its payload alone.

    Raises:
        ValueError: the payload is not the JSON ``encode`` writes.
    """
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("a result payload must be a JSON object")
    return result_of(config, rank, data)


def result_of(config: pytest.Config, rank: int, data: dict[str, Any]) -> RankResult:
    """A rank's full result from a payload already parsed."""
    return RankResult(rank, [_from_wire(config, d) for d in data["reports"]],
                      [_from_wire(config, d) for d in data["subtests"]])


def _from_wire(config: pytest.Config, data: dict[str, Any]) -> TestReport:
    # JSON has no tuples; pytest's reports hold some (location, a skip's longrepr,
    # user properties) and code compares them as tuples.
    data = dict(data)
    if isinstance(data.get("location"), list):
        data["location"] = tuple(data["location"])
    if isinstance(data.get("longrepr"), list):
        data["longrepr"] = tuple(data["longrepr"])
    if isinstance(data.get("user_properties"), list):
        data["user_properties"] = [tuple(p) if isinstance(p, list) else p
                                   for p in data["user_properties"]]
    if isinstance(data.get("sections"), list):
        data["sections"] = [tuple(s) if isinstance(s, list) else s for s in data["sections"]]
    report: TestReport = config.hook.pytest_report_from_serializable(config=config, data=data)
    context = data.get("_subtest.context")
    if isinstance(context, dict) and hasattr(report, "context"):
        # pytest 9 applies saferepr to subtest kwargs again when rebuilding the
        # context (i=0 comes back as i='0'); keep the sender's strings, so the
        # same subtest has the same identity on every rank.
        object.__setattr__(report.context, "kwargs", dict(context["kwargs"]))
    return report
