"""Which CUDA errors poison a context, and what a poisoned rank does with its next test
(the probe itself needs a GPU: tests/integration/test_gpu.py)."""

from __future__ import annotations

from _pytest.reports import TestReport

from mpidist.runner.sticky import Sticky, sticky_error


def test_sticky_errors_are_found_in_a_failures_text():
    assert sticky_error("RuntimeError: CUDA error: device-side assert triggered\nCUDA kernel "
                        "errors might be asynchronously reported") == "device-side assert triggered"
    assert sticky_error("torch.AcceleratorError: CUDA error: an illegal memory access was "
                        "encountered") == "an illegal memory access was encountered"
    assert sticky_error("CUDA error: misaligned address") == "misaligned address"
    # errors that leave the context usable are not sticky
    assert sticky_error("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate") == ""
    assert sticky_error("RuntimeError: CUDA error: invalid device ordinal") == ""
    assert sticky_error("AssertionError: assert 1 == 2") == ""


def test_a_rank_without_cuda_is_never_poisoned(pytester):
    item = pytester.getitem("def test_func():\n    pass\n")
    sticky = Sticky("rank 0/1 (host a)")
    report = TestReport(item.nodeid, item.location, {}, "failed",
                        "RuntimeError: CUDA error: device-side assert triggered", "call")
    sticky.after(item, [report])  # torch's CUDA is not initialised in this process
    assert sticky.poisoned == "" and report.sections == []


def test_a_poisoned_rank_skips_its_next_test_saying_why(pytester):
    items = pytester.getitems("def test_a():\n    pass\ndef test_b():\n    pass\n")
    sticky = Sticky("rank 1/2 (host b)")
    sticky.before(items[0])
    assert items[0].get_closest_marker("skip") is None
    sticky.poisoned = "rank 1/2 (host b)'s CUDA context was poisoned by test_a"
    sticky.before(items[1])
    marker = items[1].get_closest_marker("skip")
    assert marker is not None and marker.kwargs["reason"] == sticky.poisoned
