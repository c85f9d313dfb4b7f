"""Fixtures for tests that run on every rank.

``mpi_tmp_path`` / ``mpi_tmpdir`` give the ranks of one node one shared,
fresh directory per test (pytest-mpi's names): the node's first rank creates
it under its own pytest basetemp and broadcasts the path over the node
communicator; it is removed when the test ends. Without ``--with-mpi`` they
are a plain per-test directory, so the same test runs serially.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from ..bootstrap.world import World

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["mpi_comm", "mpi_ranks", "mpi_tmp_path", "mpi_tmpdir", "mpi_world", "process_group"]


def _with_mpi(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("with_mpi"))


@pytest.fixture
def mpi_world(request: pytest.FixtureRequest) -> World:
    """This rank's ``World`` (rank, size, local rank, node, hosts, MASTER_ADDR); in a
    packed test, its group's (function scope: a rank runs tests in several groups)."""
    if not _with_mpi(request):
        pytest.skip("mpi_world needs --with-mpi")
    from ..runtime import current

    return current().world


@pytest.fixture
def mpi_comm(request: pytest.FixtureRequest) -> MPI.Comm:
    """mpi4py's ``COMM_WORLD``; in a packed test, its group's part of it (mpidist's
    own traffic uses a private duplicate)."""
    if not _with_mpi(request):
        pytest.skip("mpi_comm needs --with-mpi")
    from mpi4py import MPI

    from ..runtime import current

    return current().user_comm or MPI.COMM_WORLD


@pytest.fixture
def mpi_ranks(request: pytest.FixtureRequest) -> int:
    """The number of ranks the test runs on: its ``mpi(ranks=...)`` size (one of a
    list's, as a parameter), else the world's."""
    param = getattr(request, "param", None)
    if param is not None:
        return int(param)
    if not _with_mpi(request):
        return 1
    from ..runtime import current

    return current().world.size


@pytest.fixture
def process_group(request: pytest.FixtureRequest) -> Any:
    """torch's default process group (``dist.group.WORLD``), started by the plugin
    (per test: it is restarted after a torch MultiProcessTestCase class ran)."""
    if not _with_mpi(request):
        pytest.skip("process_group needs --with-mpi")
    from ..runtime import current

    if current().backend is None:
        pytest.skip("no process group: the session runs with --mpi-backend none")
    import torch.distributed as dist

    return dist.group.WORLD


@pytest.fixture
def mpi_tmp_path(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A fresh directory shared by the ranks of this node, removed after the test."""
    name = "mpi-" + re.sub(r"\W", "_", request.node.name)[:30]
    if not _with_mpi(request):
        yield tmp_path_factory.mktemp(name)
        return
    from ..runtime import current
    from .exchange import wait_all

    node = current().node_comm
    path = str(tmp_path_factory.mktemp(name)) if node.Get_rank() == 0 else None
    path = node.bcast(path, root=0)
    try:
        yield Path(path)
    finally:
        wait_all([node.Ibarrier()])  # nobody is still using it
        if node.Get_rank() == 0:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mpi_tmpdir(mpi_tmp_path: Path) -> Any:
    """``mpi_tmp_path`` as a legacy ``py.path.local``."""
    from _pytest.compat import legacy_path

    return legacy_path(mpi_tmp_path)
