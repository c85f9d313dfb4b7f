"""``bench_torch_suites.py --file``: any torch-style test file, torch's way and mpidist's.

Torch's way is ``python -m pytest FILE``: its runner spawns a process per rank per test
(``MultiProcessTestCase``), or keeps one set of workers per class
(``MultiProcContinuousTest``), or runs ranks as threads, or one process with a fake group.
mpidist's way is ``mpirun -n W python -m pytest --with-mpi FILE``, W the largest
``world_size`` a spawning class of the file asks for (read as mpidist reads it, without
running anything; at least 2), the smaller classes packed beside each other.

Each file runs in a scratch folder holding a copy of its own folder's ``.py`` files (a
file imports its siblings: ``test_c10d_gloo`` imports ``test_c10d_common``) and an empty
``pytest.ini``, so no ini or conftest of this repository applies to either side. Outcomes
come from each side's JUnit file, keyed ``class::test``. ``--torch-runs 2`` runs torch's
runner twice: a test whose two torch outcomes differ is flaky there, and listed as such.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from _common import env, mpirun

#: W for a file: the largest world_size among the spawning classes it defines (as mpidist
#: reads it; a base class it imports is not one of its tests)
_SIZES = '''
import importlib.util, json, sys
from mpidist.testing import compat
spec = importlib.util.spec_from_file_location("_bench_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
sizes = sorted({s for v in vars(module).values() if isinstance(v, type)
                and v.__module__ == spec.name and compat.is_spawning_class(v)
                and (s := compat.world_size_of(v))})
print(json.dumps(sizes))
'''


@dataclass
class Side:
    """One run of a file: seconds, and per test its outcome and message."""

    seconds: float
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)


def commit_of(path: Path, given: str = "") -> str:
    """Where in torch's history a file was read: ``given``, else its folder's name when
    that is a 40-digit commit (benchmarks/torch_files/<commit>/...), or ``blob-<sha>`` for
    a file whose commit the index did not name (its git blob id, which ``git log
    --find-object`` finds in torch's repository), else "unknown"."""
    if given:
        return given
    for part in reversed(path.resolve().parts[:-1]):
        if re.fullmatch(r"[0-9a-f]{40}", part):
            return part
        if re.fullmatch(r"blob-[0-9a-f]{40}", part):
            return "git blob " + part[5:]
    return "unknown"


def world_sizes(path: Path) -> list[int]:
    """The world sizes the spawning classes of ``path`` ask for (imports the file)."""
    proc = subprocess.run([sys.executable, "-c", _SIZES, str(path.resolve())], cwd=path.parent,
                          env=env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"{path}: cannot import it to read its world sizes:\n{proc.stderr[-2000:]}")
    return [int(s) for s in json.loads(proc.stdout.strip().splitlines()[-1])]


def read_junit(junit: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``class::test`` -> passed / failed / skipped, and -> the first line of why."""
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    if not junit.exists():
        return outcomes, messages
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name', '')}"
        found = {child.tag: child for child in case}
        kind = next((k for k in ("failure", "error", "skipped") if k in found), "")
        outcomes[key] = {"failure": "failed", "error": "failed", "skipped": "skipped"
                         }.get(kind, "passed")
        if kind:
            text = found[kind].get("message") or found[kind].text or ""
            messages[key] = " ".join(text.split())[:300]
    return outcomes, messages


def _run(cmd: list[str], workdir: Path, log: Path, junit: Path) -> Side:
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run([*cmd, f"--junitxml={junit}"], cwd=workdir, env=env(), stdout=out,
                       stderr=subprocess.STDOUT, timeout=7200, check=False)
    side = Side(time.perf_counter() - start)
    side.outcomes, side.messages = read_junit(junit)
    return side


def run_file(path: Path, ranks: int, select: list[str], torch_runs: int,
             logs: Path) -> tuple[list[Side], Side]:
    """Torch's runner ``torch_runs`` times (0: none), then mpidist on ``ranks`` ranks."""
    workdir = Path(tempfile.mkdtemp(prefix=f"torch-file-{path.stem}-"))
    try:
        for sibling in path.parent.glob("*.py"):
            shutil.copy(sibling, workdir / sibling.name)
        (workdir / "pytest.ini").write_text("[pytest]\n")
        pytest = ["-m", "pytest", path.name, "-q", "-p", "no:randomly", "-p",
                  "no:cacheprovider", *select]
        torch_sides = [_run([sys.executable, *pytest], workdir,
                            logs / f"{path.stem}-torch-{i + 1}.log", workdir / f"t{i}.xml")
                       for i in range(torch_runs)]
        ours = _run([*mpirun(ranks), sys.executable, *pytest, "--with-mpi"], workdir,
                    logs / f"{path.stem}-mpidist.log", workdir / "m.xml")
        return torch_sides, ours
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _counts(found: dict[str, str]) -> str:
    return "/".join(str(sum(1 for o in found.values() if o == kind))
                    for kind in ("passed", "failed", "skipped"))


def compare_file(path: Path, theirs: list[dict[str, str]], ours: Side
                 ) -> tuple[list[str], list[str]]:
    """(differences, flaky): a test differs when mpidist's outcome is none of torch's;
    it is flaky under torch when torch's runs disagree."""
    diffs, flaky = [], []
    names = sorted(set().union(*theirs, ours.outcomes))
    for name in names:
        seen = [t.get(name, "absent") for t in theirs]
        mine = ours.outcomes.get(name, "absent")
        if len(set(seen)) > 1:
            flaky.append(f"{name}: torch {' then '.join(seen)}, mpidist {mine}")
        if mine not in seen:
            why = ours.messages.get(name, "")
            diffs.append(f"{name}: torch {'/'.join(sorted(set(seen)))}, mpidist {mine}"
                         + (f" -- {why}" if why else ""))
    return diffs, flaky


def main_files(files: list[Path], ranks: int, select: list[str], torch_runs: int,
               write_table: Path | None, against: Path | None, commit: str,
               logs: Path, add_torch_runs: int = 0) -> int:
    """Every file both ways; a row per file, then its differences. Exit 1 on any.
    With ``against``: torch's side from the table, plus ``add_torch_runs`` new runs
    of torch's runner (kept in the table written, for flakiness)."""
    import torch

    logs.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}; logs in {logs}")
    print(f"{'file':40} {'ws':>5} {'torch p/f/s':>12} {'mpidist p/f/s':>14} {'agree':>9} "
          f"{'torch s':>8} {'mpidist s':>9} {'ratio':>6}")
    diverged = 0
    for path in (f.resolve() for f in files):
        sizes = world_sizes(path)
        n = ranks or max([2, *sizes])
        runs = add_torch_runs if against is not None else torch_runs
        torch_sides, ours = run_file(path, n, select, runs, logs)
        table_name = f"file-{path.stem}.json"
        if against is not None:
            table = json.loads((against / table_name).read_text())
            if table["torch"] != torch.__version__:
                print(f"note: {table_name} is torch {table['torch']}'s; this is "
                      f"{torch.__version__}")
            theirs = [{k: v for k, v in run.items() if not select or k in ours.outcomes}
                      for run in table["outcomes"]] + [side.outcomes for side in torch_sides]
            torch_s = min([float(table["seconds"])] + [side.seconds for side in torch_sides])
        else:
            theirs = [side.outcomes for side in torch_sides]
            torch_s = min(side.seconds for side in torch_sides)
        diffs, flaky = compare_file(path, theirs, ours)
        diverged += len(diffs)
        both = set().union(*theirs, ours.outcomes)
        label = path.name if len(path.name) <= 40 else "..." + path.name[-37:]
        ws = ",".join(map(str, sizes)) or "-"
        print(f"{label:40} {ws:>5} {_counts(theirs[0]):>12} {_counts(ours.outcomes):>14} "
              f"{len(both) - len(diffs):>4}/{len(both):<4} {torch_s:8.1f} "
              f"{ours.seconds:9.1f} {torch_s / ours.seconds:5.1f}x")
        where = commit_of(path, commit)
        where = where if where.startswith("git blob") else f"commit {where}"
        told = (f"{len(theirs)} run(s) from the table" + (f" ({runs} new)" if runs else "")
                if against else f"{runs} run(s)") + ", best time"
        print(f"  mpirun -n {n}; torch's file at {where}; torch's runner {told}")
        for line in diffs:
            print(f"  differs: {line}")
        for line in flaky:
            print(f"  flaky under torch's runner: {line}")
        if write_table is not None and (against is None or not select):
            # with --against: torch's side kept as read, mpidist's renewed
            write_table.mkdir(parents=True, exist_ok=True)
            (write_table / table_name).write_text(json.dumps(
                {"torch": torch.__version__, "file": path.name,
                 "commit": commit_of(path, commit), "world_sizes": sizes, "ranks": n,
                 "seconds": round(torch_s, 1), "mpidist_seconds": round(ours.seconds, 1),
                 "outcomes": [dict(sorted(run.items())) for run in theirs],
                 "mpidist": dict(sorted(ours.outcomes.items()))}, indent=1) + "\n")
    print(f"{diverged} test(s) differ")
    return 1 if diverged else 0
