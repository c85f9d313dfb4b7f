"""``DistributedTestCase``: MultiProcessTestCase's names for new tests, one MPI rank each.

Under ``--with-mpi`` every rank runs the test method itself: ``self.rank`` is
its rank, ``self.world_size`` the test's ranks (the MPI world, or fewer: set
``world_size`` and the other ranks sit the test out), ``self.file_name`` a
path the test's ranks agree on, ``create_pg`` a process group of the test's
ranks, destroyed after the test. Skips inside it are collective
(``mpidist.testing``). Nothing is spawned, so a test costs what its body costs.
"""

from __future__ import annotations

import contextlib
import unittest
from typing import Any

from .. import runtime
from . import compat
from .helpers import assert_equal_on_rank, assert_not_equal_on_rank
from .skips import scope

__all__ = ["DistributedTestCase"]


class DistributedTestCase(unittest.TestCase):
    """Base class for distributed tests run by mpidist (no process spawning)."""

    #: ranks the test needs; 0 means the whole MPI world
    world_size: int = 0
    #: destroy the groups ``create_pg`` made when the test ends
    destroy_pg_upon_exit: bool = True

    def setUp(self) -> None:
        super().setUp()
        if not runtime.is_initialized():
            raise unittest.SkipTest("DistributedTestCase runs under mpirun with --with-mpi")
        world = runtime.current().world
        size = int(self.world_size) or world.size
        self.rank = compat.participate(size, type(self).__name__)
        with contextlib.suppress(AttributeError):  # unless a subclass made it a property
            self.world_size = size
        self.file_name = compat.shared_file(type(self).__name__)
        self._groups: list[Any] = []
        decide = scope(compat.group_comm(size), list(range(size)))
        decide.__enter__()
        self.addCleanup(decide.__exit__, None, None, None)
        self.addCleanup(self._destroy_groups)

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    def backend(self, device: str) -> str:
        """The backend for ``device``: nccl for CUDA, else the session's CPU backend."""
        if "cuda" in device:
            return "nccl"
        chosen = runtime.current().backend
        return chosen if chosen in ("gloo", "mpi", "mpi4py", "ucc") else "gloo"

    def create_pg(self, device: str = "cpu", backend: str | None = None) -> Any:
        """A process group of this test's ranks (only they call it)."""
        import torch.distributed as dist

        group = dist.new_group(list(range(int(self.world_size))),
                               backend=backend or self.backend(device),
                               use_local_synchronization=True)
        self._groups.append(group)
        return group

    def _destroy_groups(self) -> None:
        if not self.destroy_pg_upon_exit:
            return
        import torch.distributed as dist

        for group in self._groups:
            dist.destroy_process_group(group)
        self._groups = []

    def assertEqualOnRank(self, x: Any, y: Any, msg: str | None = None, *,
                          rank: int = 0) -> None:
        """Assert ``x == y`` on ``rank`` only (torch's name)."""
        assert_equal_on_rank(x, y, msg, rank=rank)

    def assertNotEqualOnRank(self, x: Any, y: Any, msg: str | None = None, *,
                             rank: int = 0) -> None:
        """Assert ``x != y`` on ``rank`` only (torch's name)."""
        assert_not_equal_on_rank(x, y, msg, rank=rank)
