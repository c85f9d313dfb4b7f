"""mpidist: run PyTorch distributed test suites under mpirun/srun, with one truthful report.

How it works, bottom to top (imports only point down):

* ``world``   -- mpi4py's COMM_WORLD -> a frozen ``World`` (rank, size, host,
  local rank/size, node rank). No torch.
* ``netif``, ``store`` -- rank 0 picks an address the others can reach, hosts
  a TCPStore on a free port, broadcasts it; every rank exports torchrun's
  variables (MASTER_ADDR, RANK, LOCAL_RANK, ...).
* ``process_group`` -- the default torch.distributed group (auto = NCCL with
  a GPU, else gloo), with errors that say what this torch build lacks;
  ``mpi4py_pg`` is an MPI process group for stock torch (``"mpi4py"``).
* ``runtime`` -- ``init()`` / ``shutdown()`` tie those together, idempotently.
* ``plugin`` (pytest11 entry, inert without ``--with-mpi``) -> ``session``:
  every rank runs every test in the same order without logging it
  (``consensus`` checks the collection first); ``wire`` serialises reports
  with pytest's own hooks, ``gather`` moves them to rank 0 (a compact record
  for ranks that passed, full reports otherwise), ``merge`` folds them into
  one report per phase, and rank 0 replays that into pytest's logging hooks,
  so the terminal, ``-x``, ``--junitxml`` and ``--durations`` work unchanged.
* ``watchdog`` / ``hang`` / ``signals`` -- a per-rank thread with its own
  TCPStore client ends a test that hangs or whose peers failed, and reports
  where every rank was; a SIGTERM (a rank died) still yields a report.
* ``journal`` / ``supervisor`` / ``replay`` -- ``mpidist run`` relaunches after
  a test kills the job and ends with one replayed report and JUnit file.
* ``testing`` (with ``probes``) -- torch's test vocabulary with collective skips,
  ``DistributedTestCase``, and ``compat``: torch's MultiProcessTestCase family
  run unchanged, one MPI rank per ``self.rank``.
* ``validation`` -- ``mpidist validate``'s suite: inventory, correctness,
  bandwidth, node-to-node links, the suspects, JSON and heatmap.
* ``cli`` -- the ``mpidist`` command (``info``, ``run``, ``validate``).
"""

from __future__ import annotations

from .errors import (
    BackendUnavailableError,
    BootstrapError,
    CollectionMismatchError,
    MpidistError,
    UsageError,
)
from .runtime import current, init, is_initialized, shutdown
from .world import World

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BootstrapError",
    "CollectionMismatchError",
    "MpidistError",
    "UsageError",
    "World",
    "__version__",
    "current",
    "init",
    "is_initialized",
    "shutdown",
]
