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
* pytest-timeout: its limits -- the ``timeout`` marker (``markers``), ``--timeout``,
  ``PYTEST_TIMEOUT`` and the ``timeout`` ini key (here, when ``--mpi-timeout`` is not
  given) -- are the watchdog's, which stops every rank together with every rank's
  stacks; its own timers, a signal or ``os._exit`` on one rank, never start.
  ``--session-timeout`` is refused: each rank would stop on its own clock.
* pytest-forked: ``--forked`` and its ``forked`` marker mean a fresh process per test,
  which isolation gives on every rank (forked before MPI starts, where a fork after
  ``MPI_Init`` would break MPI and the process group).
* pytest-rerunfailures is in ``reruns`` (the pipeline decides reruns);
  pytest-randomly's and pytest-random-order's seeds in ``collection`` (rank 0's);
  hypothesis in ``examples``; the plugins that write files in ``writers``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from ..runner.markers import NO_LIMIT

__all__ = ["TimeoutTimers", "check_companions", "isolation_mode", "share_coverage",
           "timeout_default"]


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
    if getattr(option, "session_timeout", None) or _ini(config, "session_timeout"):
        raise pytest.UsageError(
            "pytest-timeout's --session-timeout would stop each rank on its own clock under "
            "--with-mpi: give the launcher the time limit instead (srun -t, mpirun "
            "--timeout): mpidist then reports the test in flight and keeps every result")


def _ini(config: pytest.Config, name: str) -> Any:
    """An ini key another plugin declares; None where it is not installed."""
    try:
        return config.getini(name)
    except ValueError:
        return None


def timeout_default(config: pytest.Config, mpi_timeout: float, given: bool) -> float:
    """The limit of a test without a marker: ``--mpi-timeout`` if ``given``, else
    pytest-timeout's (``--timeout`` > ``PYTEST_TIMEOUT`` > ini ``timeout``, its own
    precedence; 0 is no limit), else ``--mpi-timeout``'s default.

    Raises:
        pytest.UsageError: pytest-timeout's value is not a number.
    """
    if given or not config.pluginmanager.hasplugin("timeout"):
        return mpi_timeout
    for source, value in (("--timeout", getattr(config.option, "timeout", None)),
                          ("PYTEST_TIMEOUT", os.environ.get("PYTEST_TIMEOUT") or None),
                          ("ini timeout", _ini(config, "timeout") or None)):
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            raise pytest.UsageError(f"{source}={value!r}: not a number of seconds") from None
        return seconds if seconds > 0 else NO_LIMIT
    return mpi_timeout


class TimeoutTimers:
    """pytest-timeout's own timers never start under ``--with-mpi``: its hooks that
    start and cancel them (first result wins) are answered here. Its timer would end
    one rank alone -- a signal fails that rank's test while the others wait in a
    collective, ``os._exit`` kills it -- where the watchdog stops every rank together."""

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool:
        return True

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool:
        return True


def isolation_mode(mode: str, namespace: Any) -> str:
    """``--mpi-isolate``'s ``mode``, or ``on`` under pytest-forked's ``--forked``.

    Raises:
        pytest.UsageError: ``--forked`` with ``--mpi-isolate=off``.
    """
    if not getattr(namespace, "forked", False):
        return mode
    if mode == "off":
        raise pytest.UsageError(
            "--forked runs each test in a fresh process, which --with-mpi does with "
            "--mpi-isolate (forked before MPI starts): drop --mpi-isolate=off")
    return "on"


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
