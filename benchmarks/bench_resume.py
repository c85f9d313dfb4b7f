"""What one crashing test costs: mpidist run (one relaunch) vs pytest-isolate-mpi
(one mpirun per test, so every test pays a launch).

The suite: N gloo all_reduce tests at 4 ranks; in the middle one, rank 1 calls
``os._exit(3)``. Both runners must finish the suite and report the other tests
as passed. Prints wall times, launches and the ratio.

Usage: python benchmarks/bench_resume.py [--tests 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import GLOO_CONFTEST, PYTEST_INI, isolate_python, timed

RANKS = 4

OURS = '''
import os
import torch
import torch.distributed as dist
from mpi4py import MPI


def body(i):
    if i == {crash} and MPI.COMM_WORLD.Get_rank() == 1:
        os._exit(3)
    t = torch.ones(1024)
    dist.all_reduce(t)
    assert t[0].item() == dist.get_world_size()
'''

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=20)
    args = parser.parse_args()
    n, crash = args.tests, args.tests // 2
    isolate = isolate_python()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours, theirs = root / "ours", root / "theirs"
        for path in (ours, theirs):
            path.mkdir()
            (path / "pytest.ini").write_text(PYTEST_INI)
        # pytest-isolate-mpi rebuilds its per-test command from the options, and mangles
        # -p (its children then fail with "file or directory not found: -")
        (theirs / "pytest.ini").write_text("[pytest]\n")
        body = textwrap.dedent(OURS).replace("{crash}", str(crash))
        (ours / "test_suite.py").write_text(body + "".join(
            f"\n\ndef test_{i}():\n    body({i})\n" for i in range(n)))
        (theirs / "conftest.py").write_text(GLOO_CONFTEST)
        (theirs / "test_suite.py").write_text("import pytest\n" + body + "".join(
            f"\n\n@pytest.mark.mpi(ranks={RANKS})\ndef test_{i}(mpi_ranks):\n    body({i})\n"
            for i in range(n)))
        ours_s = timed([sys.executable, "-m", "mpidist.cli", "run", "-n", str(RANKS),
                        "--oversubscribe", "--", "test_suite.py"], ours, expect=1)
        theirs_s = timed([isolate, "-m", "pytest", "test_suite.py"], theirs,
                         {"OMPI_MCA_rmaps_base_oversubscribe": "1"}, expect=1)
    print(f"\n{n} gloo all_reduce tests at {RANKS} ranks, one of which kills rank 1")
    print(f"{'runner':<34}{'launches':>9}{'wall s':>9}")
    print(f"{'mpidist run (persistent ranks)':<34}{2:>9}{ours_s:>9.1f}")
    print(f"{'pytest-isolate-mpi (per test)':<34}{n:>9}{theirs_s:>9.1f}")
    print(f"\npytest-isolate-mpi / mpidist run: {theirs_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
