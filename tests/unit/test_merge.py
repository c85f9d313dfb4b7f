"""merge: the rules that decide what rank 0 reports, on hand-made reports."""

from __future__ import annotations

import pytest
from _pytest.reports import TestReport

from mpidist.bootstrap.world import World
from mpidist.report.failures import RankedFailure
from mpidist.report.merge import merge_test, outcome_map
from mpidist.report.results import ROOT_DECIDES, SAT_OUT, RankResult


def world(n: int, hosts: tuple[str, ...] | None = None) -> World:
    hosts = hosts or tuple("n1" if r < n // 2 or n == 1 else "n2" for r in range(n))
    nodes = tuple(sorted(set(hosts)).index(h) for h in hosts)
    return World(0, n, 0, hosts.count(hosts[0]), 0, len(set(hosts)), hosts, nodes)


def rep(when: str, outcome: str = "passed", longrepr: object = None, *,
        duration: float = 0.1, wasxfail: str | None = None,
        sections: list[tuple[str, str]] | None = None, props=None) -> TestReport:
    extra = {} if wasxfail is None else {"wasxfail": wasxfail}
    return TestReport("t.py::test", ("t.py", 1, "test"), {}, outcome, longrepr, when,
                      sections or [], duration, 0, 0, props or [], **extra)


def passed(rank: int, **kw) -> RankResult:
    return RankResult(rank, [rep("setup"), rep("call", **kw), rep("teardown")])


def compact(rank: int, call: float = 0.1) -> RankResult:
    return RankResult(rank, None, durations={"setup": 0.0, "call": call, "teardown": 0.0})


def by_when(reports: list[TestReport]) -> dict[str, TestReport]:
    return {r.when: r for r in reports}


def test_all_passed_is_passed_with_slowest_duration():
    merged = by_when(merge_test(world(4), [passed(0), compact(1, 0.5), compact(2), compact(3)]))
    assert [r.outcome for r in merged.values()] == ["passed"] * 3
    assert merged["call"].duration == 0.5
    assert ("mpi_outcomes", "passed=0-3") in merged["teardown"].user_properties


def test_failure_on_one_rank_fails_the_test_and_names_it():
    results = [passed(0), RankResult(1, [rep("setup"), rep("call", "failed", "E boom",
                                          sections=[("Captured stdout call", "hi")]),
                                          rep("teardown")]), compact(2), compact(3)]
    call = by_when(merge_test(world(4), results))["call"]
    assert call.failed
    assert isinstance(call.longrepr, RankedFailure)
    assert call.longrepr.reprcrash.message == "[rank 1/4 (host n1)] E boom"
    assert call.sections == [("Captured stdout call [rank 1/4 (host n1)]", "hi")]
    assert "[rank 1/4 (host n1)]\nE boom" in str(call.longrepr)
    assert str(call.longrepr).splitlines()[0] == "[rank 1/4 (host n1)] E boom"


def test_identical_failures_grouped_once():
    results = [RankResult(r, [rep("setup"), rep("call", "failed", "E same"), rep("teardown")])
               for r in range(4)]
    call = by_when(merge_test(world(4), results))["call"]
    assert str(call.longrepr).split("\n", 1)[1].count("E same") == 1  # body, below the summary
    assert call.longrepr.groups[0][0] == "ranks 0-3/4 (hosts n1,n2)"


def test_different_failures_each_shown():
    results = [RankResult(r, [rep("setup"), rep("call", "failed", f"E {('even', 'odd')[r % 2]}"),
                              rep("teardown")]) for r in range(4)]
    call = by_when(merge_test(world(4), results))["call"]
    labels = [label for label, _ in call.longrepr.groups]
    assert labels == ["ranks 0,2/4 (hosts n1,n2)", "ranks 1,3/4 (hosts n1,n2)"]
    assert call.longrepr.reprcrash.message.startswith("[ranks 0-3/4 (hosts n1,n2)]")


def skip(rank: int, reason: str = "nope") -> RankResult:
    return RankResult(rank, [rep("setup", "skipped", ("t.py", 1, reason)), rep("teardown")])


def test_skipped_only_when_every_rank_skipped():
    merged = merge_test(world(2), [skip(0), skip(1)])
    assert by_when(merged)["setup"].skipped
    assert "call" not in by_when(merged)


def test_skip_reasons_that_differ_are_listed():
    setup = by_when(merge_test(world(2), [skip(0, "a"), skip(1, "b")]))["setup"]
    assert setup.longrepr[2] == "a (on rank 0/2 (host n1)); b (on rank 1/2 (host n2))"


def test_skip_on_some_ranks_is_a_failure_that_says_so():
    merged = by_when(merge_test(world(4), [passed(0), skip(1, "needs GPU"),
                                           compact(2), compact(3)]))
    assert merged["setup"].failed
    text = str(merged["setup"].longrepr)
    assert "skipped on 1 of 4 ranks only" in text and "needs GPU" in text
    assert "call" not in merged  # pytest logs no call after a failed setup


def test_setup_error_on_one_rank_is_an_error_and_mentions_body_failures():
    results = [RankResult(0, [rep("setup"), rep("call", "failed", "E body"), rep("teardown")]),
               RankResult(1, [rep("setup", "failed", "E fixture"), rep("teardown")])]
    merged = by_when(merge_test(world(2), results))
    assert merged["setup"].failed and "call" not in merged
    assert "the test body also failed on rank 0/2 (host n1)" in str(merged["setup"].longrepr)
    assert outcome_map(world(2), results) == "failed=0;error=1"


def test_teardown_error_stays_an_error():
    results = [passed(0), RankResult(1, [rep("setup"), rep("call"),
                                         rep("teardown", "failed", "E td")])]
    merged = by_when(merge_test(world(2), results))
    assert merged["call"].passed and merged["teardown"].failed


def xfail(rank: int) -> RankResult:
    return RankResult(rank, [rep("setup"), rep("call", "skipped", ("t.py", 1, "x"),
                                               wasxfail="known"), rep("teardown")])


def xpass(rank: int, strict: bool = False) -> RankResult:
    call = (rep("call", "failed", "[XPASS(strict)] known") if strict
            else rep("call", "passed", wasxfail="known"))
    return RankResult(rank, [rep("setup"), call, rep("teardown")])


@pytest.mark.parametrize(
    ("results", "outcome", "wasxfail"),
    [
        ([xfail(0), xfail(1)], "skipped", "known"),
        ([xpass(0), xfail(1)], "skipped", "known (failed on rank 1/2 (host n2), passed elsewhere)"),
        ([xpass(0), xpass(1)], "passed", "known"),
        ([xpass(0, True), xfail(1)], "skipped",
         "known (failed on rank 1/2 (host n2), passed elsewhere)"),
        ([xpass(0, True), xpass(1, True)], "failed", None),
    ],
    ids=["xfail-all", "xfail-some", "xpass-all", "strict-xpass-some", "strict-xpass-all"],
)
def test_xfail_semantics_across_ranks(results, outcome, wasxfail):
    call = by_when(merge_test(world(2), results))["call"]
    assert call.outcome == outcome
    assert getattr(call, "wasxfail", None) == wasxfail
    if outcome == "failed":
        assert "[XPASS(strict)] known" in str(call.longrepr)


def test_real_failure_beats_xfail():
    results = [xfail(0), RankResult(1, [rep("setup"), rep("call", "failed", "E"),
                                        rep("teardown")])]
    assert by_when(merge_test(world(2), results))["call"].failed


def test_user_properties_are_unioned():
    results = [RankResult(0, [rep("setup"), rep("call", props=[("a", 1)]), rep("teardown")]),
               RankResult(1, [rep("setup"), rep("call", props=[("a", 1), ("b", 2)]),
                              rep("teardown")])]
    call = by_when(merge_test(world(2), results))["call"]
    assert call.user_properties == [("a", 1), ("mpi_outcomes", "passed=0-1"), ("b", 2)]


class _Ctx:
    def __init__(self, i: int) -> None:
        self.msg, self.kwargs = "part", {"i": str(i)}


def sub(i: int, outcome: str = "passed") -> TestReport:
    report = rep("call", outcome, "E sub" if outcome == "failed" else None)
    report._sub_test_description = lambda: f"[part] (i={i})"  # type: ignore[attr-defined]
    return report


def test_subtests_merge_by_identity_and_fail_the_test():
    r0 = RankResult(0, [rep("setup"), rep("call"), rep("teardown")], [sub(0), sub(1)])
    r1 = RankResult(1, [rep("setup"), rep("call"), rep("teardown")], [sub(0), sub(1, "failed")])
    merged = merge_test(world(2), [r0, r1])
    assert [r.when for r in merged] == ["setup", "call", "call", "call", "teardown"]
    subs, top = merged[1:3], merged[3]
    assert [s.outcome for s in subs] == ["passed", "failed"]
    assert "rank 1/2" in str(subs[1].longrepr)
    assert top.failed and top.longrepr == "contains 1 failed subtest"


def test_subtest_missing_on_a_rank_is_a_failure():
    r0 = RankResult(0, [rep("setup"), rep("call"), rep("teardown")], [sub(0), sub(1)])
    r1 = RankResult(1, [rep("setup"), rep("call"), rep("teardown")], [sub(0)])
    subs = merge_test(world(2), [r0, r1])[1:3]
    assert subs[1].failed and "never ran on these ranks" in str(subs[1].longrepr)


def compact_subs(rank: int, subs: list[TestReport]) -> RankResult:
    from mpidist.report.results import subtest_digest

    return RankResult(rank, None, durations={"setup": 0.0, "call": 0.1, "teardown": 0.0},
                      subtest_count=len(subs), subtest_digest=subtest_digest(subs))


def test_compact_rank_with_the_roots_subtests_passes_them():
    r0 = RankResult(0, [rep("setup"), rep("call"), rep("teardown")], [sub(0), sub(1)])
    merged = merge_test(world(2), [r0, compact_subs(1, [sub(0), sub(1)])])
    assert [(r.when, r.outcome) for r in merged] == [
        ("setup", "passed"), ("call", "passed"), ("call", "passed"), ("call", "passed"),
        ("teardown", "passed")]


def test_compact_rank_with_other_subtests_fails_the_test_and_says_so():
    r0 = RankResult(0, [rep("setup"), rep("call"), rep("teardown")], [sub(0), sub(1)])
    merged = merge_test(world(2), [r0, compact_subs(1, [sub(0)])])
    call = merged[3]
    assert call.when == "call" and call.failed
    assert "rank 1/2 (host n2) passed 1 subtest(s), not the same ones as rank 0 (2)" in str(
        call.longrepr)


def test_agreed_skip_is_one_skip_with_the_agreed_reason():
    deferred = rep("call", "skipped", ("t.py", 1, "Skipped: skipped on rank 1/2 (host n2): gpu"))
    deferred.mpi_collective_skip = True
    results = [RankResult(0, [rep("setup"), deferred, rep("teardown")]),
               RankResult(1, [rep("setup", "skipped", ("t.py", 9, "Skipped: gpu")),
                              rep("teardown")])]
    merged = merge_test(world(2), results)
    assert [(r.when, r.outcome) for r in merged] == [("setup", "skipped"),
                                                      ("teardown", "passed")]
    assert merged[0].longrepr == ("t.py", 9, "Skipped: skipped on rank 1/2 (host n2): gpu")


def test_body_skip_without_agreement_is_not_an_agreed_skip():
    results = [RankResult(0, [rep("setup"), rep("call", "skipped", ("t.py", 1, "x")),
                              rep("teardown")]),
               RankResult(1, [rep("setup", "skipped", ("t.py", 9, "gpu")), rep("teardown")])]
    assert by_when(merge_test(world(2), results))["setup"].failed


def sat_out(rank: int) -> RankResult:
    call = rep("call", "skipped", ("t.py", 1, "Skipped: sat out: T runs on 2 of 4 ranks"))
    setattr(call, SAT_OUT, True)
    return RankResult(rank, [rep("setup"), call, rep("teardown")])


def test_ranks_that_sat_out_do_not_count_and_are_named():
    merged = by_when(merge_test(world(4), [passed(0), compact(1), sat_out(2), sat_out(3)]))
    assert [r.outcome for r in merged.values()] == ["passed"] * 3
    assert ("mpi_outcomes", "passed=0-1;sat_out=2-3") in merged["teardown"].user_properties


def test_a_failure_among_participants_says_who_ran_the_test():
    failing = RankResult(1, [rep("setup"), rep("call", "failed", "E boom"), rep("teardown")])
    call = by_when(merge_test(world(4), [passed(0), failing, sat_out(2), sat_out(3)]))["call"]
    assert call.failed
    assert str(call.longrepr).splitlines()[0] == "[rank 1/4 (host n1)] E boom"
    assert "ran on ranks 0-1/4 (host n1); 2-3 sat out (the test's world_size is 2)" in \
        str(call.longrepr)


def test_a_participant_skip_is_still_a_skip():
    skip = RankResult(0, [rep("setup"), rep("call", "skipped", ("t.py", 1, "Skipped: no GPU")),
                          rep("teardown")])
    skip1 = RankResult(1, [rep("setup"), rep("call", "skipped", ("t.py", 1, "Skipped: no GPU")),
                           rep("teardown")])
    call = by_when(merge_test(world(4), [skip, skip1, sat_out(2), sat_out(3)]))["call"]
    assert call.skipped and call.longrepr[2] == "Skipped: no GPU"


def test_a_failure_mentions_the_ranks_that_skipped_instead():
    results = [RankResult(0, [rep("setup"), rep("call", "failed", "E connection closed"),
                              rep("teardown")]),
               RankResult(1, [rep("setup"), rep("call", "skipped", ("t.py", 1, "Skipped: no GPU")),
                              rep("teardown")])]
    call = by_when(merge_test(world(2), results))["call"]
    assert call.failed
    assert "skipped on rank 1/2 (host n2): Skipped: no GPU" in str(call.longrepr)


def torch_child(rank: int, outcome: str, longrepr: object = None) -> RankResult:
    """A rank's result for a test run through torch's child protocol."""
    call = rep("call", outcome, longrepr)
    setattr(call, ROOT_DECIDES, True)
    return RankResult(rank, [rep("setup"), call, rep("teardown")])


SKIP = ("t.py", 1, "Skipped: no GPU")


@pytest.mark.parametrize(("root", "other", "expected"), [
    ("passed", "skipped", "passed"),  # torch reads the first process's exit code
    ("skipped", "passed", "skipped"),
    ("passed", "failed", "failed"),  # an errored process fails the test in torch too
    ("skipped", "failed", "failed"),
])
def test_torch_protocol_tests_follow_the_first_rank_unless_one_failed(root, other, expected):
    def longrepr(outcome: str) -> object:
        return SKIP if outcome == "skipped" else "E boom" if outcome == "failed" else None

    results = [torch_child(0, root, longrepr(root)), torch_child(1, other, longrepr(other))]
    assert by_when(merge_test(world(2), results))["call"].outcome == expected


def test_without_the_torch_protocol_a_partial_skip_still_fails():
    results = [passed(0), RankResult(1, [rep("setup"), rep("call", "skipped", SKIP),
                                         rep("teardown")])]
    assert by_when(merge_test(world(2), results))["call"].outcome == "failed"
