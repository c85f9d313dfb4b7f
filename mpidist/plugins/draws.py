"""hypothesis's inputs, the same on every rank of a test's group.

An engine that runs the same body on every rank must start from the same state:

* **The seed.** Rank 0 draws one seed for the run; before each test every rank
  seeds hypothesis's per-thread ``Random`` from it and the test's node id, so
  the order tests run in (packing, ``--mpi-serial=spread``) does not matter.
  ``--hypothesis-seed``, ``@seed`` and ``derandomize`` win, as in one process.
* **The example database.** Rank 0 reads the test's entries (its key,
  ``.secondary``, ``.pareto``) and sends them to the group; during the test every
  rank reads that same ordered snapshot, and only rank 0 writes through to the
  real database. (Each rank reading its own copy would replay different
  examples: a directory lists in filesystem order, a set in hash order per
  process; on nodes without a shared filesystem the copies differ outright.)
"""

from __future__ import annotations

import hashlib
import sys
from random import Random
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from ..runner.group import Group

__all__ = ["agreed_settings", "seed_hypothesis", "test_seed"]

#: the example database keys hypothesis's engine reads, after the test's own
_SUBKEYS = (b"", b".secondary", b".pareto")


def _snapshot(entries: dict[bytes, list[bytes]], real: Any) -> Any:
    """The example database during one test, the same on every rank: reads from
    rank 0's entries as they were when the test began, in rank 0's order; writes
    kept here and, on rank 0 alone (``real``), passed on to the real database."""
    from hypothesis.database import ExampleDatabase

    class Snapshot(ExampleDatabase):
        def __init__(self) -> None:
            super().__init__()
            self.data = {key: list(values) for key, values in entries.items()}

        def fetch(self, key: bytes) -> Iterable[bytes]:
            yield from list(self.data.get(key, ()))

        def save(self, key: bytes, value: bytes) -> None:
            values = self.data.setdefault(key, [])
            if bytes(value) not in values:
                values.append(bytes(value))
            if real is not None:
                real.save(key, value)

        def delete(self, key: bytes, value: bytes) -> None:
            values = self.data.get(key, [])
            if bytes(value) in values:
                values.remove(bytes(value))
            if real is not None:
                real.delete(key, value)

        def move(self, src: bytes, dest: bytes, value: bytes) -> None:
            if src != dest:
                self.delete(src, value)
            self.save(dest, value)

    return Snapshot()


def test_seed(run_seed: int, nodeid: str) -> int:
    """The seed of hypothesis's per-thread ``Random`` for one test (pure)."""
    text = f"{run_seed}:{nodeid}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:16], "big")


test_seed.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


def seed_hypothesis(run_seed: int, nodeid: str) -> None:
    """Seed hypothesis's draws for the test ``nodeid`` alike on every rank (when
    hypothesis is imported at all; versions before 6.108 keep a module global)."""
    core = sys.modules.get("hypothesis.core")
    if core is None:
        return
    rng = Random(test_seed(run_seed, nodeid))
    local = getattr(core, "threadlocal", None)
    if local is not None:
        local._hypothesis_global_random = rng
    elif hasattr(core, "_hypothesis_global_random"):
        setattr(core, "_hypothesis_global_random", rng)  # noqa: B010


def agreed_settings(function: Any, inner: Any, settings: Any, group: Group) -> Any:
    """Collective over ``group``: the test's settings with the deadline off (the
    example rounds judge it on the slowest rank) and the database replaced by the
    group's snapshot of rank 0's."""
    from hypothesis import core
    from hypothesis import settings as Settings
    from hypothesis.internal.reflection import function_digest

    real = settings.database
    key = getattr(function, "_hypothesis_internal_database_key", None)
    if key is None and core.global_force_seed is None:
        key = function_digest(inner)  # what the engine computes (inner copies the digest)
    if real is None or key is None:  # the same on every rank: same code, same profile
        return Settings(parent=settings, deadline=None)
    entries = None
    if group.is_root:
        entries = {key + sub: list(real.fetch(key + sub)) for sub in _SUBKEYS}
    entries = group.comm.bcast(entries, root=0)
    return Settings(parent=settings, deadline=None,
                    database=_snapshot(entries, real if group.is_root else None))
