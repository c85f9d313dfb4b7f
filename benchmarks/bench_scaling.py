"""Per-test cost of gathering and merging results vs the number of ranks.

200 trivial tests with ``--mpi-backend none`` at 2, 4, 8, 16, 32 ranks
(oversubscribed on this box). A conftest on rank 0 times the run loop, from
the first test's start to the session's end, so start-up (imports, MPI
launch) is excluded; the per-test figure is the loop time / 200, which is
pytest's own per-test work plus mpidist's gather, merge and verdict. A
plain one-process pytest run of the same suite is the floor.

With more ranks than cores, P processes time-share the cores and each does
pytest's own per-test work, so wall time per test cannot beat
(P / cores) x one rank's work. The "per core-share" column divides that out
(wall / max(1, P / cores)): what is left growing is the cost of gathering,
merging and the verdict, which is what this benchmark is about.

Usage: python benchmarks/bench_scaling.py [--ranks 2,4,8,16,32] [--tests 200] [--json F]
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


def loop_seconds(cmd: list[str], cwd: Path) -> float:
    out = cwd / "out.json"
    timed(cmd, cwd, {"BENCH_OUT": str(out)})
    return float(json.loads(out.read_text())["loop"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,4,8,16,32")
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="", help="also write the figures here")
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text(PYTEST_INI)
        (root / "conftest.py").write_text(CONFTEST)
        (root / "test_trivial.py").write_text(
            f"import pytest\n\n@pytest.mark.parametrize('i', range({args.tests}))\n"
            "def test_trivial(i):\n    pass\n")
        base = median([loop_seconds([sys.executable, "-m", "pytest"], root)
                       for _ in range(args.repeat)])
        rows = []
        for n in ranks:
            cmd = [*mpirun(n), sys.executable, "-m", "pytest", "--with-mpi", "--mpi-backend=none"]
            rows.append((n, median([loop_seconds(cmd, root) for _ in range(args.repeat)])))
            print(f"{n} ranks: {rows[-1][1] / args.tests * 1e6:.0f} us/test", flush=True)
    cores = len(os.sched_getaffinity(0))
    per = {n: loop / args.tests for n, loop in rows}
    share = {n: per[n] / max(1.0, n / cores) for n in ranks}
    first = ranks[0]
    print(f"\n{args.tests} trivial tests, --mpi-backend none, {cores} cores, "
          f"median of {args.repeat}")
    print(f"one process, no MPI: {base / args.tests * 1e6:.0f} us/test")
    print(f"{'ranks':>6}{'us/test':>10}{'per core-share':>16}{'growth':>8}"
          f"{'log2 P growth':>15}")
    for n in ranks:
        print(f"{n:>6}{per[n] * 1e6:>10.0f}{share[n] * 1e6:>16.0f}"
              f"{share[n] / share[first]:>8.2f}{math.log2(n) / math.log2(first):>15.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cores": cores, "tests": args.tests, "one_process_us": base / args.tests * 1e6,
            "ranks": {n: {"us_per_test": per[n] * 1e6, "per_core_share_us": share[n] * 1e6,
                          "growth": share[n] / share[first]} for n in ranks}}, indent=1))


if __name__ == "__main__":
    main()
