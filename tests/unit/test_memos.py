"""DTensor's memos are dropped when a rank changes kind of test, and only then."""

from __future__ import annotations

import functools
import sys
import types

import pytest

from mpidist.testing import memos


@pytest.fixture
def probe(monkeypatch):
    """A memo in a module of DTensor's package, holding one entry."""
    pytest.importorskip("torch.distributed.tensor")
    module = types.ModuleType("torch.distributed.tensor._mpidist_probe")

    @functools.cache
    def plan(key: int) -> int:
        return key

    module.plan = plan  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(memos, "_last", [""])
    plan(1)
    return plan


def test_a_change_of_kind_forgets(probe):
    assert not memos.switch("ranks")  # the first test: nothing to forget
    probe(2)
    assert not memos.switch("ranks") and probe.cache_info().currsize == 2
    assert memos.switch("parent") and probe.cache_info().currsize == 0
    probe(3)
    assert not memos.switch("parent") and probe.cache_info().currsize == 1
    assert memos.switch("ranks") and probe.cache_info().currsize == 0


def test_torch_plans_are_memos_it_can_clear():
    """The memo that mixed real and local meshes is one ``forget`` recognises."""
    redistribute = pytest.importorskip("torch.distributed.tensor._redistribute")
    assert isinstance(redistribute._gen_transform_infos, memos._MEMO)
