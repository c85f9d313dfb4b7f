"""``mpidist run``: a crash or hang costs one relaunch, and the end is one report."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from ..mpijob import MPIRUN, job_env

SUITE = '''
import os, time
from mpi4py import MPI
import torch.distributed as dist
RANK = MPI.COMM_WORLD.Get_rank()

def test_a():
    dist.barrier()

def test_crash():
    if RANK == 1:
        os._exit(3)
    dist.barrier()

def test_b():
    dist.barrier()

def test_c_fails():
    assert RANK != 0

def test_d():
    dist.barrier()
'''


def supervise(job, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mpidist.cli", "run", "-n", "3", "--oversubscribe",
           *args[: args.index("--")], "--", *args[args.index("--") + 1:]]
    proc = subprocess.run(cmd, cwd=job.path, env=job_env(), capture_output=True, text=True,
                          timeout=timeout)
    print(proc.stdout, proc.stderr)
    return proc


def junit_cases(path) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        failure = case.find("failure")
        cases[case.get("name")] = ("passed" if failure is None else
                                   f"{failure.get('message')}\n{failure.text or ''}")
    return cases


def test_crash_costs_one_relaunch_and_every_test_is_reported_once(job):
    assert MPIRUN
    job.write("test_x.py", SUITE)
    junit = job.path / "out.xml"
    proc = supervise(job, "--", "test_x.py", f"--junitxml={junit}", "-rA")
    assert proc.returncode == 1  # merged: test_crash and test_c_fails failed
    assert "relaunching on the 3 remaining test(s)" in proc.stderr
    assert "mpidist run: 2 launch(es)" in proc.stderr
    tail = proc.stdout.split("short test summary info")[-1]
    assert "2 failed, 3 passed" in tail
    cases = junit_cases(junit)
    assert list(cases) == ["test_a", "test_crash", "test_b", "test_c_fails", "test_d"]
    assert cases["test_a"] == cases["test_b"] == cases["test_d"] == "passed"
    assert "rank 1/3 (host " in cases["test_crash"] and "died: exit code 3" in cases["test_crash"]
    assert cases["test_c_fails"].startswith("[rank 0/3")


def test_hang_is_aborted_then_the_rest_runs(job):
    job.write("test_x.py", SUITE.replace("os._exit(3)", "return"))
    junit = job.path / "out.xml"
    proc = supervise(job, "--", "test_x.py", "--mpi-timeout=3", f"--junitxml={junit}")
    assert "mpidist run: 2 launch(es)" in proc.stderr
    cases = junit_cases(junit)
    assert len(cases) == 5 and cases["test_d"] == "passed"
    assert cases["test_crash"].startswith("Timeout")


def test_max_restarts_zero_reports_the_rest_as_not_run(job):
    job.write("test_x.py", SUITE)
    junit = job.path / "out.xml"
    proc = supervise(job, "--max-restarts", "0", "--", "test_x.py", f"--junitxml={junit}")
    assert proc.returncode == 1
    assert "mpidist run: 1 launch(es)" in proc.stderr
    cases = junit_cases(junit)
    assert len(cases) == 5
    assert cases["test_d"].startswith("not run: the job ended abnormally 1 times")


def test_sigterm_keeps_finished_results_and_marks_the_test_in_flight(job):
    job.write("test_x.py", '''
import time
from mpi4py import MPI
RANK = MPI.COMM_WORLD.Get_rank()

def test_a():
    pass

def test_long():
    open(f"started-{RANK}", "w").close()
    time.sleep(120)

def test_never():
    pass
''')
    junit = job.path / "out.xml"
    cmd = [sys.executable, "-m", "mpidist.cli", "run", "-n", "2", "--oversubscribe", "--",
           "test_x.py", f"--junitxml={junit}"]
    proc = subprocess.Popen(cmd, cwd=job.path, env=job_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not (job.path / "started-1").exists() and time.monotonic() - start < 90:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 2, stdout + stderr  # interrupted
    cases = junit_cases(junit)
    assert cases["test_a"] == "passed"
    assert "terminated" in cases["test_long"]
    assert "test_never" not in cases


PACKED = '''
import os, time
import pytest


@pytest.mark.mpi(ranks=2)
def test_crash_in_a_group(mpi_comm):
    if mpi_comm.Get_rank() == 1:  # the group's rank 1, in whichever group runs it
        time.sleep(0.5)  # the other group is in a test of its own by now
        os._exit(3)
    mpi_comm.Barrier()


@pytest.mark.mpi(ranks=2)
@pytest.mark.parametrize("i", range(8))
def test_pair(i, mpi_comm):
    time.sleep(0.2)
    mpi_comm.Barrier()
'''


def test_a_crash_in_a_packed_group_costs_one_relaunch(job):
    """Rank 0 reports the death in whichever group it happened; the relaunch runs the
    tests no group finished, the one the other group had in flight included."""
    job.write("test_packed.py", PACKED)
    junit = job.path / "out.xml"
    cmd = [sys.executable, "-m", "mpidist.cli", "run", "-n", "4", "--oversubscribe", "--",
           "test_packed.py", "-p", "no:randomly", "--mpi-backend", "none",
           f"--junitxml={junit}"]
    proc = subprocess.run(cmd, cwd=job.path, env=job_env(), capture_output=True, text=True,
                          timeout=240)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 1
    assert "mpidist run: 2 launch(es)" in proc.stderr
    cases = junit_cases(junit)
    assert sorted(cases) == sorted([f"test_pair[{i}]" for i in range(8)] +
                                   ["test_crash_in_a_group"])  # each once
    assert all(cases[f"test_pair[{i}]"] == "passed" for i in range(8))
    crash = cases["test_crash_in_a_group"]
    assert "died: exit code 3" in crash and ("rank 1/2 (global 1, host " in crash or
                                             "rank 1/2 (global 3, host " in crash), crash


SLOW_REPORT = '''
import json, os, time
from pathlib import Path
from mpi4py import MPI
RANK = MPI.COMM_WORLD.Get_rank()

def test_a():
    pass

def test_crash():
    if RANK == 1:
        os._exit(3)
    if RANK == 0:  # still in the test when rank 0 reports the death, then on to test_b
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                json.loads(line).get("abnormal")
                for line in Path("journal.jsonl").read_text().splitlines()):
            time.sleep(0.05)

def test_b():
    pass

def test_c():
    pass
'''

SLOW_REPORTER = '''
import time
import pytest
from mpi4py import MPI

@pytest.hookimpl(trylast=True)  # after mpidist journaled the test
def pytest_runtest_logfinish(nodeid):
    if MPI.COMM_WORLD.Get_rank() == 0 and nodeid.endswith("test_crash"):
        time.sleep(3)  # a slow reporter plugin: rank 0's main thread goes on meanwhile
'''


def test_a_test_begun_after_the_report_of_the_death_is_not_in_flight(job):
    """Rank 0's main thread, still in the test a rank died in, goes on to the next
    test while its report of the death is being written. That test ran on no rank
    to the end: it is not failed as the one in flight, but run by the relaunch."""
    job.write("test_x.py", SLOW_REPORT)
    job.write("conftest.py", SLOW_REPORTER)
    junit = job.path / "out.xml"
    proc = supervise(job, "--journal", "journal.jsonl", "--", "test_x.py", "-p", "no:randomly",
                     "--mpi-backend", "none", f"--junitxml={junit}")
    assert proc.returncode == 1
    assert "relaunching on the 2 remaining test(s)" in proc.stderr
    cases = junit_cases(junit)
    assert list(cases) == ["test_a", "test_crash", "test_b", "test_c"]
    assert "died: exit code 3" in cases["test_crash"]
    assert cases["test_a"] == cases["test_b"] == cases["test_c"] == "passed"
