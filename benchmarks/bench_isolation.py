"""What ``--mpi-isolate`` costs, and what it buys: a suite of small torch tests written
torch's way (a ``MultiProcessTestCase`` class: each test starts a gloo group through
its ``FileStore``, does an ``all_reduce`` and checks it), at 4 ranks, run by

* mpidist, persistent ranks (``--mpi-isolate=off``: torch's child protocol runs in
  the rank itself);
* mpidist, ``--mpi-isolate`` (each test's torch child forked from the rank's warm
  template);
* torch's own runner (``python -m pytest``: 4 spawned processes per test);

then the same suite with one test that segfaults on rank 0, under both of mpidist's
modes: what the report and the JUnit file keep. Each run's CPU-s is the whole machine's
busy time over it (``/proc/stat``): on a quiet box, what the run cost in CPU.

Usage:
  python benchmarks/bench_isolation.py [--tests 200] [--ranks 4] [--crash-at 100]
        [--no-torch]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from _common import PYTEST_INI, env, mpirun, precompile

TORCH = "torch's runner"

SUITE = '''
import os
import signal

import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase

CRASH_AT = int(os.environ.get("BENCH_CRASH_AT", "-1"))


class SmallTest(MultiProcessTestCase):
    @property
    def world_size(self):
        return {ranks}

    def setUp(self):
        super().setUp()
        self._spawn_processes()


def _make(i):
    def test(self):
        if i == CRASH_AT and self.rank == 0:
            os.kill(os.getpid(), signal.SIGSEGV)
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", store=store, rank=self.rank,
                                world_size=self.world_size)
        t = torch.full((8,), float(i))
        dist.all_reduce(t)
        self.assertEqual(t[0].item(), i * self.world_size)
        dist.destroy_process_group()
    return test


for _i in range({tests}):
    setattr(SmallTest, f"test_{{_i:03d}}", _make(_i))
'''


def junit(path: Path) -> tuple[int, int, Counter[str]]:
    """(testcases, distinct names, outcomes) of a JUnit file (0, 0, {} if none)."""
    if not path.exists():
        return 0, 0, Counter()
    cases = list(ET.parse(path).getroot().iter("testcase"))
    outcomes: Counter[str] = Counter()
    for case in cases:
        tags = {child.tag for child in case}
        outcomes["failed" if tags & {"failure", "error"} else
                 "skipped" if "skipped" in tags else "passed"] += 1
    return len(cases), len({(c.get("classname"), c.get("name")) for c in cases}), outcomes


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (``/proc/stat``: user, nice, system,
    irq, softirq), in seconds: a run's ranks, templates and short-lived children,
    which no ``getrusage`` of ours sees whole. On a quiet box, the run's CPU cost."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], cwd: Path, extra: dict[str, str]) -> tuple[float, int, float]:
    """(wall seconds, exit code, busy CPU-seconds of the machine) of one run."""
    cpu = busy_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **extra}, capture_output=True,
                          text=True, timeout=3600)
    return time.perf_counter() - start, proc.returncode, busy_cpu_seconds() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--crash-at", type=int, default=100)
    parser.add_argument("--no-torch", action="store_true", help="skip torch's runner")
    args = parser.parse_args()
    precompile()
    work = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    (work / "pytest.ini").write_text(PYTEST_INI)
    (work / "test_small.py").write_text(SUITE.format(ranks=args.ranks, tests=args.tests))
    py = [sys.executable, "-m", "pytest", "test_small.py"]
    mpi = [*mpirun(args.ranks), *py, "--with-mpi"]
    print(f"{args.tests} torch tests (MultiProcessTestCase, gloo), {args.ranks} ranks, "
          f"{os.cpu_count()} cores; {work}")
    rows: dict[str, float] = {}
    runs = [("mpidist persistent", [*mpi, "--mpi-isolate=off"]),
            ("mpidist --mpi-isolate", [*mpi, "--mpi-isolate"])]
    if not args.no_torch:
        runs.append((TORCH, py))
    for name, cmd in runs:
        xml = work / f"{len(rows)}.xml"
        seconds, code, cpu = run([*cmd, f"--junitxml={xml}"], work, {})
        cases, names, outcomes = junit(xml)
        rows[name] = seconds
        print(f"  {name:24} {seconds:8.1f} s  {cpu:6.1f} CPU-s  exit {code}  {cases} "
              f"testcases, {outcomes['passed']} passed, {outcomes['failed']} failed")
    persistent, isolated = rows["mpidist persistent"], rows["mpidist --mpi-isolate"]
    print(f"  --mpi-isolate / persistent: {isolated / persistent:.2f}x")
    if TORCH in rows:
        print(f"  torch's runner / --mpi-isolate: {rows[TORCH] / isolated:.1f}x")
    print(f"one test (test_{args.crash_at:03d}) segfaults on rank 0:")
    for number, (name, cmd) in enumerate(runs[:2]):
        xml = work / f"crash-{number}.xml"
        seconds, code, _ = run([*cmd, f"--junitxml={xml}"], work,
                               {"BENCH_CRASH_AT": str(args.crash_at)})
        cases, names, outcomes = junit(xml)
        print(f"  {name:24} {seconds:8.1f} s  exit {code}  {cases} testcases "
              f"({names} distinct) of {args.tests}: {outcomes['passed']} passed, "
              f"{outcomes['failed']} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
