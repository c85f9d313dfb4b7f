"""Other pytest plugins under ``--with-mpi``: what each must do differently when
every rank runs the same session.

* pytest-xdist (``-n``, ``--dist``): refused with a usage error. mpirun already
  runs one process per rank; xdist workers under each rank would each start
  their own MPI-less session, and the ranks' tests would no longer line up.
* pytest-cov (``--cov``): every rank measures itself, only rank 0 reports.
  Left alone, each rank combines and erases the others' data files while they
  are being written (INTERNALERROR) and prints its own table. Here, when the
  test loop ends, ranks > 0 stop coverage and send their data to rank 0 over
  MPI (not through a shared directory: the nodes may not share one); rank 0
  writes each as a parallel data file beside its own, and pytest-cov's own
  combine and report do the rest: ONE table of every rank's coverage.
* pytest-rerunfailures is in ``reruns`` (the pipeline decides reruns);
  pytest-randomly's seed in ``collection`` (rank 0's, with its order);
  pytest-timeout's marker in ``markers`` (the watchdog honours it).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

__all__ = ["check_companions", "share_coverage"]


def check_companions(config: pytest.Config) -> None:
    """Refuse plugin options that cannot work under MPI (same on every rank)."""
    option = config.option
    workers = getattr(option, "numprocesses", None)
    dist = getattr(option, "dist", "no")
    if workers or (dist and dist != "no"):
        raise pytest.UsageError(
            "--with-mpi runs one pytest per MPI rank; pytest-xdist's -n/--dist would start "
            "workers without MPI under each rank: drop -n (or -p no:xdist), and give "
            "mpirun -n the number of processes")


def share_coverage(config: pytest.Config, comm: Any, rank: int) -> None:
    """Make pytest-cov, if it measures this session, report every rank's coverage once,
    from rank 0. Call on every rank after pytest-cov started (``pytest_sessionstart``)."""
    plugin = config.pluginmanager.get_plugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    if plugin is None or controller is None or getattr(plugin, "_disabled", True):
        return
    finish = controller.finish
    if rank != 0:
        plugin.options.cov_report = {}  # nothing to print or write here
        plugin.options.cov_fail_under = None

        def finish_here() -> None:
            controller.cov.stop()
            comm.gather(controller.cov.get_data().dumps(), root=0)
            controller.started = False

        controller.finish = finish_here
        return

    def finish_with_everyone() -> None:
        from coverage import CoverageData

        blobs = comm.gather(b"", root=0)
        base = os.path.abspath(controller.cov.config.data_file)
        for other, blob in enumerate(blobs):
            if other and blob:  # a parallel data file, combined by pytest-cov's finish
                data = CoverageData(basename=base, suffix=f"mpidist-rank{other}")
                data.loads(blob)
        finish()

    controller.finish = finish_with_everyone
