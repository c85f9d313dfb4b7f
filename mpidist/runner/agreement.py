"""The ranks' agreement before a test's body: one non-blocking allreduce per test.

Every rank of the group contributes the status of its setup (passed, skipped,
failed: the worst wins), and the root two more words: whether it has stopped
the session (every rank then stops after this test) and whether this test waits
for a verdict (``stops.needs_verdict``). When some setup did not pass, an
allgather says which ranks and why, and nobody runs the body.

The root may post its part before it logs the previous test (``Agreement.post``
from its setup report, ``TestPipeline``): the other ranks then run the body
while the root logs, instead of waiting for it at this allreduce. What the
root contributes cannot depend on that logging: a test whose logged result
could stop the session waits for a verdict and is logged before the next test
begins.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .group import Group

__all__ = ["FAILED", "PASSED", "SKIPPED", "Agreement", "setup_status"]

# the status of a rank's setup (the maximum wins)
PASSED, SKIPPED, FAILED = 0, 1, 2


def setup_status(report: pytest.TestReport) -> int:
    """The status a setup report contributes."""
    return FAILED if report.failed else SKIPPED if report.skipped else PASSED


@dataclass
class Agreement:
    """One rank's posted contribution; ``outcome`` waits for the group's.

    Attributes:
        request: the posted ``Iallreduce``.
        status: this rank's setup status.
        mine: the contribution (referenced until the request completes).
        worst: the group's result, filled in when it completes.
    """

    request: Any
    status: int
    mine: array[int]
    worst: array[int]

    @classmethod
    def post(cls, group: Group, status: int, session: pytest.Session,
             needs_verdict: bool) -> Agreement:
        """Post this rank's part (the root's also says stop? and needs a verdict?)."""
        from mpi4py import MPI

        stop = 0
        if group.is_root:
            stop = int(bool(session.shouldfail)) | 2 * int(bool(session.shouldstop))
        mine = array("i", [status, stop, int(needs_verdict) if group.is_root else 0])
        worst = array("i", [0, 0, 0])
        request = group.comm.Iallreduce([mine, MPI.INT], [worst, MPI.INT], op=MPI.MAX)
        request.Test()  # starts it now in MPIs that progress only inside calls
        return cls(request, status, mine, worst)

    def outcome(self, group: Group, reason: str) -> tuple[str, bool, bool, bool]:
        """Collective: after the request completed, why the body does not run ("":
        it runs), and the root's words: -x stop, stop, needs a verdict.
        ``reason``: why this rank's setup skipped."""
        worst = self.worst
        verdict = ""
        if worst[0] != PASSED:
            states = group.comm.allgather((self.status, reason))
            worst_status = max(s for s, _ in states)
            ranks = [r for r, (s, _) in enumerate(states) if s == worst_status]
            where = group.describe_ranks(ranks)
            if worst_status == FAILED:
                verdict = f"not run: setup failed on {where}"
            else:
                reasons = sorted({states[r][1] for r in ranks})
                verdict = f"skipped on {where}: {'; '.join(reasons)}"
        return verdict, bool(worst[1] & 1), bool(worst[1] & 2), bool(worst[2])
