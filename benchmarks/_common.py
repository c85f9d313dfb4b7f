"""Helpers shared by the benchmarks: environments, mpirun, timing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_VENV = HERE / ".venv-peers"
TORCH = os.environ.get("MPIDIST_TORCH", "torch==2.13.0")
#: the plugins of mpidist's tests (setup.py's ``test`` extra), installed in the peers'
#: venv too: every runner starts with the same plugins loaded (docs/plugins.md)
PLUGINS = ("hypothesis", "pytest-html", "pytest-reportlog", "pytest-json-report",
           "pytest-timeout", "pytest-asyncio", "pytest-subtests", "pytest-flakefinder",
           "pytest-repeat", "pytest-random-order", "pytest-order", "pytest-forked",
           "pytest-rerunfailures", "pytest-cov", "pytest-randomly", "pytest-xdist")
#: the suites' pytest.ini: the same plugins for every runner (pytest-randomly would reseed
#: every test; pytest-xdist registers two entry points, and its looponfail one imports
#: execnet; pytest-asyncio warns without a loop scope)
PYTEST_INI = ("[pytest]\naddopts = -p no:cacheprovider -q -p no:randomly -p no:cov "
              "-p no:xdist -p no:xdist.looponfail -p no:rerunfailures\n"
              "asyncio_default_fixture_loop_scope = function\n")


def precompile() -> None:
    """Byte-compile mpidist, as ``pip install`` does for the peers' packages: the
    benchmarks run with PYTHONDONTWRITEBYTECODE, and an editable checkout would
    otherwise compile its sources in every run."""
    import compileall

    compileall.compile_dir(str(REPO / "mpidist"), quiet=1)


def _venv_with(path: Path, *packages: str) -> str:
    """The python of a venv at ``path`` with ``packages``, made on first use."""
    py, stamp = path / "bin" / "python", path / "mpidist-packages.txt"
    wanted = "\n".join((TORCH, "mpi4py", "pytest", "numpy", *packages))
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:  # new, or the list grew
        subprocess.run([str(py), "-m", "pip", "install", "-q", *wanted.split("\n")],
                       check=True)
        stamp.write_text(wanted)
    return str(py)


def peers_python() -> str:
    """A separate venv for pytest-mpi and torch's test helpers (both define --with-mpi
    or need extra packages, and must not see mpidist's plugin)."""
    return _venv_with(PEERS_VENV, "pytest-mpi", "expecttest", *PLUGINS)


ISOLATE_VENV = HERE / ".venv-isolate"
MPIPYTEST_VENV = HERE / ".venv-mpipytest"


def isolate_python() -> str:
    """pytest-isolate-mpi (one mpirun per test) in a venv of its own: its ``mpi``
    marker means something else than pytest-mpi's and mpidist's."""
    return _venv_with(ISOLATE_VENV, "pytest-isolate-mpi")


def mpipytest_python() -> str:
    """mpi-pytest (Firedrake's ``parallel(nprocs=k)``) in a venv of its own: its module
    is ``pytest_mpi``, as pytest-mpi's is."""
    return _venv_with(MPIPYTEST_VENV, "mpi-pytest")


#: For runners that do not start torch.distributed themselves (pytest-mpi,
#: pytest-isolate-mpi): a gloo group over mpi4py, once per MPI job, as mpidist does.
GLOO_CONFTEST = '''
import atexit

import pytest
import torch.distributed as dist
from mpi4py import MPI


def _start():
    comm = MPI.COMM_WORLD
    store = None
    if comm.rank == 0:
        store = dist.TCPStore("127.0.0.1", 0, comm.size, True, wait_for_workers=False)
    port = comm.bcast(store.port if store else None, root=0)
    if comm.rank:
        store = dist.TCPStore("127.0.0.1", port, comm.size, False)
    dist.init_process_group("gloo", store=store, rank=comm.rank, world_size=comm.size)
    atexit.register(dist.destroy_process_group)


@pytest.fixture(autouse=True)
def gloo_group():
    # Started once per process, on the first test. Not a session fixture: pytest-isolate-mpi
    # hands its per-test children cached session fixtures without running them again.
    if MPI.COMM_WORLD.size > 1 and not dist.is_initialized():  # not its controller
        _start()
    yield
'''


def mpirun(n: int) -> list[str]:
    """``mpirun -n N`` as the MPI on PATH spells it (mpidist's launcher table: Open
    MPI 4 and 5 spell oversubscription differently), oversubscribed only with more
    ranks than cores: as users run it, so Open MPI binds each rank to a core."""
    from mpidist.bootstrap.launchers import detect

    exe = shutil.which("mpirun")
    if exe is None:
        sys.exit("mpirun not found: run examples/setup_env.sh first")
    launcher = detect(exe)
    return launcher.command(launcher.executable(exe), n,
                            oversubscribe=n > (os.cpu_count() or 1))


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONDONTWRITEBYTECODE="1")
    out.pop("PYTEST_ADDOPTS", None)
    return out


def timed(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
          expect: int = 0) -> float:
    """Run ``cmd``; return wall seconds; fail loudly on an unexpected exit code."""
    return run(cmd, cwd, extra_env, expect)[0]


def run(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
        expect: int = 0) -> tuple[float, str]:
    """Run ``cmd``; return wall seconds and its stdout; fail loudly on an unexpected
    exit code."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if proc.returncode != expect:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                 f"{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def median(values: list[float]) -> float:
    return statistics.median(values)
