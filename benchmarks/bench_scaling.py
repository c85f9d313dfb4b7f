"""Per-test cost of mpidist's per-test machinery vs the number of ranks.

``--tests`` trivial tests with ``--mpi-backend none`` at each rank count
(oversubscribed on a small box), in up to three modes:

* ``world``: every test on every rank (pytest-mpi's way): the gather, merge
  and verdict over all ranks;
* ``packed``: every test ``@pytest.mark.mpi(ranks=2)``, P/2 groups side by
  side: the planner, rank 0's scheduler handing tests to P/2 groups, each
  group's exchange and rank 0's replay of every group's result;
* ``spread``: unmarked tests under ``--mpi-serial=spread``, P groups of one.

A conftest on rank 0 times the run loop, from the first test's start to the
session's end, so start-up (imports, MPI launch) is excluded; the per-test
figure is the loop time / tests. A plain one-process pytest run of the same
suite is the floor.

With more ranks than cores, P processes time-share the cores, so wall time per
test cannot beat (P / cores) x one rank's share of the work (in ``world``
mode every rank does pytest's own per-test work; in the packed modes rank 0,
which replays every result, gets 1/(P/cores) of a core). The "per
core-share" column divides that out (wall / max(1, P / cores)): what is left
growing is the cost of mpidist's own coordination, which is what this
benchmark is about.

Usage: python benchmarks/bench_scaling.py [--ranks 2,4,8,16,32] [--tests 200]
       [--modes world,packed,spread] [--repeat 3] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from _common import PYTEST_INI, median, mpirun, timed

CONFTEST = '''
import json, os, time

_t = {}

def pytest_runtest_logstart(nodeid, location):
    _t.setdefault("first", time.perf_counter())

def pytest_sessionfinish(session):
    if "first" in _t and os.environ.get("OMPI_COMM_WORLD_RANK", "0") == "0":
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump({"loop": time.perf_counter() - _t["first"],
                       "tests": session.testscollected}, f)
'''

SUITES = {  # mode -> (marker line, extra pytest options)
    "world": ("", []),
    "packed": ("@pytest.mark.mpi(ranks=2)\n", []),
    "spread": ("", ["--mpi-serial=spread"]),
}


def loop_seconds(cmd: list[str], cwd: Path) -> float:
    out = cwd / "out.json"
    out.unlink(missing_ok=True)
    timed(cmd, cwd, {"BENCH_OUT": str(out)})
    return float(json.loads(out.read_text())["loop"])


def write_suite(root: Path, tests: int, marker: str = "") -> None:
    (root / "pytest.ini").write_text(PYTEST_INI)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_trivial.py").write_text(
        f"import pytest\n\n{marker}@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_trivial(i):\n    pass\n")


def measure(mode: str, ranks: list[int], tests: int, repeat: int) -> dict[int, float]:
    """Seconds per test at each rank count, median of ``repeat`` runs."""
    marker, options = SUITES[mode]
    per: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_suite(root, tests, marker)
        for n in ranks:
            cmd = [*mpirun(n), sys.executable, "-m", "pytest", "--with-mpi",
                   "--mpi-backend=none", *options]
            per[n] = median([loop_seconds(cmd, root) for _ in range(repeat)]) / tests
            print(f"{mode} {n} ranks: {per[n] * 1e6:.0f} us/test", flush=True)
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,4,8,16,32")
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="world", help="world,packed,spread")
    parser.add_argument("--json", default="", help="also write the figures here")
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    modes = args.modes.split(",")
    unknown = set(modes) - set(SUITES)
    if unknown:
        sys.exit(f"bench_scaling: unknown mode(s) {sorted(unknown)}; known: {sorted(SUITES)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_suite(root, args.tests)
        base = median([loop_seconds([sys.executable, "-m", "pytest"], root)
                       for _ in range(args.repeat)])
    results = {mode: measure(mode, ranks, args.tests, args.repeat) for mode in modes}
    cores = len(os.sched_getaffinity(0))
    figures: dict[str, dict[int, dict[str, float]]] = {}
    print(f"\n{args.tests} trivial tests, --mpi-backend none, {cores} cores, "
          f"median of {args.repeat}")
    print(f"one process, no MPI: {base / args.tests * 1e6:.0f} us/test")
    for mode, per in results.items():
        share = {n: per[n] / max(1.0, n / cores) for n in ranks}
        first = ranks[0]
        figures[mode] = {n: {"us_per_test": per[n] * 1e6, "per_core_share_us": share[n] * 1e6,
                             "growth": share[n] / share[first]} for n in ranks}
        print(f"\nmode {mode}")
        print(f"{'ranks':>6}{'us/test':>10}{'per core-share':>16}{'growth':>8}"
              f"{'log2 P growth':>15}")
        for n in ranks:
            print(f"{n:>6}{per[n] * 1e6:>10.0f}{share[n] * 1e6:>16.0f}"
                  f"{share[n] / share[first]:>8.2f}{math.log2(n) / math.log2(first):>15.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cores": cores, "tests": args.tests, "one_process_us": base / args.tests * 1e6,
            "modes": figures, "ranks": figures[modes[0]]}, indent=1))


if __name__ == "__main__":
    main()
