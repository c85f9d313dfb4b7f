"""Run real ``mpirun`` jobs on tiny inline suites and read what rank 0 wrote.

(Shared by tests/integration and tests/cluster; fixtures in tests/conftest.py.)

A ``Job`` is a directory with test files; ``job.run(n, *pytest_args)`` starts
``mpirun -n N python -m pytest --with-mpi ...`` there with a hard timeout and
returns the exit code, rank 0's output as a ``pytest.LineMatcher`` and the
JUnit XML. Nothing is mocked: these are the processes a user starts.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpidist.bootstrap.launchers import Launcher, detect

MPIRUN = shutil.which("mpirun")
TIMEOUT = 180
# mpidist's own plugins, read from its installed pytest11 entry points (setup.py). A job
# loads these alone unless its test is marked ``autoload``: each plugin autoloaded costs
# every rank of every job its import (hypothesis's alone is 0.7 s of CPU), and most jobs
# prove mpidist's behaviour, not its neighbours'.
PLUGINS = ",".join(sorted(ep.value for ep in importlib.metadata.entry_points(group="pytest11")
                          if ep.dist is not None and ep.dist.name == "mpidist"))
AUTOLOAD = False  # the running test's ``autoload`` mark (tests/conftest.py sets it)


def _tail(data: bytes | str | None, lines: int = 40) -> str:
    """The end of what a killed job had written (TimeoutExpired keeps bytes)."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data or ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class MPIResult:
    """What an mpirun job left behind."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    junit_path: Path

    @property
    def lines(self) -> pytest.LineMatcher:
        return pytest.LineMatcher(self.stdout.splitlines())

    def junit(self) -> ET.Element:
        return ET.parse(self.junit_path).getroot()

    def testcases(self) -> dict[str, ET.Element]:
        """JUnit testcases keyed by ``name`` (the test function name + params)."""
        return {case.get("name", ""): case for case in self.junit().iter("testcase")}


@functools.cache
def launcher() -> Launcher:
    """The launcher on PATH (Open MPI 4 or 5, MPICH, Intel MPI), by its manners."""
    assert MPIRUN is not None
    return detect(MPIRUN)


def mpirun_command(n: int) -> list[str]:
    """``mpirun -n N`` as this launcher spells it on a 2-core CI box."""
    assert MPIRUN is not None
    forward = [name for name in ("PATH", "PYTHONPATH") if name in os.environ]
    return launcher().command(launcher().executable(MPIRUN), n, forward=forward)


def job_env() -> dict[str, str]:
    """The environment of a job: this one, less pytest's own variables, with only
    mpidist's plugins unless the test is marked ``autoload``."""
    env = dict(os.environ)
    if MPIRUN is not None:
        env.update(dict(launcher().env))  # root, and Intel MPI's fabric on this box
    env.update(PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    for name in ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    if not AUTOLOAD:
        env.update(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTEST_PLUGINS=PLUGINS)
    if importlib.util.find_spec("pytest_randomly") is not None:
        # installed for tests/integration/test_plugins.py, which turns it on; the
        # other jobs keep their file order
        env["PYTEST_ADDOPTS"] = "-p no:randomly"
    return env


class Job:
    """A directory holding a small test suite, run under real mpirun."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # (pytest-asyncio, installed for tests/integration/test_plugins.py, warns
        # without a loop scope; pytest warns of the key where it is not loaded)
        loop = "asyncio_default_fixture_loop_scope = function\n" if AUTOLOAD else ""
        (path / "pytest.ini").write_text(
            f"[pytest]\naddopts = -p no:cacheprovider --color=no\n{loop}")

    def write(self, name: str, source: str) -> Path:
        target = self.path / name
        target.write_text(textwrap.dedent(source))
        return target

    def run(self, n: int, *args: str, launcher: bool | list[str] = True,
            with_mpi: bool = True, timeout: float = TIMEOUT,
            env: dict[str, str] | None = None) -> MPIResult:
        """``mpirun -n N python -m pytest --with-mpi --junitxml=... args``; ``launcher``
        False runs pytest alone, a list replaces the ``mpirun -n N`` prefix."""
        junit = self.path / f"junit-{time.monotonic_ns()}.xml"
        argv = [sys.executable, "-m", "pytest", f"--junitxml={junit}", *args]
        if with_mpi:
            argv.insert(3, "--with-mpi")
        prefix = launcher if isinstance(launcher, list) else (
            mpirun_command(n) if launcher else [])
        return self.execute(prefix + argv, junit, timeout, env)

    def execute(self, cmd: list[str], junit: Path | None = None, timeout: float = TIMEOUT,
                env: dict[str, str] | None = None) -> MPIResult:
        """Run any command line in the job directory (a launcher and what it starts)."""
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=self.path, env={**job_env(), **(env or {})},
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # say where it stood: CI shows the message
            pytest.fail(f"{' '.join(cmd)}\ntimed out after {timeout}s; the last output:\n"
                        f"{_tail(exc.stdout)}\n--- stderr\n{_tail(exc.stderr)}")
        result = MPIResult(proc.returncode, proc.stdout, proc.stderr,
                           time.monotonic() - start, junit or self.path / "no-junit.xml")
        print(f"$ {' '.join(cmd)}\n--- rc={proc.returncode} in {result.seconds:.1f}s\n"
              f"{proc.stdout}\n--- stderr\n{proc.stderr}")
        return result
