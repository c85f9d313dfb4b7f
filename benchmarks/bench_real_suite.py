"""mpidist vs pytest-mpi on a real-shaped suite: many tiny tests, unittest subTests,
parametrized tests, tests that print.

The generated suite has 1,100 tests: 30 ``unittest.TestCase`` classes of 10 methods
with 20 ``subTest`` each (300 tests, 6,000 subtests), 500 parametrized tests, 200
tests that print a line through a fixture, and 100 plain methods. It needs no torch
group, so both runners use MPI alone (``--mpi-backend none`` for mpidist, the same
command in pytest-mpi's own venv). Each round runs both at each rank count,
interleaved in alternating order after one untimed run of each; the figures are
medians of wall time, start-up included, and the
counts each runner reported are compared (pytest-mpi prints one summary per rank).

Usage: python benchmarks/bench_real_suite.py [--ranks 2,4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTEST_INI, env, median, mpirun, peers_python, precompile

SUBTESTS = '''
import unittest


class Base(unittest.TestCase):
    def check(self, k):
        for i in range(20):
            with self.subTest(i=i, k=k):
                self.assertEqual((i * k) % 7, (i * k) % 7)


''' + "\n".join(
    f"class TestGroup{c}(Base):\n" + "".join(
        f"    def test_m{m}(self):\n        self.check({c * 10 + m})\n\n" for m in range(10))
    for c in range(30))

PARAMS = '''
import pytest


@pytest.mark.parametrize("a", range(25))
@pytest.mark.parametrize("b", range(20))
def test_arith(a, b):
    assert (a + b) - b == a
'''

OUTPUT = '''
import pytest


@pytest.fixture
def value(request):
    return request.param * 3


@pytest.mark.parametrize("value", range(200), indirect=True)
def test_prints(value, capsys):
    print(f"value is {value}")
    assert value % 3 == 0
'''

PLAIN = "class TestPlain:\n" + "".join(
    f"    def test_{i}(self):\n        assert {i} >= 0\n\n" for i in range(100))

COUNTS = re.compile(r"(\d+) (passed|failed|skipped|subtests passed)")


def counts(text: str) -> dict[str, int]:
    """The last summary's counts (pytest-mpi's ranks print identical ones)."""
    lines = [line for line in text.splitlines() if " in " in line and "passed" in line]
    return {kind: int(n) for n, kind in COUNTS.findall(lines[-1])} if lines else {}


def run(cmd: list[str], cwd: Path) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=1800)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                 f"{proc.stderr[-3000:]}")
    return seconds, counts(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,4")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    peers = peers_python()
    precompile()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, source in (("test_subtests.py", SUBTESTS), ("test_params.py", PARAMS),
                             ("test_output.py", OUTPUT), ("test_plain.py", PLAIN)):
            (root / name).write_text(source)
        (root / "pytest.ini").write_text(PYTEST_INI)
        times: dict[tuple[str, int], list[float]] = {}
        seen: dict[tuple[str, int], dict[str, int]] = {}
        for n in ranks:  # one untimed run of each first: caches warm for both alike
            run([*mpirun(n), sys.executable, "-m", "pytest", "--with-mpi",
                 "--mpi-backend=none"], root)
            run([*mpirun(n), peers, "-m", "pytest", "--with-mpi"], root)
        for round_ in range(args.rounds):
            for n in ranks:
                pair = [
                    ("mpidist", [*mpirun(n), sys.executable, "-m", "pytest", "--with-mpi",
                                 "--mpi-backend=none"]),
                    ("pytest-mpi", [*mpirun(n), peers, "-m", "pytest", "--with-mpi"]),
                ]
                for name, cmd in pair if round_ % 2 == 0 else pair[::-1]:  # ABBA order
                    seconds, found = run(cmd, root)
                    times.setdefault((name, n), []).append(seconds)
                    seen[(name, n)] = found
                    print(f"round {round_ + 1}, {n} ranks: {name} {seconds:.2f} s {found}",
                          flush=True)
    print(f"\nreal-shaped suite (1,100 tests, 6,000 subtests), median of {args.rounds}; "
          f"PYTHONUNBUFFERED={os.environ.get('PYTHONUNBUFFERED', '(unset)')} (with it, "
          "every write to the terminal is a system call)")
    print(f"{'ranks':>6}{'mpidist s':>11}{'pytest-mpi s':>14}{'ratio':>8}  counts agree")
    for n in ranks:
        ours, theirs = median(times[("mpidist", n)]), median(times[("pytest-mpi", n)])
        same = seen[("mpidist", n)] == seen[("pytest-mpi", n)]
        print(f"{n:>6}{ours:>11.2f}{theirs:>14.2f}{ours / theirs:>7.2f}x  "
              f"{'yes' if same else 'NO'} {seen[('mpidist', n)]}")


if __name__ == "__main__":
    main()
