"""mpidist: run PyTorch distributed test suites under mpirun/srun, with one truthful report.

How it works, bottom to top; a module imports only from its own layer or the
layers below it (``tests/unit/test_packaging.py`` parses every import, lazy
ones included, and holds this):

* ``errors`` -- the exception tree.
* ``bootstrap/`` -- mpi4py's COMM_WORLD -> a frozen ``World``; the address
  rank 0 publishes; its TCPStore and torchrun's variables; node probes; the
  settings table. No torch at import time.
* ``backends/`` -- the registry of torch.distributed backends and the default
  group; ``backends.mpi4py``, an MPI process group for stock PyPI torch.
* ``runtime`` -- ``init()`` / ``shutdown()`` tie those together, idempotently.
* ``safety/`` -- the watchdog thread (deadlines, failed peers, every rank's
  stacks through the store) and SIGTERM handling; they produce data.
* ``runner/`` -- the pytest plugin (inert without ``--with-mpi``): collection
  agreement, the per-test pipeline on a group of ranks, the exchange of
  records to the group's root, the merge into one report per phase, and the
  replay into pytest's logging hooks, so the terminal, ``-x``, ``--junitxml``
  and ``--durations`` work unchanged; hangs and SIGTERM become reports.
* ``testing/`` -- torch's test vocabulary with collective skips,
  ``DistributedTestCase``, and its own plugin that runs torch's
  MultiProcessTestCase family unchanged, one MPI rank per ``self.rank``.
* ``validation/`` -- ``mpidist validate``'s suite: inventory, correctness,
  bandwidth, node-to-node links, the suspects, JSON and heatmap.
* ``supervisor/`` -- ``mpidist run``: the journal (written by its own plugin
  on rank 0), relaunch after a test kills the job, what each launcher says
  about a dead rank, and one replayed report.
* ``cli`` -- the ``mpidist`` command (``info``, ``run``, ``validate``).

docs/internals.md tells the same story at length.
"""

from __future__ import annotations

from .bootstrap.world import World
from .errors import (
    BackendUnavailableError,
    BootstrapError,
    MpidistError,
    UsageError,
)
from .runtime import current, init, is_initialized, shutdown

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BootstrapError",
    "MpidistError",
    "UsageError",
    "World",
    "__version__",
    "current",
    "init",
    "is_initialized",
    "shutdown",
]
