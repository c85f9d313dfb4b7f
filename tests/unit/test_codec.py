"""codec and the exchange record: reports survive the trip through pytest's own
serialization hooks, as JSON."""

from __future__ import annotations

import math

import pytest
from _pytest.reports import TestReport

from mpidist.report.codec import decode, encode, is_compact
from mpidist.runner.exchange import Record


def rep(when: str, outcome: str = "passed", **kw) -> TestReport:
    return TestReport("t.py::test", ("t.py", 1, "test"), {}, outcome,
                      "E boom" if outcome == "failed" else None, when, [], 0.25, 0, 0,
                      kw.pop("props", []), **kw)


def test_passing_rank_sends_only_the_record(pytestconfig):
    reports = [rep("setup"), rep("call"), rep("teardown")]
    record, payload = encode(pytestconfig, reports, [])
    assert payload is None and len(record.to_array()) == Record.SIZE and record.payload_len == 0
    result = decode(pytestconfig, 3, record, None)
    assert result.reports is None and result.durations == {
        "setup": 0.25, "call": 0.25, "teardown": 0.25}


def test_setup_only_run_marks_missing_phase(pytestconfig):
    record, _ = encode(pytestconfig, [rep("setup"), rep("teardown")], [])
    assert math.isnan(record.to_array()[2])
    back = Record.from_array(record.to_array())
    assert "call" not in decode(pytestconfig, 1, back, None).durations


@pytest.mark.parametrize(
    "reports",
    [[rep("setup"), rep("call", "failed"), rep("teardown")],
     [rep("setup"), rep("call", wasxfail="x"), rep("teardown")],
     [rep("setup"), rep("call", props=[("k", "v")]), rep("teardown")]],
    ids=["failed", "xpass", "user-properties"],
)
def test_anything_notable_sends_full_reports(pytestconfig, reports):
    assert not is_compact(reports, [])
    record, payload = encode(pytestconfig, reports, [])
    assert payload is not None and record.payload_len == len(payload)
    back = decode(pytestconfig, 2, record, payload)
    assert back.reports is not None
    assert [(r.when, r.outcome) for r in back.reports] == [
        (r.when, r.outcome) for r in reports]
    assert back.reports[1].longrepr == reports[1].longrepr
    assert back.reports[1].user_properties == reports[1].user_properties


def test_subtest_context_keeps_the_senders_strings(pytestconfig):
    from _pytest.subtests import SubtestContext, SubtestReport

    base = rep("call", "failed")  # a failed subtest travels in full
    report = SubtestReport._new(base, SubtestContext(msg="m", kwargs={"i": 0}), None, None)
    record, payload = encode(pytestconfig, [rep("setup"), rep("call"), rep("teardown")],
                             [report])
    back = decode(pytestconfig, 1, record, payload)
    assert back.subtests[0]._sub_test_description() == "[m] (i=0)"
    assert report._sub_test_description() == "[m] (i=0)"


def test_payload_is_json_not_pickle(pytestconfig):
    import json

    _, payload = encode(pytestconfig, [rep("setup"), rep("call", "failed"), rep("teardown")], [])
    assert payload is not None and isinstance(json.loads(payload), dict)
    with pytest.raises(ValueError):
        decode(pytestconfig, 1, Record(3), b"\x80\x04K\x01.")  # a pickle is refused


def test_passed_subtests_travel_as_count_and_digest(pytestconfig):
    from _pytest.subtests import SubtestContext, SubtestReport

    from mpidist.report.results import subtest_digest

    subs = [SubtestReport._new(rep("call"), SubtestContext(msg=None, kwargs={"i": i}), None,
                               None) for i in range(3)]
    record, payload = encode(pytestconfig, [rep("setup"), rep("call"), rep("teardown")], subs)
    assert payload is None and record.subtests == 3
    back = Record.from_array(record.to_array())
    assert back.digest == record.digest == subtest_digest(subs) and back.digest < 2**48
    result = decode(pytestconfig, 1, back, None)
    assert result.subtest_count == 3 and result.subtest_digest == record.digest
    assert subtest_digest(subs[:2]) != record.digest


def test_the_root_serializes_only_for_the_watchdog(pytestconfig):
    reports = [rep("setup"), rep("call", "skipped"), rep("teardown")]
    assert encode(pytestconfig, reports, [], serialize=False)[1] is None
    assert encode(pytestconfig, reports, [])[1] is not None
