"""torch's own distributed suites, both ways: torch's runner (a spawned process per
rank per test) and mpidist under mpirun (long-lived ranks). Prints per-test outcome
agreement and the time ratio; ``--against`` compares mpidist with a committed table of
torch's outcomes instead of running torch's runner (CI), ``--write-table`` writes one.

The suites come from the installed torch wheel (imported, never copied), wired as
torch's CI wires them: ``distributed`` as test/distributed/test_distributed_spawn.py (a
module with ``class TestDistBackendWithSpawn(TestDistBackend,
DistributedTest._DistTestBase)`` whose ``setUp`` calls ``self._spawn_processes()``, and
the environment contract ``BACKEND``, ``WORLD_SIZE``, ``TEMP_DIR`` with its ``barrier``
directory, ``INIT_METHOD``); ``rpc`` as test/distributed/rpc/test_tensorpipe_agent.py
(its classes have world_size 4). mpidist runs ``mpirun -n WORLD_SIZE python -m pytest
--with-mpi``.

Usage:
  python benchmarks/bench_torch_suites.py [--suites distributed,rpc] [--world-sizes 2,4]
        [--backends gloo,mpi] [-k EXPR] [--write-table DIR] [--against DIR] [--mpidist-only]
        [--isolate] [--only IDS]
  python benchmarks/bench_torch_suites.py --world-sizes 2,4 --together 8 [--against DIR]
  python benchmarks/bench_torch_suites.py --file PATH [--file PATH ...] [--ranks W]
        [--torch-runs 2] [-k EXPR] [--write-table DIR] [--against DIR] [--commit SHA]

``--file`` runs any torch-style test file (from torch's repository, or yours) torch's way
(``python -m pytest FILE``) and mpidist's (``mpirun -n W ... --with-mpi FILE``, W the
largest world size its classes ask for): see ``_torch_files``. With both ``--against`` and
``--write-table`` (on the same folder) torch's side of a file's table is kept as it was
measured and mpidist's side is renewed.

``--only IDS`` runs just the node ids listed in the file IDS, one per line, as pytest's
``--collect-only -q`` prints them (``test_rpc.py::Class::test``), on both sides: to finish
a comparison whose torch side was cut short (torch's runner takes about an hour for the
rpc suite on 2 cores) without running again what it already ran.

``--together`` runs the distributed suite at each world size in ONE mpidist job (a module
per size, each importing its own copy of torch's module with WORLD_SIZE set, the class's
``world_size`` pinned), packed side by side, against one mpidist job per size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import env, mpirun

SUITES = {
    # torch/test/distributed/test_distributed_spawn.py, as torch's CI runs it
    "distributed": '''
import torch
from torch.testing._internal.distributed.distributed_test import (
    DistributedTest,
    TestDistBackend,
)


class TestDistBackendWithSpawn(TestDistBackend, DistributedTest._DistTestBase):
    def setUp(self):
        super().setUp()
        self._spawn_processes()
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False).__enter__()
''',
    # torch/test/distributed/rpc/test_tensorpipe_agent.py (one file with mpidist's tests)
    "rpc": (Path(__file__).resolve().parents[1] / "tests" / "ranks"
            / "torch_rpc_tensorpipe.py").read_text(),
}

#: ``distributed`` pinned to one world size, for several sizes in one job (``--together``):
#: torch's module reads WORLD_SIZE at import (``require_world_size`` and friends decide
#: there), so each size imports its own copy of it with WORLD_SIZE set, as torch's CI
#: process would have it, and pins the class's ``world_size`` (torch's reads the variable).
PINNED = '''
import importlib.util
import os
import sys

import torch


def _torch_module(world_size):
    # under a name of its own in sys.modules: pickle finds the classes it defines by name
    name = "torch.testing._internal.distributed.distributed_test"
    origin = importlib.util.find_spec(name).origin
    spec = importlib.util.spec_from_file_location(f"{{name}}_ws{{world_size}}", origin)
    before = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = str(world_size)
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        if before is None:
            os.environ.pop("WORLD_SIZE")
        else:
            os.environ["WORLD_SIZE"] = before
    return module


_dt = _torch_module({ws})


class TestDistBackendWithSpawn(_dt.TestDistBackend, _dt.DistributedTest._DistTestBase):
    world_size = {ws}

    def setUp(self):
        super().setUp()
        self._spawn_processes()
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False).__enter__()
'''


def outcomes(junit: Path, by_module: bool = False) -> dict[str, str]:
    """Test name -> passed / failed / skipped, from a JUnit file (``by_module``: the key
    is ``module::name``, for a job that runs one suite from several modules). A name that
    more than one class has (the rpc suite's agents share test names) is keyed
    ``Class::name``, so that no outcome hides another."""
    cases: list[tuple[str, str, str]] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if kinds & {"failure", "error"} else
                   "skipped" if "skipped" in kinds else "passed")
        cases.append((case.get("classname", ""), case.get("name", ""), outcome))
    classes: dict[str, set[str]] = {}
    for classname, name, _ in cases:
        classes.setdefault(name, set()).add(classname)
    found: dict[str, str] = {}
    for classname, name, outcome in cases:
        if by_module:
            key = f"{classname.split('.')[0]}::{name}"
        elif len(classes[name]) > 1:
            key = f"{classname.split('.')[-1]}::{name}"
        else:
            key = name
        found[key] = outcome
    return found


def suite_env(backend: str, world_size: int, workdir: Path) -> dict[str, str]:
    temp = workdir / "TEMP_DIR"
    for sub in ("barrier", "test_dir", "init_dir"):
        (temp / sub).mkdir(parents=True, exist_ok=True)
    return {**env(), "BACKEND": backend, "WORLD_SIZE": str(world_size),
            "TEMP_DIR": str(temp), "INIT_METHOD": "env://"}


def run(cmd: list[str], workdir: Path, extra: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=workdir, env=extra, stdout=out, stderr=subprocess.STDOUT,
                       timeout=7200, check=False)
    return time.perf_counter() - start


def one(suite: str, backend: str, world_size: int, select: list[str], torch_too: bool,
        keep: Path, isolate: bool = False, only: list[str] | None = None) -> dict[str, object]:
    """Run one configuration (all of the suite, or the node ids ``only``); return its
    figures and both outcome maps."""
    workdir = Path(tempfile.mkdtemp(prefix=f"torch-{suite}-{backend}-{world_size}-"))
    (workdir / f"test_{suite}.py").write_text(SUITES[suite])
    (workdir / "pytest.ini").write_text("[pytest]\n")
    targets = only or [f"test_{suite}.py"]
    pytest = ["-m", "pytest", *targets, "-q", "-p", "no:randomly",
              "-p", "no:cacheprovider", *select]
    figures: dict[str, object] = {"suite": suite, "backend": backend,
                                  "world_size": world_size}
    tag = f"{suite}-{backend}-ws{world_size}"
    ours = workdir / "mpidist.xml"
    figures["mpidist_s"] = run(
        [*mpirun(world_size), sys.executable, *pytest, "--with-mpi",
         *(["--mpi-isolate"] if isolate else []), f"--junitxml={ours}"], workdir,
        suite_env(backend, world_size, workdir / "m"),
        keep / f"{tag}-mpidist.log")
    figures["mpidist"] = outcomes(ours) if ours.exists() else {}
    if torch_too:
        theirs = workdir / "torch.xml"
        figures["torch_s"] = run(
            [sys.executable, *pytest, f"--junitxml={theirs}"], workdir,
            suite_env(backend, world_size, workdir / "t"), keep / f"{tag}-torch.log")
        figures["torch"] = outcomes(theirs) if theirs.exists() else {}
    shutil.rmtree(workdir, ignore_errors=True)
    return figures


def together(backend: str, sizes: list[int], ranks: int, select: list[str],
               keep: Path) -> tuple[float, dict[int, dict[str, str]]]:
    """The ``distributed`` suite at every size in ``sizes`` in one mpidist job of
    ``ranks`` ranks (packed: one module per size); its seconds and outcomes per size."""
    workdir = Path(tempfile.mkdtemp(prefix=f"torch-together-{backend}-"))
    for ws in sizes:
        (workdir / f"test_distributed_ws{ws}.py").write_text(PINNED.format(ws=ws))
    (workdir / "pytest.ini").write_text("[pytest]\n")
    junit = workdir / "mpidist.xml"
    seconds = run([*mpirun(ranks), sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                   "-p", "no:cacheprovider", *select, "--with-mpi", f"--junitxml={junit}",
                   *(f"test_distributed_ws{ws}.py" for ws in sizes)],
                  workdir, suite_env(backend, ranks, workdir / "m"),
                  keep / f"distributed-{backend}-together-{ranks}.log")
    found = outcomes(junit, by_module=True) if junit.exists() else {}
    split = {ws: {name.split("::", 1)[1]: outcome for name, outcome in found.items()
                  if name.startswith(f"test_distributed_ws{ws}::")} for ws in sizes}
    shutil.rmtree(workdir, ignore_errors=True)
    return seconds, split


def compare(torch_side: dict[str, str], ours: dict[str, str]) -> list[str]:
    """Every test whose outcome differs (or that one side lacks)."""
    return [f"{name}: torch {torch_side.get(name, 'absent')}, mpidist "
            f"{ours.get(name, 'absent')}"
            for name in sorted(set(torch_side) | set(ours))
            if torch_side.get(name) != ours.get(name)]


def counts(found: dict[str, str]) -> str:
    return "/".join(str(sum(1 for o in found.values() if o == kind))
                    for kind in ("passed", "failed", "skipped"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", default="distributed")
    parser.add_argument("--world-sizes", default="2")
    parser.add_argument("--backends", default="gloo")
    parser.add_argument("-k", dest="select", default="")
    parser.add_argument("--write-table", type=Path, help="write torch's outcomes here")
    parser.add_argument("--against", type=Path,
                        help="compare mpidist with the tables here; skip torch's runner")
    parser.add_argument("--mpidist-only", action="store_true",
                        help="no torch's runner (BACKEND=mpi on a torch without MPI, where "
                        "it cannot run): mpidist's outcomes, each failure listed")
    parser.add_argument("--together", type=int, metavar="RANKS", default=0,
                        help="the distributed suite at every --world-sizes in one job of "
                        "RANKS ranks (packed), against one size at a time under mpidist; "
                        "outcomes checked against --against's tables or each other")
    parser.add_argument("--isolate", action="store_true",
                        help="run mpidist's side with --mpi-isolate (each torch child "
                        "forked from a warm template: the rpc suite needs it)")
    parser.add_argument("--only", type=Path, metavar="IDS",
                        help="run only the node ids listed in this file, on both sides")
    parser.add_argument("--logs", type=Path, default=Path("results/torch-suites"))
    parser.add_argument("--file", type=Path, action="append", default=[],
                        help="a torch-style test file (repeat for more); its folder's "
                        ".py files are copied beside it")
    parser.add_argument("--ranks", type=int, default=0,
                        help="--file: mpirun -n this (default: the largest world size)")
    parser.add_argument("--torch-runs", type=int, default=2,
                        help="--file: torch's runner this many times (flakiness shows)")
    parser.add_argument("--add-torch-runs", type=int, default=0,
                        help="--file with --against: run torch's runner this many more "
                        "times and add its outcomes to the table --write-table writes")
    parser.add_argument("--commit", default="",
                        help="--file: the torch commit the files are from (default: "
                        "their folder's name when it is one)")
    args = parser.parse_args()
    if args.file:
        from _torch_files import main_files

        missing = [str(f) for f in args.file if not f.is_file()]
        if missing:
            parser.error(f"no such file: {', '.join(missing)}")
        return main_files(args.file, args.ranks, ["-k", args.select] if args.select else [],
                          max(1, args.torch_runs), args.write_table, args.against,
                          args.commit, args.logs, args.add_torch_runs)
    import torch

    args.logs.mkdir(parents=True, exist_ok=True)
    select = ["-k", args.select] if args.select else []
    only = ([line.strip() for line in args.only.read_text().splitlines() if line.strip()]
            if args.only else None)
    if only is not None and not only:
        parser.error(f"--only {args.only}: no node ids in it")
    print(f"torch {torch.__version__}; logs in {args.logs}")
    print(f"{'suite':12} {'backend':7} {'ws':>2} {'torch p/f/s':>12} {'mpidist p/f/s':>14} "
          f"{'agree':>9} {'torch s':>8} {'mpidist s':>9} {'ratio':>6}")
    if args.together:
        return run_together(args, select)
    diverged = 0
    for suite in args.suites.split(","):
        for backend in args.backends.split(","):
            for ws in (int(w) for w in args.world_sizes.split(",")):
                name = f"{suite}-{backend}-ws{ws}.json"
                torch_too = args.against is None and not args.mpidist_only
                fig = one(suite, backend, ws, select, torch_too, args.logs, args.isolate,
                          only)
                ours = fig["mpidist"]
                assert isinstance(ours, dict)
                if args.mpidist_only:
                    print(f"{suite:12} {backend:7} {ws:>2} {'-':>12} {counts(ours):>14} "
                          f"{'-':>9} {'-':>8} {float(fig['mpidist_s']):9.1f}")  # type: ignore[arg-type]
                    for name in sorted(n for n, o in ours.items() if o == "failed"):
                        print(f"  failed: {name}")
                    continue
                if args.against is not None:
                    table = json.loads((args.against / name).read_text())
                    if table["torch"] != torch.__version__:
                        print(f"note: {name} is torch {table['torch']}'s; this is "
                              f"{torch.__version__}: regenerate it with --write-table")
                    theirs = {k: v for k, v in table["outcomes"].items()
                              if not select or k in ours}
                else:
                    theirs = fig["torch"]  # type: ignore[assignment]
                assert isinstance(theirs, dict)
                diffs = compare(theirs, ours)
                diverged += len(diffs)
                agree = len(set(theirs) | set(ours)) - len(diffs)
                t_s = fig.get("torch_s")
                m_s = float(fig["mpidist_s"])  # type: ignore[arg-type]
                ratio = f"{float(t_s) / m_s:5.1f}x" if t_s else "-"  # type: ignore[arg-type]
                t_txt = f"{float(t_s):8.1f}" if t_s else f"{'-':>8}"  # type: ignore[arg-type]
                print(f"{suite:12} {backend:7} {ws:>2} {counts(theirs):>12} "
                      f"{counts(ours):>14} {agree:>4}/{len(set(theirs) | set(ours)):<4} "
                      f"{t_txt} {m_s:9.1f} {ratio:>6}")
                for line in diffs:
                    print(f"  differs: {line}")
                if args.write_table is not None and args.against is None:
                    args.write_table.mkdir(parents=True, exist_ok=True)
                    (args.write_table / name).write_text(json.dumps(
                        {"torch": torch.__version__, "suite": suite, "backend": backend,
                         "world_size": ws, "outcomes": dict(sorted(theirs.items()))},
                        indent=1) + "\n")
    print(f"{diverged} test(s) differ")
    return 1 if diverged else 0


def run_together(args: argparse.Namespace, select: list[str]) -> int:
    """``--together``: one packed job against one job per size, outcome for outcome."""
    import torch

    sizes = [int(w) for w in args.world_sizes.split(",")]
    diverged = 0
    for backend in args.backends.split(","):
        seconds, packed = together(backend, sizes, args.together, select, args.logs)
        alone_s = 0.0
        print(f"{'backend':7} {'ws':>2} {'alone p/f/s':>12} {'packed p/f/s':>13} {'agree':>9}"
              f"{' table':>7} {'alone s':>8}")
        for ws in sizes:
            fig = one("distributed", backend, ws, select, False, args.logs)
            alone = fig["mpidist"]
            assert isinstance(alone, dict)
            alone_s += float(fig["mpidist_s"])  # type: ignore[arg-type]
            apart = compare(alone, packed[ws])
            diffs = list(apart)
            table = "-"
            if args.against is not None:
                data = json.loads((args.against / f"distributed-{backend}-ws{ws}.json")
                                  .read_text())
                if data["torch"] == torch.__version__:
                    theirs = {k: v for k, v in data["outcomes"].items()
                              if not select or k in alone}
                    against = compare(theirs, packed[ws])
                    diffs += [f"(torch's table) {line}" for line in against]
                    table = "differs" if against else "agrees"
                else:
                    table = f"is torch {data['torch']}'s"
            diverged += len(diffs)
            both = set(alone) | set(packed[ws])
            print(f"{backend:7} {ws:>2} {counts(alone):>12} {counts(packed[ws]):>13} "
                  f"{len(both) - len(apart):>4}/{len(both):<4} {table:>6} "
                  f"{float(fig['mpidist_s']):8.1f}")  # type: ignore[arg-type]
            for line in diffs:
                print(f"  differs: {line}")
        print(f"{backend}: sizes {args.world_sizes} one at a time (mpirun -n each) "
              f"{alone_s:.1f} s; together on {args.together} ranks, packed {seconds:.1f} s: "
              f"{alone_s / seconds:.2f}x")
    print(f"{diverged} test(s) differ")
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
