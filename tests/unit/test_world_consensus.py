"""Pure helpers: rank-range formatting and the collection diff."""

from __future__ import annotations

import pytest

from mpidist.bootstrap.world import World, format_ranks
from mpidist.runner.group import Members
from mpidist.session.collection import describe_mismatch, fingerprint, first_difference


@pytest.mark.parametrize(
    ("ranks", "text"),
    [([0], "0"), ([0, 1, 2, 3], "0-3"), ([3, 0, 2, 1, 7, 9, 10], "0-3,7,9-10"), ([], "")],
)
def test_format_ranks(ranks, text):
    assert format_ranks(ranks) == text


W = World(0, 4, 0, 2, 0, 2, ("a", "a", "b", "b"), (0, 0, 1, 1))


def test_describe():
    assert W.describe(2) == "rank 2/4 (host b)"
    assert W.describe_ranks([0, 1]) == "ranks 0-1/4 (host a)"
    assert W.describe_ranks([1, 2, 3]) == "ranks 1-3/4 (hosts a,b)"
    assert W.hostname == "a"


def test_members_name_the_group_rank_the_global_rank_and_the_host():
    """The watchdog's global numbers, read as a packed group's (hang and death reports)."""
    pair = Members(W, (3, 1))
    assert pair.describe(1) == "rank 1/2 (global 1, host a)"
    assert pair.describe_ranks([3, 1]) == "ranks 0-1/2 (global 1,3, hosts a,b)"
    assert pair.describe(0) == "rank 0/4 (host a)"  # not a member: the world's label
    assert Members(W, (0, 1, 2, 3)).describe_ranks([2, 3]) == W.describe_ranks([2, 3])


def test_fingerprint_is_order_sensitive():
    assert fingerprint(["a", "b"]) == fingerprint(["a", "b"])
    assert fingerprint(["a", "b"]) != fingerprint(["b", "a"])
    assert fingerprint(["ab"]) != fingerprint(["a", "b"])


def test_first_difference():
    assert first_difference(["a", "b"], ["a", "c"]) == (1, "b", "c")
    assert first_difference(["a"], ["a", "b"]) == (1, None, "b")
    assert first_difference(["a", "b"], ["a", "b"]) == (2, None, None)


def test_describe_mismatch_groups_ranks_with_the_same_list():
    lists = [["t::a", "t::b"], ["t::a", "t::b"], ["t::a"], ["t::a"]]
    text = describe_mismatch(lists, W)
    assert "ranks 2-3/4 (host b) collected 1 tests, rank 0 collected 2" in text
    assert "first difference at position 1: rank 0 has t::b, they have <end>" in text
    assert "rank 1" not in text


@pytest.mark.parametrize(
    ("text", "hosts"),
    [("n1", ["n1"]), ("sln[1-2]", ["sln1", "sln2"]),
     ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"])],
)
def test_expand_hostlist(text, hosts):
    from mpidist.bootstrap.slurm import expand_hostlist

    assert expand_hostlist(text) == hosts


def test_slurm_agreement():
    from mpidist.bootstrap.slurm import compare

    good = [{"SLURM_PROCID": str(r), "SLURM_LOCALID": str(r % 2),
             "SLURM_NODEID": str(r // 2), "SLURM_JOB_NODELIST": "a,b"} for r in range(4)]
    assert compare(W, good) == []
    bad = [dict(e) for e in good]
    bad[3]["SLURM_LOCALID"] = "0"
    bad[2]["SLURM_JOB_NODELIST"] = "c"
    assert compare(W, bad) == [
        "rank 2/4 (host b): host b is not in SLURM_JOB_NODELIST=c",
        "rank 3/4 (host b): SLURM_LOCALID=0 but mpidist's local rank is 1",
    ]
    assert compare(W, [{} for _ in range(4)]) == []  # not under srun: nothing to compare
