"""mpidist's mpi4py process group against gloo and raw mpi4py, nccl-tests style.

    python benchmarks/bench_backends.py [--ranks 2 4] [--max-bytes 64M] [--reps 5]

For each world size one mpirun job sweeps all_reduce, all_gather and
broadcast from 4 B to 64 MB (float32). At each size the three
implementations run interleaved, ``--reps`` times, each rep timing a batch
of back-to-back calls after a warm-up; a rep's time is the slowest rank's
(the collective is done when every rank is) and the median rep is reported.

* ``mpi4py``: ``torch.distributed`` calls on a ``new_group(backend="mpi4py")``
* ``gloo``:   the same calls on a ``new_group(backend="gloo")``
* ``raw``:    mpi4py's ``Allreduce``/``Allgather``/``Bcast`` on numpy arrays

Memory: numpy asks the kernel for transparent huge pages on arrays >= 4 MB,
torch's CPU allocator only with ``THP_MEM_ALLOC_ENABLE=1``; with THP on
``madvise`` (the default here) that alone makes MPI on a torch tensor up to
1.7x slower than on a numpy array at 64 MB. The benchmark sets the variable so
both sides get the same memory (``--no-thp`` shows the difference).

Columns follow nccl-tests: size in bytes (for all_gather, the gathered
total), time in µs, algbw = size/time, busbw = algbw x 2(n-1)/n for
all_reduce, x (n-1)/n for all_gather, x 1 for broadcast. Then the issue's
targets: speed-up over gloo up to 256 KB and at 4 MB, ratio to raw mpi4py
from 256 KB up, and the µs the torch path adds at 4 KB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, env, mpirun

from mpidist.validation.config import parse_sizes
from mpidist.validation.stats import BUS_FACTOR  # nccl-tests' factors

COLLECTIVES = ("all_reduce", "all_gather", "broadcast")
BUSY_US = 8.0  # Python per call and rank in the control run (see worker)
IMPLS = ("mpi4py", "gloo", "raw")


# -- the worker (one per rank) ---------------------------------------------------------

def worker(max_bytes: int, reps: int) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    import mpidist

    mpidist.init("gloo")
    comm = MPI.COMM_WORLD
    rank, n = comm.rank, comm.size
    groups = {"mpi4py": dist.new_group(backend="mpi4py"), "gloo": dist.new_group(backend="gloo")}

    def runner(impl: str, collective: str, size: int):
        count = max(1, size // 4)
        if collective == "all_gather":
            count = max(1, count // n)  # size is the gathered total
        if impl == "raw":
            a = np.ones(count, dtype=np.float32)
            out = np.empty(count * n, dtype=np.float32)
            return {"all_reduce": lambda: comm.Allreduce(MPI.IN_PLACE, a, MPI.SUM),
                    "all_gather": lambda: comm.Allgather(a, out),
                    "broadcast": lambda: comm.Bcast(a, 0)}[collective]
        group = groups[impl]
        t = torch.ones(count)
        flat = torch.empty(count * n)
        return {"all_reduce": lambda: dist.all_reduce(t, group=group),
                "all_gather": lambda: dist.all_gather_single(flat, t, group=group),
                "broadcast": lambda: dist.broadcast(t, 0, group=group)}[collective]

    size = 4
    while size <= max_bytes:
        iters = max(3, min(500, (8 << 20) // size))
        for collective in COLLECTIVES:
            samples: dict[str, list[float]] = {impl: [] for impl in IMPLS}
            fns = {impl: runner(impl, collective, size) for impl in IMPLS}
            for fn in fns.values():  # warm-up: connections, caches
                for _ in range(min(iters, 20)):
                    fn()
            for _ in range(reps):
                for impl in IMPLS:  # interleaved: drift hits all three alike
                    fn = fns[impl]
                    comm.Barrier()
                    start = time.perf_counter()
                    for _ in range(iters):
                        fn()
                    elapsed = (time.perf_counter() - start) / iters
                    samples[impl].append(comm.allreduce(elapsed, op=MPI.MAX))
            if rank == 0:
                print(json.dumps({"n": n, "collective": collective, "bytes": size,
                                  **{impl: statistics.median(v) for impl, v in
                                     samples.items()}}), flush=True)
        size *= 4
    # Control: what this box adds to a raw 4 KB Allreduce when every rank also spends
    # BUSY_US of Python per call (about the torch frontend's and our share): with more
    # ranks than cores the peers' CPU time adds up before a collective can complete.
    a = np.ones(1024, dtype=np.float32)
    plain = lambda: comm.Allreduce(MPI.IN_PLACE, a, MPI.SUM)  # noqa: E731

    def with_python() -> None:
        end = time.perf_counter() + BUSY_US * 1e-6
        while time.perf_counter() < end:
            pass
        comm.Allreduce(MPI.IN_PLACE, a, MPI.SUM)

    control: dict[str, list[float]] = {"plain": [], "busy": []}
    for _ in range(reps):
        for name, fn in (("plain", plain), ("busy", with_python)):
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(1000):
                fn()
            control[name].append(comm.allreduce((time.perf_counter() - start) / 1000,
                                                op=MPI.MAX))
    if rank == 0:
        print(json.dumps({"control": True, "n": n, **{k: statistics.median(v) for k, v in
                                                       control.items()}}), flush=True)
    mpidist.shutdown()


# -- the driver -------------------------------------------------------------------------

def human(size: int) -> str:
    for unit, shift in (("M", 20), ("K", 10)):
        if size >= 1 << shift:
            return f"{size >> shift}{unit}"
    return str(size)


def table(rows: list[dict], n: int) -> None:
    for collective in COLLECTIVES:
        print(f"\n# {collective}, {n} ranks, float32 (time in us; algbw/busbw in GB/s)")
        print(f"# {'size':>8} | {'mpi4py':>9} {'algbw':>6} {'busbw':>6} | {'gloo':>9} "
              f"{'busbw':>6} | {'raw':>9} {'busbw':>6} | {'x gloo':>7} {'/ raw':>6}")
        factor = BUS_FACTOR[collective](n)
        for row in rows:
            if row["collective"] != collective:
                continue
            size = row["bytes"]
            bw = {impl: size / row[impl] / 1e9 for impl in IMPLS}
            print(f"  {human(size):>8} | {row['mpi4py'] * 1e6:9.1f} {bw['mpi4py']:6.2f} "
                  f"{bw['mpi4py'] * factor:6.2f} | {row['gloo'] * 1e6:9.1f} "
                  f"{bw['gloo'] * factor:6.2f} | {row['raw'] * 1e6:9.1f} "
                  f"{bw['raw'] * factor:6.2f} | {row['gloo'] / row['mpi4py']:7.1f} "
                  f"{row['raw'] / row['mpi4py']:6.2f}")


def targets(rows: list[dict]) -> None:
    """The issue's targets: x gloo for every collective; raw and added cost for all_reduce
    (the raw reference is mpi4py's ``Allreduce`` on numpy)."""
    print("\n# targets (one node): x gloo <= 256K >= 10 and @ 4M >= 2 (every collective); "
          "all_reduce / raw Allreduce >= 0.8 from 256K; added <= 20 us @ 4K")
    for n in sorted({r["n"] for r in rows}):
        mine = [r for r in rows if r["n"] == n]
        small = [r["gloo"] / r["mpi4py"] for r in mine if r["bytes"] <= 256 << 10]
        at4m = [r["gloo"] / r["mpi4py"] for r in mine if r["bytes"] == 4 << 20]
        reduce = [r for r in mine if r["collective"] == "all_reduce"]
        big = [r["raw"] / r["mpi4py"] for r in reduce if r["bytes"] >= 256 << 10]
        added = [(r["mpi4py"] - r["raw"]) * 1e6 for r in reduce if r["bytes"] == 4 << 10]
        print(f"  {n} ranks: x gloo <= 256K: min {fmt(min, small, '.1f')} | x gloo @ 4M: min "
              f"{fmt(min, at4m, '.1f')} | all_reduce / raw >= 256K: min {fmt(min, big, '.2f')}"
              f" | all_reduce added @ 4K: {fmt(max, added, '.1f')} us")


def fmt(pick: object, values: list[float], spec: str) -> str:
    return format(pick(values), spec) if values else "n/a"  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--max-bytes", default="64M")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-thp", action="store_true",
                        help="leave THP_MEM_ALLOC_ENABLE unset (torch tensors without huge pages)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(parse_sizes(args.max_bytes)[0], args.reps)
        return
    rows: list[dict] = []
    controls: list[dict] = []
    for n in args.ranks:
        cmd = [*mpirun(n), sys.executable, __file__, "--worker", "--max-bytes",
               args.max_bytes, "--reps", str(args.reps)]
        extra = {} if args.no_thp else {"THP_MEM_ALLOC_ENABLE": "1"}
        proc = subprocess.run(cmd, cwd=REPO, env={**env(), **extra}, capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
        mine = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        controls += [row for row in mine if row.get("control")]
        mine = [row for row in mine if not row.get("control")]
        table(mine, n)
        rows += mine
    targets(rows)
    print(f"\n# control: raw 4 KB Allreduce, plain vs with {BUSY_US:g} us of Python per call "
          "and rank")
    for row in controls:
        print(f"  {row['n']} ranks: {row['plain'] * 1e6:.1f} us -> {row['busy'] * 1e6:.1f} us "
              f"(+{(row['busy'] - row['plain']) * 1e6:.1f} us for {BUSY_US:g} us of work)")
    print(f"\n# THP_MEM_ALLOC_ENABLE={'unset' if args.no_thp else '1'}")


if __name__ == "__main__":
    main()
