"""mpidist against pytest-mpi at 16 to 256 real ranks: the whole job, rank 0's memory,
and how long the report of a failure is.

The suite, as a user's at scale: 40 passing tests, one test that fails on every rank
with a message that names the rank, a value that differs per rank and an object's
address (a communicator's repr), and one that fails on rank 3 only. No torch
(``--mpi-backend none``); both runners start with the same plugins (``_common``).
More ranks than cores is oversubscribed, as on a laptop or a shared node.

Printed per rank count: each runner's whole-job wall time (launch, start-up, 42 tests,
exit) and the ratio, rank 0's peak resident memory, and for mpidist the lines of its
FAILURES section and the bytes of its JUnit file (pytest-mpi prints a report per rank
and writes no single JUnit file). Usage:
    python benchmarks/bench_scale.py [--ranks 16,64,128,256] [--rounds 1] [--bare] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import PYTEST_INI, median, mpirun, peers_python, precompile, run

SUITE = '''
import pytest
from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


@pytest.mark.parametrize("i", range(40))
def test_passes(i):
    pass


def test_fails_everywhere():
    assert RANK < 0, f"rank {RANK} sees a value of {RANK * 7} in {COMM!r}"


def test_fails_on_rank_3():
    assert RANK != 3, "rank 3 disagrees"
'''

CONFTEST = '''
import json, os, resource

from mpi4py import MPI


def pytest_unconfigure(config):
    if MPI.COMM_WORLD.Get_rank() == 0:
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
'''


#: mpidist's pytest plugins (setup.py's entry points), named when autoload is off
OUR_PLUGINS = ("mpidist.session.plugin", "mpidist.testing.plugin", "mpidist.supervisor.recorder")


def failures_lines(stdout: str) -> int:
    """Lines of the FAILURES section of rank 0's report."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if " FAILURES " in line), None)
    if start is None:
        return 0
    end = next((i for i in range(start + 1, len(lines))
                if "short test summary info" in lines[i]), len(lines))
    return end - start - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="16,64,128,256")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default="")
    parser.add_argument("--bare", action="store_true",
                        help="no plugin but the runner's own on either side "
                        "(PYTEST_DISABLE_PLUGIN_AUTOLOAD, PYTEST_PLUGINS for the runner)")
    args = parser.parse_args()
    # PYTEST_PLUGINS, not -p: pytest looks a -p name up among every installed entry
    # point first (a scan each), which autoloading does once for every runner
    bare = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if args.bare else {}
    ours = {**bare, "PYTEST_PLUGINS": ",".join(OUR_PLUGINS)} if args.bare else {}
    theirs = {**bare, "PYTEST_PLUGINS": "pytest_mpi"} if args.bare else {}
    peers = peers_python()
    precompile()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("mpidist", "pytest_mpi"):
            (root / name).mkdir()
            (root / name / "pytest.ini").write_text(PYTEST_INI)
            (root / name / "test_scale.py").write_text(SUITE)
            (root / name / "conftest.py").write_text(CONFTEST)
        out = root / "out.json"
        for ranks in [int(r) for r in args.ranks.split(",")]:
            walls: dict[str, list[float]] = {"mpidist": [], "pytest-mpi": []}
            peak: dict[str, int] = {}
            report = ""
            junit = root / "mpidist" / "junit.xml"
            for _ in range(args.rounds):
                seconds, report = run(
                    [*mpirun(ranks), sys.executable, "-m", "pytest", "--with-mpi",
                     "--mpi-backend", "none", f"--junitxml={junit}", "--color=no"],
                    root / "mpidist", {"BENCH_OUT": str(out), **ours}, expect=1)
                walls["mpidist"].append(seconds)
                peak["mpidist"] = json.loads(out.read_text())["peak_kib"]
                seconds, _ = run([*mpirun(ranks), peers, "-m", "pytest", "--with-mpi",
                                  "--color=no"], root / "pytest_mpi",
                                 {"BENCH_OUT": str(out), **theirs}, expect=1)
                walls["pytest-mpi"].append(seconds)
                peak["pytest-mpi"] = json.loads(out.read_text())["peak_kib"]
            row = {"ranks": ranks, "mpidist_s": median(walls["mpidist"]),
                   "pytest_mpi_s": median(walls["pytest-mpi"]),
                   "mpidist_rank0_mib": peak["mpidist"] / 1024,
                   "pytest_mpi_rank0_mib": peak["pytest-mpi"] / 1024,
                   "failures_lines": failures_lines(report),
                   "junit_bytes": junit.stat().st_size}
            row["ratio"] = row["mpidist_s"] / row["pytest_mpi_s"]
            rows.append(row)
            print(f"{ranks} ranks: mpidist {row['mpidist_s']:.1f}s, pytest-mpi "
                  f"{row['pytest_mpi_s']:.1f}s ({row['ratio']:.2f}x); FAILURES "
                  f"{row['failures_lines']} lines, JUnit {row['junit_bytes'] / 1024:.0f} KB",
                  flush=True)
    plugins = "no other plugin loaded" if args.bare else "the same plugins on both sides"
    print(f"\n42 tests (one failing everywhere, one on rank 3), --mpi-backend none, "
          f"{plugins}, median of {args.rounds} round(s)")
    print(f"{'ranks':>6}{'mpidist s':>11}{'pytest-mpi s':>14}{'ratio':>7}"
          f"{'rank 0 MiB':>12}{'(pytest-mpi)':>14}{'FAILURES lines':>16}{'JUnit KB':>10}")
    for row in rows:
        print(f"{row['ranks']:>6}{row['mpidist_s']:>11.1f}{row['pytest_mpi_s']:>14.1f}"
              f"{row['ratio']:>6.2f}x{row['mpidist_rank0_mib']:>12.0f}"
              f"{row['pytest_mpi_rank0_mib']:>14.0f}{row['failures_lines']:>16}"
              f"{row['junit_bytes'] / 1024:>10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
