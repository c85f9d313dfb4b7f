"""Per-test deadlines and hung-rank reports that work while a rank is stuck in C.

Every rank runs a daemon thread with its own connection to mpidist's channel on
rank 0 (``bootstrap.channel``; never the main thread's, which may be stuck). The
main thread flips a few attributes per test; the thread looks for a dump of a test
that lasts (less often as it ages: ``_due``) and writes only when a test fails or a
deadline passes. Every value is sealed with the job's secret (``bootstrap.signing``)
and every read verified: a stranger's value cannot trigger a dump or end the job.
Keys, under ``mpidist/wd/``:

``dump/<k>``
    some rank wants every rank's stacks for test number k (value: why);
    set by a rank whose deadline passed, or by rank 0 after a peer failure.
``failed/<k>/<r>``
    rank r finished test k as failed (the leader starts the grace clock). The
    leader looks for these only when the store's key count changed: no
    counter, since ``add`` on a value a stranger wrote closes the connection.
``stack/<k>/<r>``
    rank r's answer: where its main thread is, every thread's stack, and its
    serialized reports (JSON) if it failed the test.

Rank 0's thread waits a few seconds for the answers (a dead rank gives none), then
hands a ``Hang`` to the session, which reports the test, writes JUnit and ends the
job: a path that needs no working communicator (torch's ``MultiProcessTestCase``
has none).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..bootstrap.channel import ChannelFull
from ..bootstrap.signing import MAX_VALUE, KeyValueClient, SealedStore, Signer
from ..bootstrap.world import World
from .keeper import DIED
from .stacks import thread_stacks, where

__all__ = ["Hang", "RankState", "Watchdog", "where"]

TICK = 0.2  # seconds between checks of the deadline and the store
ANSWER_WAIT = 5.0  # seconds rank 0 waits for every rank's stacks
LOOK_MAX = 2.0  # seconds at most between a rank's looks for a dump of a long test
_PREFIX = "mpidist/wd/"
_WHYS = ("timeout", "peer-failure", "terminated", "died")


@dataclass
class RankState:
    """One rank's answer to a dump request."""

    rank: int
    status: str  # "in the test" | "finished the test"
    where: str
    stacks: str
    payload: bytes | None = None  # its serialized result, if it failed the test


@dataclass
class Hang:
    """What rank 0 knows when it gives up on a test."""

    index: int
    item: Any
    why: str  # "timeout" | "peer-failure" | "terminated" | "died"
    timeout: float
    grace: float
    states: dict[int, RankState]
    missing: list[int]
    members: tuple[int, ...] = ()
    died: dict[int, str] = field(default_factory=dict)  # rank -> "exit code 7", from keepers


@dataclass
class _Test:
    index: int
    item: Any
    timeout: float
    deadline: float
    members: tuple[int, ...]
    phase: str = "in the test"
    payload: bytes | None = None
    failed_at: float | None = None
    triggered: bool = False
    answered: bool = False
    keys_seen: int = -1  # the store's key count when the leader last looked
    next_look: float = 0.0  # when this rank next looks for a dump (``_due``)


def _state(rank: int, value: str) -> RankState | None:
    """A verified answer back into a RankState (None if its shape is wrong)."""
    try:
        data = json.loads(value)
        payload = data["payload"]
        return RankState(rank, str(data["status"]), str(data["where"]), str(data["stacks"]),
                         None if payload is None else str(payload).encode())
    except (ValueError, KeyError, TypeError):
        return None


class Watchdog:
    """This rank's deadline thread; on rank 0 also the hang detector.

    Args:
        world: the job.
        grace: seconds to wait, after a rank failed a test, for the others.
        channel: this rank's connection to mpidist's channel, for this thread only.
        signer: the job's signer (every value is sealed and verified).
        on_hang: rank 0 only: called (on the watchdog thread) with the Hang.
        all_stacks: answer with mpidist's own threads' stacks too (``--mpi-all-stacks``).
    """

    def __init__(self, world: World, grace: float, channel: KeyValueClient, signer: Signer,
                 on_hang: Callable[[Hang], None] | None = None, all_stacks: bool = False
                 ) -> None:
        self.world, self.grace, self.all_stacks, self.on_hang = world, grace, all_stacks, on_hang
        self.store = SealedStore(channel, signer)
        self._main = threading.get_ident()
        self._test: _Test | None = None
        # the test this rank finished while its group may still be in it (a test
        # without a verdict: see runner.pipeline); answered for, never timed here
        self._prev: _Test | None = None
        self.settling = False  # rank 0's main thread waits for the previous test's results
        self._keys_seen = -1  # the store's key count when rank 0 last looked for deaths
        # rank 0: tests other packed groups run (first index -> attempts, test)
        self._watched: dict[int, tuple[int, _Test]] = {}
        self._watch_seen = -1
        self._tick_keys: int | None = None  # this tick's count (``_key_count``)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpidist-watchdog",
                                        daemon=True)
        self._thread.start()

    # -- main thread ---------------------------------------------------------------

    def begin(self, index: int, item: Any, timeout: float,
              members: tuple[int, ...] | None = None) -> None:
        """Test ``index`` starts now on ``members`` (global ranks; default: every
        rank) and must end within ``timeout`` seconds. Its first member watches
        for peer failures and collects the answers."""
        members = tuple(range(self.world.size)) if members is None else members
        self._test = _Test(index, item, timeout, time.monotonic() + timeout, members)

    def finished(self, payload: bytes | None) -> None:
        """This rank is done with the test; ``payload`` = its reports if it failed."""
        test = self._test
        if test is None:
            return
        test.phase, test.payload = "finished the test", payload
        if payload is not None:
            # a full channel: the grace clock will not start early; the deadline holds
            with contextlib.suppress(ChannelFull):
                self.store.put(f"{_PREFIX}failed/{test.index}/{self.world.rank}", "failed")

    def end(self, keep: bool = False) -> None:
        """This rank is past the test: every rank is (the verdict arrived), or,
        with ``keep``, this rank went on without a verdict while its group may
        still be in it: it answers for the test until ``settled``."""
        test, self._test = self._test, None
        self._prev = test if keep else None

    def settled(self) -> None:
        """Every rank is past the test ``end(keep=True)`` kept."""
        self._prev = None

    def watch(self, index: int, attempts: int, item: Any, timeout: float,
              members: tuple[int, ...]) -> None:
        """Rank 0 (any thread): another group runs test ``index`` (and its reruns,
        the next ``attempts - 1`` numbers); its members time it and answer, rank 0
        reports it if one of them asks for a dump or dies."""
        self._watched[index] = (attempts, _Test(index, item, timeout, float("inf"), members))

    def unwatch(self, index: int) -> None:
        """Rank 0: the group's result for test ``index`` arrived."""
        self._watched.pop(index, None)

    def _stuck(self, test: _Test | None) -> _Test | None:
        """The test a stop on rank 0 belongs to: the previous one while the main
        thread is waiting for its results, else the one in flight."""
        prev = self._prev
        return prev if prev is not None and self.settling else test

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * TICK)

    # -- watchdog thread -------------------------------------------------------------

    def _key_count(self) -> int:
        """The store's key count, asked once per tick (deaths and failures both look)."""
        if self._tick_keys is None:
            self._tick_keys = self.store.size()
        return self._tick_keys

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            self._tick_keys = None
            test, prev = self._test, self._prev
            try:
                if self.on_hang is not None and (self._a_rank_died(self._stuck(test))
                                                 or self._a_watched_test_hung()):
                    return
                if prev is not None and not (prev.answered and not self._leads(prev)):
                    # timed only while rank 0 waits for its results: still in it, then
                    self._tick(prev, timed=self.settling)
                if test is None or (test.answered and not self._leads(test)):
                    continue
                self._tick(test)
            except ChannelFull as exc:  # a write refused; watching goes on
                print(f"mpidist watchdog ({self.world.describe(self.world.rank)}): {exc}",
                      file=sys.stderr)
            except Exception as exc:  # the channel went away: the job is ending
                print(f"mpidist watchdog ({self.world.describe(self.world.rank)}): {exc}",
                      file=sys.stderr)
                return

    def _leads(self, test: _Test) -> bool:
        return self.world.rank == test.members[0]

    def _tick(self, test: _Test, timed: bool = True) -> None:
        dump = f"{_PREFIX}dump/{test.index}"
        now = time.monotonic()
        if timed and not test.triggered and now > test.deadline:
            stuck = self._stuck(test)
            assert stuck is not None
            stuck.triggered = test.triggered = True
            self.store.put(f"{_PREFIX}dump/{stuck.index}", "timeout")
        if self._leads(test) and not test.triggered:
            if test.failed_at is None:
                if self._a_member_failed(test):
                    test.failed_at = now
            elif now - test.failed_at > self.grace:
                test.triggered = True
                self.store.put(dump, "peer-failure")
        if not test.answered and self._due(test, now) and self.store.has(dump):
            why = self.store.get(dump)
            if why not in _WHYS:
                return  # not ours: ignored (rank 0 names the key at the end)
            test.answered = True
            self._answer(test)
            if self._leads(test) and self.on_hang is not None:
                self.on_hang(self.collect(test, why))

    def _due(self, test: _Test, now: float) -> bool:
        """Whether to look for this test's dump now: every tick for a second, then every
        quarter of its age, at most every ``LOOK_MAX`` s (every rank looks: at every tick,
        5,000 requests/s at 1,024 ranks). Rank 0 and the test's leader: every tick."""
        if self.on_hang is None and not self._leads(test):
            if now < test.next_look:
                return False
            age = now - (test.deadline - test.timeout)
            test.next_look = now + (TICK if age < 1.0 else min(LOOK_MAX, age / 4))
        return True

    def _a_rank_died(self, test: _Test | None) -> bool:
        """Rank 0: a keeper posted that its rank died (``safety.keeper``); report it.
        Looked for when the store's key count changed, so a healthy run pays one
        count per tick on rank 0."""
        keys = self._key_count()
        if keys == self._keys_seen:
            return False
        self._keys_seen = keys
        if not self.store.has(DIED):
            return False
        died = {}
        for rank in range(self.world.size):
            how = self.store.get(f"{DIED}/{rank}")
            if how is not None:  # signed by a keeper of this job
                died[rank] = how
        if test is not None and not set(died) & set(test.members):
            test = None  # rank 0's group's test: the dead rank is in another group
        test = next((t for _, t in self._watched.values() if set(died) & set(t.members)),
                    test)  # the packed test the dead rank was in
        if not died or (test is not None and test.triggered):
            return False  # forged, or another report of this test is under way
        assert self.on_hang is not None
        if test is None:  # between tests (collection, the exchange, the end)
            hang = Hang(-1, None, "died", 0.0, self.grace, {}, sorted(died), (), died)
        else:
            test.triggered = True
            self.store.put(f"{_PREFIX}dump/{test.index}", "died")
            if not test.answered:
                test.answered = True
                self._answer(test)
            hang = self.collect(test, "died", dead=set(died))
            hang.died = died
        self.on_hang(hang)
        return True

    def _a_watched_test_hung(self) -> bool:
        """Rank 0: a member of another group asked for a dump (timeout, peer
        failure): collect that group's answers and report it."""
        if not self._watched:
            return False
        keys = self._key_count()  # counted once per tick (``_a_rank_died`` did already)
        if keys == self._watch_seen:
            return False
        self._watch_seen = keys
        for first, (attempts, test) in list(self._watched.items()):
            for index in range(first, first + attempts):
                why = self.store.get(f"{_PREFIX}dump/{index}")
                if why in _WHYS:
                    assert self.on_hang is not None
                    test.index = index
                    test.triggered = test.answered = True
                    self.on_hang(self.collect(test, str(why)))
                    return True
        return False

    def _a_member_failed(self, test: _Test) -> bool:
        """Whether a member posted a signed failure (looked for when keys were added)."""
        keys = self._key_count()
        if keys == test.keys_seen:
            return False
        test.keys_seen = keys
        return any(self.store.get(f"{_PREFIX}failed/{test.index}/{rank}") == "failed"
                   for rank in test.members)

    def _answer(self, test: _Test) -> None:
        frame = sys._current_frames().get(self._main)
        stacks = thread_stacks(skip=threading.get_ident(), own=self.all_stacks)
        record = {"status": test.phase, "where": where(frame), "stacks": stacks,
                  "payload": None if test.payload is None else test.payload.decode()}
        key = f"{_PREFIX}stack/{test.index}/{self.world.rank}"
        try:
            self.store.put(key, json.dumps(record))
        except ValueError:  # too large for the store: where it is, and a note, still go
            record["payload"] = None
            record["stacks"] = stacks[-(MAX_VALUE // 4):] + (
                "\n(stacks cut; this rank's reports were too large for the store)")
            self.store.put(key, json.dumps(record))

    def collect(self, test: _Test, why: str, wait: float = ANSWER_WAIT,
                dead: set[int] | frozenset[int] = frozenset()) -> Hang:
        """Rank 0: every rank's answer for ``test`` (waits up to ``wait`` seconds for
        all but the ``dead``)."""
        keys = {r: f"{_PREFIX}stack/{test.index}/{r}" for r in test.members}
        awaited = [key for rank, key in keys.items() if rank not in dead]
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not all(map(self.store.has, awaited)):
            time.sleep(min(TICK, wait / 30))  # on SIGTERM the launcher may kill soon
        states, missing = {}, []
        for rank, key in keys.items():
            value = self.store.get(key)
            state = _state(rank, value) if value is not None else None
            if state is None:
                missing.append(rank)  # no answer, or one this job did not write
            else:
                states[rank] = state
        return Hang(test.index, test.item, why, test.timeout, self.grace, states, missing,
                    test.members)

    def answer_now(self) -> None:
        """Post this rank's stacks for the tests it is in, unasked (on SIGTERM)."""
        for test in (self._prev, self._test):
            if test is not None and not test.answered:
                test.answered = True
                with contextlib.suppress(Exception):  # the channel may be gone with rank 0
                    self._answer(test)

    def request_dump(self, why: str, wait: float) -> list[Hang]:
        """Rank 0, from any thread: every rank's stacks now (on SIGTERM, so: fast), for
        the test rank 0's group is in and each test another (packed) group is in; the
        first is rank 0's own, if it is in one. A test another group was handed but
        whose members all answer otherwise (not begun: its root asks one test ahead;
        or finished: its result is on its way) is left out.

        The watchdog thread stands down first, so the two never wait on the
        store together; answers already posted are read in one pass.
        """
        self._stop.set()
        own = self._stuck(self._test)
        tests = ([own] if own is not None else []) + [t for _, t in self._watched.values()]
        for test in tests:
            test.triggered = True
            self.store.put(f"{_PREFIX}dump/{test.index}", why)
        if own is not None and not own.answered:
            own.answered = True
            self._answer(own)
        hangs: list[Hang] = []
        for test in tests:  # every rank answers at once on SIGTERM: one wait covers all
            hang = self.collect(test, why, wait if not hangs else 0.0)
            if test is own or any(s.status == "in the test" for s in hang.states.values()):
                hangs.append(hang)
        return hangs
