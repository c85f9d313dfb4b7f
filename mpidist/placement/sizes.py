"""How many ranks a test runs on, read once at collection.

``mpi(ranks=k)`` (pytest-isolate-mpi's spelling) and ``parallel(nprocs=k)``
(mpi-pytest's, read as it reads it: ``parallel(k)``, bare ``parallel`` is 3)
size a test; a list of sizes parametrizes it (``test_x[ranks=2]``,
``test_x[nprocs=2]``), and the test reads its size from the ``mpi_ranks``
fixture. A torch spawning class's ``world_size`` sizes its tests too (the
testing layer puts it in ``TORCH_SIZE``). ``mpi(min_size=N)`` keeps
pytest-mpi's meaning: the whole world. Under ``--mpi-serial=spread`` a test
with no MPI marker at all has size 1. A size larger than the world is a skip
that says so; a malformed one is a usage error on every rank before any test.
"""

from __future__ import annotations

from typing import Any

import pytest

from mpidist.runner.markers import closest_markers

__all__ = ["SIZE", "TORCH_SIZE", "WORLD", "generate", "sizes_of"]

WORLD = 0  #: the size of a test that runs on every rank
SIZE = pytest.StashKey[int]()  #: the item's size (``WORLD`` or 1..world size)
TORCH_SIZE = pytest.StashKey[int]()  #: a torch spawning class's world_size
_PARAM = "mpi_ranks"


_PARALLEL_DEFAULT = 3  #: mpi-pytest's size for a bare ``@pytest.mark.parallel``


def _declared(item: pytest.Item,
              markers: dict[str, pytest.Mark] | None = None) -> tuple[str, Any] | None:
    """The marker that sizes the item and its raw value, if any."""
    markers = closest_markers(item) if markers is None else markers
    marker = markers.get("mpi")
    if marker is not None and "ranks" in marker.kwargs:
        return "mpi(ranks=...)", marker.kwargs["ranks"]
    marker = markers.get("parallel")
    if marker is not None:  # read as mpi-pytest reads it: one positional or nprocs=
        args, kwargs = marker.args, marker.kwargs
        nprocs = (args[0] if len(args) == 1 and not kwargs else
                  kwargs["nprocs"] if not args and set(kwargs) == {"nprocs"} else
                  _PARALLEL_DEFAULT if not args and not kwargs else None)
        return "parallel(nprocs=...)", nprocs
    return None


def _valid(where: str, what: str, value: Any) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                         for v in values):
        raise pytest.UsageError(f"{where}: {what}: {value!r} is not a positive number of "
                                "ranks or a list of them")
    return values


def generate(metafunc: pytest.Metafunc) -> None:
    """``pytest_generate_tests``: a list of sizes makes one test per size."""
    raw = _declared(metafunc.definition)
    if raw is None or not isinstance(raw[1], (list, tuple)):
        return
    sizes = _valid(metafunc.definition.nodeid, *raw)
    if _PARAM not in metafunc.fixturenames:
        metafunc.fixturenames.append(_PARAM)
    word = "nprocs" if raw[0].startswith("parallel") else "ranks"  # each plugin's test ids
    metafunc.parametrize(_PARAM, sizes, ids=[f"{word}={k}" for k in sizes])


def _size(item: pytest.Item, world_size: int, spread: bool) -> int:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and _PARAM in callspec.params:
        return int(callspec.params[_PARAM])
    markers = closest_markers(item)
    declared = _declared(item, markers)
    if declared is not None:
        return _valid(item.nodeid, *declared)[0]
    torch_size = item.stash.get(TORCH_SIZE, None)
    if torch_size is not None:
        return torch_size
    if spread and "mpi" not in markers and "parallel" not in markers:
        return 1
    return WORLD


def sizes_of(items: list[pytest.Item], world_size: int, spread: bool) -> None:
    """Put every item's size in its stash; skip those larger than the world.

    Raises:
        pytest.UsageError: a size that is not a positive integer (or a list of them).
    """
    for item in items:
        size = _size(item, world_size, spread)
        if size > world_size:
            item.add_marker(pytest.mark.skip(
                reason=f"needs {size} MPI ranks, the world has {world_size}"))
            size = WORLD
        item.stash[SIZE] = WORLD if size == world_size else size
