"""Placement from history: a suite of mixed sizes and durations, run twice on 8 ranks.

The first run knows no durations: the sized tests start in collection order, which here
puts the long ones last, so each phase ends with a few groups busy on long tests while
the others wait. The second run reads the first's durations from the history file and
starts the longest first (longest-processing-time order). pytest's cache is off
(``-p no:cacheprovider``): the durations come from the history alone. Each round uses a
fresh history file; the figure is the ratio of the medians.

    python benchmarks/bench_history.py [--ranks 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import PYTEST_INI, median, mpirun, precompile, run

#: (size, seconds) of each test, in collection order: short first, each size's longest
#: last (as a suite's slowest test often is: the big-model or the stress test at the end)
SHAPE = ([(2, 0.1)] * 8 + [(4, 0.5)] * 8 + [(2, 0.5)] * 24 + [(4, 3.0)] + [(2, 1.0)] * 4
         + [(2, 5.0)])


def suite(where: Path) -> None:
    lines = ["import time", "import pytest", ""]
    for index, (size, seconds) in enumerate(SHAPE):
        name = f"test_{index:02d}_{size}_ranks_{int(seconds * 1000)}_ms"
        lines += [f"@pytest.mark.mpi(ranks={size})", f"def {name}():",
                  f"    time.sleep({seconds})", ""]
    (where / "test_mixed.py").write_text("\n".join(lines))
    (where / "pytest.ini").write_text(PYTEST_INI)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    precompile()
    firsts, seconds = [], []
    ideal = sum(size * secs for size, secs in SHAPE) / args.ranks
    print(f"{len(SHAPE)} tests of 2 and 4 ranks, 0.1-5 s each, on {args.ranks} ranks "
          f"(work / ranks: {ideal:.1f} s)")
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(tmp)
            suite(where)
            cmd = [*mpirun(args.ranks), sys.executable, "-m", "pytest", "--with-mpi",
                   "--mpi-backend", "none", f"--mpi-history={where / 'history.sqlite'}",
                   "test_mixed.py"]
            first, _ = run(cmd, where)
            second, _ = run(cmd, where)
            firsts.append(first)
            seconds.append(second)
            print(f"round {round_ + 1}: first run {first:.2f} s, second (history) "
                  f"{second:.2f} s")
    a, b = median(firsts), median(seconds)
    print(f"medians of {args.rounds}: first {a:.2f} s, second {b:.2f} s: the second run "
          f"takes {b / a:.2f}x the first's time ({a / b:.2f}x faster)")


if __name__ == "__main__":
    main()
