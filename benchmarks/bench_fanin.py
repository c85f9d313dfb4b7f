"""What rank 0 receives from every rank, measured at 16-256 real ranks and modelled
beyond: a failure on every rank, and the watchdog's polling of mpidist's channel.

* **A failure on every rank.** One test fails on every rank with a message of its own
  (the worst case for the report: every rank sends its full payload). Rank 0 times,
  from ``pytest_runtest_logstart`` to ``pytest_runtest_logfinish``, that test and a
  passing test with the same body, in wall time and in its own CPU time; the
  difference is the fan-in: receiving P payloads, decoding, grouping
  (``report/grouping.py``) and writing one report. On this box the wall time also
  holds the other ranks' own work on a failure (pytest's traceback, their payload),
  which here shares rank 0's two cores; rank 0's CPU time is what the fan-in costs it.
  The bytes are the ranks' failure texts as rank 0 holds them.
* **The channel.** A 10-s test: rank 0's channel counts the requests it serves while
  it runs (every rank's watchdog looks for a dump of the test, less often as the test
  ages; the test's leader looks for failures at every tick).

The model: a least-squares line through the measured points, rank 0's CPU = a + b * P
and bytes = c * P, printed at 1,024 and 4,096 ranks. Its limits: a network's latency
and bandwidth are not in it (MPI's gather of the fixed records is a tree; the payloads
are point-to-point to rank 0: over 100 Gb/s, 1 MB is ~0.1 ms, small beside decoding
them); the line assumes the per-payload cost stays flat, which holds while rank 0's
memory does (tens of MB at 4,096 ranks); and the channel's rate is the watchdogs'
polling while one long test runs, which rank 0 serves on one thread.

Usage: python benchmarks/bench_fanin.py [--ranks 16,64,128,256] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import PYTEST_INI, mpirun, precompile, run

SUITE = '''
import time

from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def test_a_passes():
    COMM.Barrier()


def test_b_fails_everywhere():
    COMM.Barrier()
    assert RANK < 0, f"rank {RANK} sees a value of {RANK * 7} in {COMM!r}"


def test_c_runs_ten_seconds():
    time.sleep(10)
'''

CONFTEST = '''
import json, os, time

SPANS, CPU, BYTES = {}, {}, {}


def pytest_runtest_logstart(nodeid):
    SPANS[nodeid], CPU[nodeid] = time.perf_counter(), time.process_time()
    if nodeid.endswith("ten_seconds"):
        SPANS["served"] = _served()


def pytest_runtest_logreport(report):
    if report.when == "call" and report.failed:  # what the ranks sent, as text
        texts = getattr(report, "mpi_rank_texts", {})
        BYTES[report.nodeid] = len(str(report.longrepr)) + sum(map(len, texts.values()))


def pytest_runtest_logfinish(nodeid):
    SPANS[nodeid] = time.perf_counter() - SPANS[nodeid]
    CPU[nodeid] = time.process_time() - CPU[nodeid]
    if nodeid.endswith("ten_seconds"):
        SPANS["served"] = _served() - SPANS["served"]


def _served():
    from mpidist import runtime
    return runtime.current().rendezvous.server.served


def pytest_unconfigure(config):
    if os.environ.get("BENCH_OUT") and not hasattr(config, "workerinput"):  # rank 0
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump({"spans": SPANS, "cpu": CPU, "bytes": BYTES}, f)
'''


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares: y = a + b x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points) or 1.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="16,64,128,256")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    precompile()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text(PYTEST_INI)
        (root / "test_fanin.py").write_text(SUITE)
        (root / "conftest.py").write_text(CONFTEST)
        out = root / "out.json"
        for ranks in [int(r) for r in args.ranks.split(",")]:
            run([*mpirun(ranks), sys.executable, "-m", "pytest", "--with-mpi",
                 "--mpi-backend", "none", "--color=no"], root, {"BENCH_OUT": str(out)},
                expect=1)
            data = json.loads(out.read_text())
            spans, cpu = data["spans"], data["cpu"]
            passed, failed, long = ("test_fanin.py::test_a_passes",
                                    "test_fanin.py::test_b_fails_everywhere",
                                    "test_fanin.py::test_c_runs_ten_seconds")
            row = {"ranks": ranks, "fanin_ms": max(0.0, spans[failed] - spans[passed]) * 1e3,
                   "rank0_cpu_ms": max(0.0, cpu[failed] - cpu[passed]) * 1e3,
                   "bytes": data["bytes"][failed],
                   "served_per_s": spans["served"] / spans[long]}
            rows.append(row)
            print(f"{ranks} ranks: a failure on every rank: {row['fanin_ms']:.0f} ms at rank 0, "
                  f"{row['rank0_cpu_ms']:.0f} ms of its CPU, {row['bytes'] / 1024:.0f} KB; "
                  f"channel {row['served_per_s']:.0f} requests/s during a long test", flush=True)
    a, b = fit([(r["ranks"], r["rank0_cpu_ms"]) for r in rows])
    per_rank = sum(r["bytes"] / r["ranks"] for r in rows) / len(rows)
    c0, c1 = fit([(r["ranks"], r["served_per_s"]) for r in rows])
    print(f"\n{'ranks':>6}{'wall ms':>9}{'rank 0 CPU ms':>15}{'KB at rank 0':>14}"
          f"{'channel req/s':>15}")
    for row in rows:
        print(f"{row['ranks']:>6}{row['fanin_ms']:>9.0f}{row['rank0_cpu_ms']:>15.0f}"
              f"{row['bytes'] / 1024:>14.0f}{row['served_per_s']:>15.0f}")
    print(f"model: rank 0's CPU = {a:.0f} ms + {b:.3f} ms x P; bytes = "
          f"{per_rank / 1024:.2f} KB x P; channel = {c0:.0f} + {c1:.2f} x P requests/s")
    for ranks in (1024, 4096):
        print(f"{ranks:>6}{'':>9}{a + b * ranks:>15.0f}{per_rank * ranks / 1024:>14.0f}"
              f"{c0 + c1 * ranks:>15.0f}   (modelled)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
