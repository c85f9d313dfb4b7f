"""Packing: sized tests side by side on a bigger allocation, serial tests spread.

1. 96 tests of 2 ranks, each ~1 s of mostly waiting (a 0.9 s sleep around a
   gloo all_reduce): 48 in torch ``MultiProcessTestCase`` classes with
   ``world_size`` 2 (their own FileStore group per test, as torch's tests do),
   48 ``@pytest.mark.mpi(ranks=2)`` functions on mpidist's default group.
   mpidist on 8 ranks against mpidist on 2 ranks (ideal 4x; the start-up of 8
   ranks on this box's cores included), and pytest-isolate-mpi (one ``mpirun
   -n 2`` per test, its ``mpi(ranks=2)``) on the function half turned into
   all 96 (it cannot run torch's spawning classes on MPI ranks), and mpi-pytest
   on the same 96 as ``parallel(nprocs=2)`` in its non-forking mode (``mpiexec
   -n 2 pytest -m parallel[2]``: one job per size; its forking mode starts an
   ``mpiexec`` per test, as pytest-isolate-mpi does, and needs an MPI that
   allows nested ``MPI_Init``).
2. 400 unmarked tests of ~50 ms on 8 ranks: ``--mpi-serial=spread`` (each test
   once, on one rank) against ``all`` (pytest-mpi's every-rank run).

Wall time, start-up included; one run of each, side by side (``--rounds`` for
medians). Usage: python benchmarks/bench_packing.py [--rounds 1] [--no-peers]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import (
    GLOO_CONFTEST,
    PYTEST_INI,
    isolate_python,
    median,
    mpipytest_python,
    mpirun,
    precompile,
    timed,
)

SLEEP = 0.9

FUNCTIONS = f'''
import time
import pytest
import torch
import torch.distributed as dist


@pytest.mark.mpi(ranks=2)
@pytest.mark.parametrize("i", range({{n}}))
def test_pair(i):
    time.sleep({SLEEP / 2})
    t = torch.ones(4)
    dist.all_reduce(t)
    assert t.tolist() == [2.0] * 4
    time.sleep({SLEEP / 2})
'''

TORCH_CLASSES = f'''
import time
import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase


class Base(MultiProcessTestCase):
    @property
    def world_size(self):  # torch's usual spelling: a property
        return 2

    def check(self):
        time.sleep({SLEEP / 2})
        store = dist.FileStore(self.file_name, 2)
        dist.init_process_group("gloo", store=store, rank=self.rank, world_size=2)
        t = torch.ones(4)
        dist.all_reduce(t)
        self.assertEqual(t.tolist(), [2.0] * 4)
        time.sleep({SLEEP / 2})

    def setUp(self):
        super().setUp()
        self._spawn_processes()


''' + "\n".join(f"class TestPair{c}(Base):\n" + "".join(
    f"    def test_m{m}(self):\n        self.check()\n\n" for m in range(8)) for c in range(6))

#: the same test for pytest-isolate-mpi: one function each (it cannot select a test of
#: its own size parametrization by node id), and its ``mpi_ranks`` fixture
ISOLATED = f'''
import time
import pytest
import torch
import torch.distributed as dist


def body():
    time.sleep({SLEEP / 2})
    t = torch.ones(4)
    dist.all_reduce(t)
    assert t.tolist() == [2.0] * 4
    time.sleep({SLEEP / 2})
''' + "".join(f"\n\n@pytest.mark.mpi(ranks=2)\ndef test_pair_{i}(mpi_ranks):\n    body()\n"
              for i in range(96))

#: the same for mpi-pytest: its marker, no fixture
PARALLEL = ISOLATED.replace("@pytest.mark.mpi(ranks=2)", "@pytest.mark.parallel(nprocs=2)").replace(
    "(mpi_ranks)", "()")

#: rank 0 writes how long the run loop took (first test's start to the session's end)
LOOP_CONFTEST = '''
import os, time

_first = []

def pytest_runtest_logstart(nodeid, location):
    if not _first:
        _first.append(time.perf_counter())

def pytest_sessionfinish(session):
    if _first and os.environ.get("OMPI_COMM_WORLD_RANK", "0") == "0":
        with open(os.environ["BENCH_LOOP"], "a") as f:
            f.write(f"{time.perf_counter() - _first[0]}\\n")
'''

SERIAL = '''
import time
import pytest


@pytest.mark.parametrize("i", range(400))
def test_serial(i):
    time.sleep(0.05)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-peers", action="store_true",
                        help="skip pytest-isolate-mpi and mpi-pytest")
    args = parser.parse_args()
    precompile()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs, serial = Path(tmp, "ours"), Path(tmp, "theirs"), Path(tmp, "serial")
        firedrake = Path(tmp, "mpi-pytest")
        for path in (ours, theirs, serial, firedrake):
            path.mkdir()
            (path / "pytest.ini").write_text(PYTEST_INI)
        # pytest-isolate-mpi rebuilds its per-test command from the options, and mangles
        # -p (its children then fail with "file or directory not found: -")
        (theirs / "pytest.ini").write_text("[pytest]\n")
        (ours / "conftest.py").write_text(LOOP_CONFTEST)
        (ours / "test_functions.py").write_text(FUNCTIONS.format(n=48))
        (ours / "test_classes.py").write_text(TORCH_CLASSES)
        (theirs / "test_functions.py").write_text(ISOLATED)
        (theirs / "conftest.py").write_text(GLOO_CONFTEST)
        (serial / "test_serial.py").write_text(SERIAL)
        (firedrake / "test_functions.py").write_text(PARALLEL)
        (firedrake / "conftest.py").write_text(GLOO_CONFTEST)
        pytest_ = ["-m", "pytest", "--with-mpi", "--mpi-backend", "gloo"]
        serial_ = ["-m", "pytest", "--with-mpi", "--mpi-backend", "none"]
        rows: dict[str, list[float]] = {}
        loops: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for label, cmd, cwd in (
                ("mpidist, 2 ranks", [*mpirun(2), py, *pytest_], ours),
                ("mpidist, 8 ranks (packed)", [*mpirun(8), py, *pytest_], ours),
                ("serial: all, 8 ranks", [*mpirun(8), py, *serial_], serial),
                ("serial: spread, 8 ranks", [*mpirun(8), py, *serial_, "--mpi-serial=spread"],
                 serial),
            ):
                loop_file = Path(tmp, "loop.txt")
                loop_file.unlink(missing_ok=True)
                rows.setdefault(label, []).append(timed(cmd, cwd, {"BENCH_LOOP": str(loop_file)}))
                if loop_file.exists():
                    loops.setdefault(label, []).append(float(loop_file.read_text().split()[0]))
            if not args.no_peers:
                rows.setdefault("pytest-isolate-mpi (mpirun per test)", []).append(
                    timed([isolate_python(), "-m", "pytest"], theirs,
                          {"OMPI_MCA_rmaps_base_oversubscribe": "1"}))
                rows.setdefault("mpi-pytest (mpiexec -n 2, parallel[2])", []).append(
                    timed([*mpirun(2), mpipytest_python(), "-m", "pytest", "-m", "parallel[2]"],
                          firedrake))
        fig = {label: median(values) for label, values in rows.items()}
        print(f"{'run':<40}{'tests':>6}{'wall s':>9}")
        for label, seconds in fig.items():
            print(f"{label:<40}{400 if 'serial' in label else 96:>6}{seconds:>9.1f}")
        two, eight = fig["mpidist, 2 ranks"], fig["mpidist, 8 ranks (packed)"]
        loop2, loop8 = (median(loops[k]) for k in ("mpidist, 2 ranks",
                                                  "mpidist, 8 ranks (packed)"))
        print(f"\n96 tests of 2 ranks: 8 ranks packed is {two / eight:.2f}x faster than 2 "
              "ranks, start-up included (target >= 3x, ideal 4x)")
        print(f"  run loop alone (first test to session end): {loop2:.1f} s vs {loop8:.1f} s, "
              f"{loop2 / loop8:.2f}x; start-up {two - loop2:.1f} s at 2 ranks, "
              f"{eight - loop8:.1f} s at 8 ranks")
        if "pytest-isolate-mpi (mpirun per test)" in fig:
            iso = fig["pytest-isolate-mpi (mpirun per test)"]
            print(f"pytest-isolate-mpi / mpidist 8 ranks: {iso / eight:.2f}x; "
                  f"/ mpidist 2 ranks: {iso / two:.2f}x")
            fd = fig["mpi-pytest (mpiexec -n 2, parallel[2])"]
            print(f"mpi-pytest / mpidist 8 ranks: {fd / eight:.2f}x; "
                  f"/ mpidist 2 ranks: {fd / two:.2f}x")
        print(f"400 serial tests on 8 ranks: spread is "
              f"{fig['serial: all, 8 ranks'] / fig['serial: spread, 8 ranks']:.2f}x faster "
              "than all (target >= 4x)")


if __name__ == "__main__":
    main()
