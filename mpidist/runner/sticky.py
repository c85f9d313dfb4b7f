"""A CUDA error that poisons a rank's context: said in the test's report, and that
rank's later tests skipped with the reason instead of failing one by one.

CUDA's sticky errors (a device-side assert, an illegal address, ...) leave the
process's CUDA context unusable: every later CUDA call fails with the same error,
whatever the test. A persistent rank would then fail every later GPU test for no
reason of their own. After a test on a rank that has initialised CUDA fails with
one of these errors (``sticky_error``, on the failure's text), the rank probes
its device (``probe``: a synchronize and a tiny kernel). If the probe fails too,
the context is poisoned: the test's call report says so, and each later test on
this rank is skipped in its setup with the reason, which the body agreement
turns into a skip on the test's other ranks too (no rank runs a collective the
poisoned rank cannot join). ``mpidist run`` users can rerun them; under
``--mpi-isolate`` the error dies with the test's child and nothing else is hit.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from ..report.results import report_text

if TYPE_CHECKING:
    from _pytest.reports import TestReport

__all__ = ["STICKY", "Sticky", "probe", "sticky_error"]

#: CUDA runtime messages of errors that leave the context unusable (cudaError_t
#: descriptions: device-side assert, illegal address, launch failure, misaligned
#: address, illegal instruction, hardware stack error, invalid PC, launch timeout,
#: uncorrectable ECC)
STICKY = (
    "device-side assert triggered",
    "an illegal memory access was encountered",
    "unspecified launch failure",
    "misaligned address",
    "an illegal instruction was encountered",
    "hardware stack error",
    "invalid program counter",
    "the launch timed out and was terminated",
    "uncorrectable ECC error encountered",
)
_SECTION = "mpidist: CUDA context"


def sticky_error(text: str) -> str:
    """The first sticky CUDA error ``text`` mentions, or "" (pure)."""
    lowered = text.lower()
    return next((phrase for phrase in STICKY if phrase.lower() in lowered), "")


def probe() -> str:
    """"" if this process's CUDA context still works, else the error it raises now."""
    torch = sys.modules.get("torch")
    if torch is None:
        return ""
    try:
        torch.cuda.synchronize()
        (torch.ones(1, device="cuda") + 1).cpu()
    except Exception as exc:  # torch.AcceleratorError, RuntimeError: what CUDA says
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ""


class Sticky:
    """This rank's verdict on its own CUDA context, kept for the rest of the session.

    Args:
        label: this rank as the report names it (``rank 1/4 (host n1)``).
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.poisoned = ""  # why this rank's later tests are skipped

    def before(self, item: pytest.Item) -> None:
        """A poisoned rank skips ``item`` in its setup, saying why."""
        if self.poisoned:
            item.add_marker(pytest.mark.skip(reason=self.poisoned))

    def after(self, item: pytest.Item, reports: list[TestReport]) -> None:
        """After this rank ran ``item``: is its CUDA context poisoned now? Say so in
        the failed report."""
        torch = sys.modules.get("torch")
        if self.poisoned or torch is None or not torch.cuda.is_initialized():
            return
        failed = [r for r in reports if r.failed]
        found = next((e for e in (sticky_error(report_text(r)) for r in failed) if e), "")
        if not found:
            return
        now = probe()
        if not now:
            return  # the error did not stick (or it was another process's)
        self.poisoned = (f"{self.label}'s CUDA context was poisoned by {item.nodeid} "
                         f"({found}); CUDA now says: {now}")
        failed[-1].sections.append((
            _SECTION, f"{self.poisoned}\nmpidist skips this rank's later tests (each with "
            "this reason); --mpi-isolate runs each test in a fresh process instead"))
