"""The markers a test carries under ``--with-mpi``, read in one place.

``mpi(min_size=N)`` skips when the world is smaller (pytest-mpi's meaning);
``mpi(timeout=)`` and pytest-timeout's ``timeout(seconds)`` set the test's time
limit for the watchdog; ``mpi_skip`` and ``mpi_xfail`` mark tests that do not
work under MPI. A malformed value is a usage error at collection, before any
test runs, so every rank stops with the same one-line message.
"""

from __future__ import annotations

import pytest

__all__ = ["ISOLATED", "MARGIN", "NO_LIMIT", "apply_markers", "closest_markers", "item_timeout",
           "timeout_of"]

_TIMEOUT = pytest.StashKey[float]()  # read at collection, once per item
#: item stash key: how the test is isolated (set by ``isolation.rank``): "item" (the whole
#: test runs in a child of the template) or "torch" (torch's child protocol, ``_run``,
#: runs in one); the pipeline reads it
ISOLATED = pytest.StashKey[str]()
#: seconds a rank waits past an isolated test's limit before its own watchdog
#: acts: the child ends itself at the limit, and its report must win
MARGIN = 30.0
#: pytest-timeout's 0, "no time limit": a year (a finite number: the watchdog's clock,
#: and an isolated child's ``faulthandler`` deadline, take no infinity)
NO_LIMIT = 365 * 24 * 3600.0


def closest_markers(item: pytest.Item) -> dict[str, pytest.Mark]:
    """Each marker name of ``item`` mapped to its closest marker, in one walk.

    What ``get_closest_marker`` returns for every name at once: each call of it walks
    the item's whole node chain, and collection asks five names of every item (a
    thousand-test suite spent 40 ms of its start-up there)."""
    found: dict[str, pytest.Mark] = {}
    for marker in item.iter_markers():  # closest node first
        found.setdefault(marker.name, marker)
    return found


def timeout_of(item: pytest.Item, default: float,
               markers: dict[str, pytest.Mark] | None = None) -> float:
    """mpi(timeout=) > pytest-timeout's timeout marker > ``default``. pytest-timeout's
    ``timeout(0)`` means no limit, as it does there.

    Raises:
        pytest.UsageError: a timeout that is not a positive number.
    """
    markers = closest_markers(item) if markers is None else markers
    for name in ("mpi", "timeout"):
        marker = markers.get(name)
        if marker is None:
            continue
        value = marker.kwargs.get("timeout")
        if value is None and name == "timeout" and marker.args:
            value = marker.args[0]
        if value is None:
            continue
        if name == "timeout" and value == 0 and not isinstance(value, bool):
            return NO_LIMIT
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise pytest.UsageError(
                f"{item.nodeid}: {name}(timeout={value!r}): timeout must be a positive "
                "number of seconds")
        return float(value)
    return default


def item_timeout(item: pytest.Item, default: float) -> float:
    """``timeout_of``, as read at collection when ``apply_markers`` saw the item."""
    timeout = item.stash.get(_TIMEOUT, None)
    return timeout_of(item, default) if timeout is None else timeout


def apply_markers(items: list[pytest.Item], world_size: int, default_timeout: float) -> None:
    """Turn the MPI markers of ``items`` into pytest's skips and xfails; validate them.

    Raises:
        pytest.UsageError: a malformed ``min_size`` or timeout.
    """
    for item in items:
        markers = closest_markers(item)
        marker = markers.get("mpi")
        if marker is not None:
            min_size = marker.kwargs.get("min_size", marker.args[0] if marker.args else 1)
            if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
                raise pytest.UsageError(
                    f"{item.nodeid}: mpi(min_size={min_size!r}): min_size must be a "
                    "positive integer")
            if min_size > world_size:
                item.add_marker(pytest.mark.skip(
                    reason=f"needs {min_size} MPI ranks, the world has {world_size}"))
        # validated now (a bad marker is a usage error) and kept for the watchdog
        item.stash[_TIMEOUT] = timeout_of(item, default_timeout, markers)
        if "mpi_skip" in markers:
            item.add_marker(pytest.mark.skip(reason="test does not work under MPI"))
        if "mpi_xfail" in markers:
            item.add_marker(pytest.mark.xfail(reason="test fails under MPI"))
