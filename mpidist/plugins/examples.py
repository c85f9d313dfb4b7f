"""hypothesis under MPI: every rank of a test's group draws the same examples,
judges each one alike, and leaves the test together.

Every rank runs the test's body with the examples hypothesis draws, so the
ranks' engines must make the same decisions in the same order: a collective
called with a different size on each rank aborts gloo (SIGABRT) or hangs. An
engine decides from its seed, the example database, and each example's result;
here all three agree:

* **The seed** and **the database**: ``draws``.
* **Each example's result** (``_Steps``). Before each example's body the ranks
  check that all are still running examples; after it they agree on its result
  (one allreduce of eight words each time). If the body failed on any rank, every
  rank's engine sees it fail -- the failing ranks with their own error, the others
  with ``ExampleFailedElsewhere``, one class per failure origin -- so every engine
  shrinks the same way. An ``assume`` that fails anywhere fails everywhere.
  hypothesis's deadline is judged on the slowest rank's time of the body (its own
  clock would decide per rank); a skip, an interrupt or a rank that left the
  engine (a health check on its own clock) ends the test on every rank at the
  next example, named, instead of a collective that never matches.

A rank whose engine ended keeps answering the others' rounds (``leave``) until
every rank's has, so the number of rounds always matches. A rank whose example did
not pass waits for the others' verdict at most ``--mpi-peer-grace`` seconds, as
after any failure: they may wait in a collective of the body it left, and then it
leaves the test with its error, and the watchdog reports where they wait.
"""

from __future__ import annotations

import hashlib
import sys
import time
from array import array
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Generator

import pytest

from ..report.results import CALL_MARKS, ECHO
from .draws import agreed_settings, seed_hypothesis

if TYPE_CHECKING:
    from ..runner.group import Group

__all__ = ["ExampleAgreement", "ExampleFailedElsewhere", "classify", "origin_of", "react"]

# The kinds of an example's result on a rank; the group's is the maximum.
OK, INVALID, FAIL, ESCAPE = 0, 1, 2, 3
# A round's words (all reduced with MAX; a minimum travels negated).
_LEFT, _OP, _NEG_OP, _KIND, _NEG_FAILED, _NEG_GONE, _ORIGIN, _MICROS = range(8)
_PRE, _POST = 1, 2
_NONE = -(1 << 62)  # "no rank" in a negated minimum


class ExampleFailedElsewhere(Exception):
    """This example failed on another rank of the test's group (its report says how)."""


class _Left(BaseException):
    """Leaves hypothesis's engine at once, on every rank: the ranks can no longer
    run the same examples (one skipped, was interrupted or left the engine). Not an
    ``Exception``, so hypothesis does not shrink it; the test fails with its text."""


class _Abandoned(BaseException):
    """This rank's example did not pass, and the others did not finish theirs within
    the peer grace: they wait in a collective of the body that this rank left. The
    rank leaves the test with its own error, as in any test (the watchdog then
    reports where the others wait, and ends the job)."""

    def __init__(self, error: BaseException, grace: float) -> None:
        super().__init__()
        self.error = error
        self.grace = grace


_PEERS: dict[int, type[ExampleFailedElsewhere]] = {}


def _peer_class(origin: int) -> type[ExampleFailedElsewhere]:
    """One class per failure origin: hypothesis tells bugs apart by the exception's
    type and line, so a rank that did not fail must raise a distinct class for each
    distinct failure of the ranks that did, or its engine would merge two bugs."""
    cls = _PEERS.get(origin)
    if cls is None:
        cls = _PEERS[origin] = type("ExampleFailedElsewhere", (ExampleFailedElsewhere,), {})
    return cls


def origin_of(exc: BaseException) -> int:
    """A 63-bit digest of where ``exc`` comes from: its type and innermost frame
    (stable across processes, unlike ``hash``)."""
    tb, where = exc.__traceback__, ""
    while tb is not None:
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    kind = type(exc)
    text = f"{kind.__module__}.{kind.__qualname__}@{where}".encode()
    return int.from_bytes(hashlib.sha1(text, usedforsecurity=False).digest()[:8], "big") >> 1


def classify(exc: BaseException | None) -> int:
    """The kind of one rank's example result (pure): hypothesis's own rules for what
    a failure is (``failure_exceptions_to_catch``), ``assume`` as invalid, and
    anything else (a skip, an interrupt, the engine's control flow) as leaving."""
    if exc is None:
        return OK
    from hypothesis.errors import UnsatisfiedAssumption

    if isinstance(exc, UnsatisfiedAssumption):
        return INVALID
    if isinstance(exc, (Exception, SystemExit, GeneratorExit, pytest.fail.Exception)):
        return FAIL
    return ESCAPE


def react(mine: int, group: int, deadline_exceeded: bool) -> str:
    """What this rank raises after an example (pure): ``"return"`` (the example
    passed everywhere), ``"own"`` (re-raise this rank's exception), ``"invalid"``,
    ``"failed-elsewhere"``, ``"left"`` or ``"deadline"``."""
    if group == OK:
        return "deadline" if deadline_exceeded else "return"
    if mine == group or (mine == FAIL and group == ESCAPE):
        return "own"  # a failure is kept: it says more than another rank's leaving
    return {INVALID: "invalid", FAIL: "failed-elsewhere", ESCAPE: "left"}[group]


class _Steps:
    """The rounds of one hypothesis test on a group (see the module docstring)."""

    def __init__(self, group: Group, grace: float) -> None:
        self.group = group
        self.grace = grace
        self.mine = array("q", [0] * 8)
        self.theirs = array("q", [0] * 8)
        self.echo = False  # this rank's last example failed only because another's did
        self.origin = self.failed_first = 0
        self.slowest = timedelta(0)

    def _round(self, left: int, op: int, kind: int = OK, origin: int = 0,
               micros: int = 0, error: BaseException | None = None) -> array[int]:
        """One allreduce of the group's words. With ``error`` (this rank's example did
        not pass) it waits at most the peer grace: past that, ``_Abandoned``."""
        from mpi4py import MPI

        rank, mine = self.group.rank, self.mine
        mine[_LEFT], mine[_OP], mine[_NEG_OP] = left, op, -op if op else _NONE
        mine[_KIND], mine[_ORIGIN], mine[_MICROS] = kind, origin, micros
        mine[_NEG_FAILED] = -rank if kind == FAIL else _NONE
        mine[_NEG_GONE] = -rank if left or kind == ESCAPE else _NONE
        # non-blocking on every rank: a blocking collective never matches a non-blocking one
        request = self.group.comm.Iallreduce([mine, MPI.INT64_T], [self.theirs, MPI.INT64_T],
                                             op=MPI.MAX)
        if error is None:
            request.Wait()
            return self.theirs
        deadline, spins = time.monotonic() + self.grace, 0
        while not request.Test():
            spins += 1
            if spins > 1000:  # the others are still in the body: do not spin a core
                if time.monotonic() > deadline:
                    raise _Abandoned(error, self.grace)
                time.sleep(0.001)
        return self.theirs

    def before(self) -> None:
        """Before an example's body: every rank must still be running examples."""
        words = self._round(0, _PRE)
        if words[_LEFT] or words[_NEG_OP] != -words[_OP]:
            raise _Left(f"mpidist: {self._who(words[_NEG_GONE])} stopped running this "
                        "test's examples (its report says why), so no rank can run the next "
                        "one: the test ends here on every rank")

    def after(self, exc: BaseException | None, seconds: float, deadline: timedelta | None,
              final: bool) -> str:
        """After the body: the group's verdict on the example (``react``)."""
        kind = classify(exc)
        words = self._round(0, _POST, kind, origin_of(exc) if exc and kind == FAIL else 0,
                            int(seconds * 1e6), exc)
        self.origin = int(words[_ORIGIN])
        self.failed_first = int(words[_NEG_FAILED])
        self.slowest = timedelta(microseconds=int(words[_MICROS]))
        exceeded = deadline is not None and self.slowest >= (
            deadline if final else deadline * 5 / 4)  # hypothesis's own grace
        return react(kind, int(words[_KIND]), exceeded)

    def leave(self) -> None:
        """This rank's engine ended: answer the others' rounds until theirs have too."""
        while self._round(1, 0)[_OP]:
            pass

    def _who(self, negated: int) -> str:
        rank = -negated
        return (self.group.describe(rank) if 0 <= rank < self.group.size
                else "another rank")

    def elsewhere(self) -> str:
        return (f"mpidist: this example failed on {self._who(self.failed_first)} (the first "
                "rank it failed on; its report says how)")


class ExampleAgreement:
    """The plugin object: seeds every test, and runs each ``@given`` test's examples
    in step on its group.

    Args:
        group: the group the test in flight runs on (the pipeline's).
        run_seed: rank 0's seed for the run (known after collection agreed).
    """

    def __init__(self, group: Callable[[], Group], run_seed: Callable[[], int],
                 grace: float) -> None:
        self._group = group
        self._run_seed = run_seed
        self._grace = grace

    @pytest.hookimpl(wrapper=True, trylast=True)  # inside hypothesis's own wrapper
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        if "hypothesis" not in sys.modules:
            return (yield)
        seed_hypothesis(self._run_seed(), item.nodeid)
        from hypothesis import is_hypothesis_test

        test = getattr(item, "obj", None)
        function = getattr(test, "__func__", test)
        if function is None or not is_hypothesis_test(function):
            return (yield)
        _quiet_in_explanations()
        steps = _Steps(self._group(), self._grace)
        handle = function.hypothesis
        inner, settings = handle.inner_test, function._hypothesis_internal_use_settings
        handle.inner_test = _in_step(inner, steps, settings.deadline)
        function._hypothesis_internal_use_settings = agreed_settings(
            function, handle.inner_test, settings, steps.group)
        abandoned = False
        try:
            return (yield)
        except (_Left, ExampleFailedElsewhere) as exc:  # said in a line: the ranks where
            steps.echo = True  # it failed show the traceback and the failing example
            raise pytest.fail.Exception(str(exc), pytrace=False) from None
        except _Abandoned as exc:  # the rounds no longer match: no ``leave``
            abandoned = True
            if classify(exc.error) == FAIL:
                raise exc.error from None
            raise pytest.fail.Exception(
                f"mpidist: this rank's example ended ({type(exc.error).__name__}: "
                f"{exc.error}) and the other ranks did not finish it within {exc.grace:g} s "
                "(--mpi-peer-grace)", pytrace=False) from None
        finally:
            handle.inner_test, function._hypothesis_internal_use_settings = inner, settings
            if not abandoned:
                steps.leave()
            if steps.echo:  # the merge leads with the ranks where it failed
                item.stash[CALL_MARKS] = (*item.stash.get(CALL_MARKS, ()), ECHO)


def _quiet_in_explanations() -> None:
    """hypothesis's explain phase lists the lines only failing examples ran; on a rank
    whose example failed elsewhere those are this module's, machinery like pytest's
    (which hypothesis leaves out the same way)."""
    scrutineer = sys.modules.get("hypothesis.internal.scrutineer")
    here = "/mpidist/plugins/examples.py"
    locations = getattr(scrutineer, "UNHELPFUL_LOCATIONS", None)
    if isinstance(locations, tuple) and here not in locations:
        scrutineer.UNHELPFUL_LOCATIONS = (*locations, here)  # type: ignore[union-attr]


def _in_step(inner: Callable[..., Any], steps: _Steps,
             deadline: timedelta | None) -> Callable[..., Any]:
    """``inner`` (the test's body, as hypothesis calls it per example), run in step
    with the group. ``functools.wraps`` keeps hypothesis's digest of it (the example
    database key) the same as the body's own."""
    import functools

    @functools.wraps(inner)
    def in_step(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        steps.before()
        error: BaseException | None = None
        drawn, start = _draw_seconds(), time.perf_counter()
        try:
            result = inner(*args, **kwargs)
        except BaseException as exc:  # judged with the group's, below
            error, result = exc, None
        seconds = time.perf_counter() - start - (_draw_seconds() - drawn)
        action = steps.after(error, seconds, deadline, _is_final())
        steps.echo = action in ("failed-elsewhere", "left")
        if action == "return":
            return result
        if action == "own":
            assert error is not None
            raise error
        if action == "invalid":
            from hypothesis.errors import UnsatisfiedAssumption

            raise UnsatisfiedAssumption("an assumption failed on another rank")
        if action == "deadline":
            from hypothesis.errors import DeadlineExceeded

            assert deadline is not None
            raise DeadlineExceeded(steps.slowest, deadline)
        if action == "failed-elsewhere":
            raise _peer_class(steps.origin)(steps.elsewhere())
        raise _Left("mpidist: another rank of this test skipped or stopped this example "
                    "(its report says why): the test ends here on every rank")

    return in_step


def _draw_seconds() -> float:
    """Seconds the body spent drawing data inside the test (``st.data()``), which
    hypothesis leaves out of the deadline too; 0.0 where this version hides it."""
    try:
        from hypothesis.control import current_build_context

        return float(sum(current_build_context().data.draw_times.values()))
    except Exception:  # an internal of hypothesis: best effort
        return 0.0


def _is_final() -> bool:
    """Whether hypothesis is replaying the minimal failing example (judged strictly)."""
    try:
        from hypothesis.control import current_build_context

        return bool(current_build_context().is_final)
    except Exception:
        return False
