"""grouping: a failure that differs by rank only in its numbers is one failure."""

from __future__ import annotations

from mpidist.bootstrap.world import World, format_hosts
from mpidist.report.failures import DIFFERS, Crash
from mpidist.report.grouping import group_texts, summarize
from mpidist.report.merge import merge_test
from mpidist.report.results import RANK_TEXTS, RankResult

from .test_merge import rep


def scattered(n: int, per_host: int) -> World:
    hosts = tuple(f"n{r // per_host + 1}" for r in range(n))
    return World(0, n, 0, per_host, 0, len(set(hosts)), hosts,
                 tuple(r // per_host for r in range(n)))


def text(rank: int) -> str:
    return (f"    def test_x():\n>       assert rank < 0\nE       AssertionError: rank {rank} "
            f"sees a value of {rank * 7} in <Intracomm object at 0x7f{rank:04x}c0>\n"
            "t.py:17: AssertionError")


class Longrepr:
    """What a rank's failure carries: its text and pytest's one-line ``reprcrash``."""

    def __init__(self, rank: int) -> None:
        self.text = text(rank)
        self.reprcrash = Crash("t.py", 17, self.text.splitlines()[2][8:])

    def __str__(self) -> str:
        return self.text


def test_texts_that_differ_in_numbers_are_one_group_with_the_values_summarised():
    groups = group_texts({r: text(r) for r in range(128)})
    assert len(groups) == 1 and groups[0].ranks == list(range(128))
    assert groups[0].differs == [
        "E       AssertionError: rank {0-127} sees a value of {0, 7, 14, … 889} in "
        "<Intracomm object at {128 addresses}>"]


def test_identical_texts_have_nothing_that_differs():
    groups = group_texts({0: "E boom", 1: "E boom"})
    assert [(g.ranks, g.differs, g.identical) for g in groups] == [([0, 1], [], True)]


def test_other_words_make_other_groups():
    groups = group_texts({0: "E even 0", 1: "E odd 1", 2: "E even 2"})
    assert [g.ranks for g in groups] == [[0, 2], [1]]


def test_host_names_are_masked_too():
    groups = group_texts({0: "lost alpha", 1: "lost beta"}, hosts=("alpha", "beta"))
    assert len(groups) == 1 and groups[0].differs == ["lost {alpha, beta}"]


def test_summaries():
    assert summarize(["3", "3", "5"], [0, 1, 2]) == "{3, 5}"
    assert summarize([str(r) for r in range(9)], list(range(9))) == "{0-8}"
    assert summarize([str(r * r) for r in range(9)], []) == "{0, 1, 4, … 64} (9 distinct)"
    assert summarize(["1.5", "2.5", "0.5", "9.0"], []) == "{4 values, 0.5 to 9.0}"


def test_hosts_past_three_are_counted_and_folded():
    assert format_hosts(["n1", "n2"]) == "hosts n1,n2"
    assert format_hosts([f"gpu-{i:02d}" for i in range(1, 17)]) == "16 hosts: gpu-[01-16]"
    assert format_hosts([f"n{i}" for i in range(1, 17)] + ["login"]) == \
        "17 hosts: n[1-16],login"


def test_a_failure_on_every_rank_of_128_is_one_page_and_keeps_every_text():
    world = scattered(128, 8)
    results = [RankResult(r, [rep("setup"), rep("call", "failed", Longrepr(r),
                                                 sections=[("Captured stdout call",
                                                            f"rank {r} says hi\n")]),
                              rep("teardown")]) for r in range(128)]
    call = next(r for r in merge_test(world, results) if r.when == "call")
    shown = str(call.longrepr).splitlines()
    assert len(shown) <= 10, shown
    assert shown[1] == "[ranks 0-127/128 (16 hosts: n[1-16])]"
    assert DIFFERS in shown
    assert call.longrepr.reprcrash.message == (
        "[ranks 0-127/128 (16 hosts: n[1-16])] AssertionError: rank {0-127} sees a value of "
        "{0, 7, 14, … 889} in <Intracomm object at {128 addresses}>")
    kept = getattr(call, RANK_TEXTS)
    assert len(kept) == 127 + 127  # every text but the one shown: the failure, the output
    assert kept["rank 5/128 (host n1)"] == text(5)
    assert kept["rank 9/128 (host n2): Captured stdout call"] == "rank 9 says hi\n"
    assert len(call.sections) == 1 and call.sections[0][1].startswith("rank 0 says hi")
