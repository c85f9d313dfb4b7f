"""The markers a test carries under ``--with-mpi``, read in one place.

``mpi(min_size=N)`` skips when the world is smaller (pytest-mpi's meaning);
``mpi(timeout=)`` and pytest-timeout's ``timeout(seconds)`` set the test's time
limit for the watchdog; ``mpi_skip`` and ``mpi_xfail`` mark tests that do not
work under MPI. A malformed value is a usage error at collection, before any
test runs, so every rank stops with the same one-line message.
"""

from __future__ import annotations

import pytest

__all__ = ["apply_markers", "item_timeout", "timeout_of"]

_TIMEOUT = pytest.StashKey[float]()  # read at collection, once per item


def timeout_of(item: pytest.Item, default: float) -> float:
    """mpi(timeout=) > pytest-timeout's timeout marker > ``default``.

    Raises:
        pytest.UsageError: a timeout that is not a positive number.
    """
    for name in ("mpi", "timeout"):
        marker = item.get_closest_marker(name)
        if marker is None:
            continue
        value = marker.kwargs.get("timeout")
        if value is None and name == "timeout" and marker.args:
            value = marker.args[0]
        if value is None:
            continue
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
        marker = item.get_closest_marker("mpi")
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
        item.stash[_TIMEOUT] = timeout_of(item, default_timeout)
        if item.get_closest_marker("mpi_skip") is not None:
            item.add_marker(pytest.mark.skip(reason="test does not work under MPI"))
        if item.get_closest_marker("mpi_xfail") is not None:
            item.add_marker(pytest.mark.xfail(reason="test fails under MPI"))
