"""Whole-session behaviour under real mpirun: stopping, selection, bad input, output."""

from __future__ import annotations

import pytest

RANK = "from mpi4py import MPI\nRANK = MPI.COMM_WORLD.Get_rank()\n"


def _build_has_nccl() -> bool:
    """A CUDA build of torch has NCCL even on a machine without a GPU."""
    import torch.distributed

    return bool(torch.distributed.is_nccl_available())


HAS_NCCL = _build_has_nccl()


def test_exitfirst_stops_every_rank_at_the_same_test(job):
    job.write("test_x.py", RANK + '''
import pathlib
import torch.distributed as dist

def test_a():
    assert RANK != 1

def test_b():
    pathlib.Path(f"ran-b-{RANK}").write_text("")
    dist.barrier()
''')
    result = job.run(4, "-x")
    assert result.returncode == 1
    result.lines.fnmatch_lines(["*stopping after 1 failures*", "*1 failed in*"])
    assert not list(job.path.glob("ran-b-*")), "a rank ran a test after -x stopped"


def test_maxfail_counts_merged_failures(job):
    job.write("test_x.py", RANK + '''
def test_a():
    assert RANK != 1

def test_b():
    assert RANK != 0

def test_c():
    pass
''')
    result = job.run(2, "--maxfail=2")
    result.lines.fnmatch_lines(["*stopping after 2 failures*", "*2 failed in*"])


def test_a_stop_on_a_passing_report_ends_every_rank_at_the_same_test(job):
    # The verdict of a test every rank passed leaves before rank 0's replay unless a
    # reporter outside pytest and mpidist could stop the session on it: this one
    # does, so every rank stops after test_a (none waits in test_b's collective).
    job.write("conftest.py", """
SESSION = []

def pytest_sessionstart(session):
    SESSION.append(session)

def pytest_runtest_logreport(report):  # only rank 0 logs
    if report.when == "call" and report.passed and report.nodeid.endswith("test_a"):
        SESSION[0].shouldstop = "a plugin stopped after test_a"
""")
    job.write("test_x.py", RANK + '''
import pathlib
import torch.distributed as dist

def test_a():
    pass

def test_b():
    pathlib.Path(f"ran-b-{RANK}").write_text("")
    dist.barrier()

def test_c():
    pathlib.Path(f"ran-c-{RANK}").write_text("")
    dist.barrier()
''')
    result = job.run(2, timeout=120)
    assert result.returncode == 2, result.stdout  # interrupted, on every rank
    result.lines.fnmatch_lines(["*a plugin stopped after test_a*", "*1 passed*"])
    assert not list(job.path.glob("ran-*")), "a rank ran a test after the stop"


def test_divergent_collection_is_one_usage_error(job):
    job.write("test_x.py", RANK + '''
import pytest

@pytest.mark.parametrize("i", range(RANK + 1))
def test_p(i):
    pass
''')
    result = job.run(3, timeout=120)
    assert result.returncode == 4  # every rank: mpirun reports the first non-zero
    output = result.stdout + result.stderr
    assert output.count("ranks collected different tests") == 1, output
    assert "ranks 1-2/3 (host" not in output  # different lists are separate groups
    assert "rank 1/3 (host" in output and "rank 2/3 (host" in output
    assert "first difference at position 1: rank 0 has <end>, they have test_x.py::test_p[1]" \
        in output


def test_collection_error_on_one_rank(job):
    job.write("test_x.py", RANK + '''
if RANK == 1:
    raise ImportError("module broken on rank 1")

def test_a():
    pass
''')
    result = job.run(2, timeout=120)
    assert result.returncode == 2
    result.lines.fnmatch_lines([
        "*ERROR collecting test_x.py*",
        "*[[]rank 1/2 (host *)]*",
        "*ImportError: module broken on rank 1*",
        "*Interrupted: 1 error during collection*",
    ])


def test_selection_is_rank_zeros(job):
    # rank 0 alone deselects test_b (as --lf/--ff/ordering plugins decide from
    # rank 0's cache); every rank must follow, or the barrier deadlocks.
    job.write("conftest.py", RANK + '''
def pytest_collection_modifyitems(config, items):
    if RANK == 0:
        keep = [i for i in items if i.name != "test_b"]
        config.hook.pytest_deselected(items=[i for i in items if i.name == "test_b"])
        items[:] = list(reversed(keep))
''')
    job.write("test_x.py", '''
import torch.distributed as dist

def test_a():
    dist.barrier()

def test_b():
    dist.barrier()

def test_c():
    dist.barrier()
''')
    result = job.run(3, "-v", timeout=120)
    assert result.returncode == 0
    result.lines.fnmatch_lines([
        "test_x.py::test_c PASSED*", "test_x.py::test_a PASSED*",
        "*2 passed, 1 deselected*",
    ])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--mpi-backend=nccl", "backend nccl needs a CUDA device and rank 0/2 (host *) sees "
         "none*" if HAS_NCCL else "this torch build (*) has no NCCL backend*"),
        ("--mpi-backend=bogus", "unknown backend 'bogus'; choose one of auto, none, gloo*"),
        ("--mpi-store-timeout=-3", "--mpi-store-timeout: must be > 0, got -3"),
    ],
)
def test_bad_option_is_one_line_from_rank_zero(job, option, message):
    job.write("test_x.py", "def test_a():\n    pass\n")
    result = job.run(2, option, timeout=120)
    assert result.returncode == 4
    matcher = pytest.LineMatcher(result.stderr.splitlines())
    matcher.fnmatch_lines([f"ERROR: {message}"])
    # mpidist's lines (Open MPI 5 may add its own "PMIX ERROR: PMIX_ERR_UNREACH" line)
    assert sum(line.startswith("ERROR:") for line in result.stderr.splitlines()) == 1, \
        result.stderr
    assert "Traceback" not in result.stderr


def test_bad_marker_is_usage_error(job):
    job.write("test_x.py", '''
import pytest

@pytest.mark.mpi(min_size="two")
def test_a():
    pass
''')
    result = job.run(2, timeout=120)
    assert result.returncode == 4
    assert result.stderr.count("min_size must be a positive integer") == 1


def test_without_with_mpi_plugin_is_inert(job):
    job.write("test_x.py", '''
import sys
import pytest

@pytest.mark.mpi
def test_needs_mpi():
    pass

def test_plain():
    assert "mpi4py" not in sys.modules  # inert: nothing imported
    assert "torch" not in sys.modules

def test_tmp(mpi_tmp_path):
    assert mpi_tmp_path.is_dir()
''')
    result = job.run(1, "-rs", launcher=False, with_mpi=False)
    assert result.returncode == 0
    result.lines.fnmatch_lines([
        "SKIPPED [[]1] test_x.py:*: need --with-mpi option to run",
        "*2 passed, 1 skipped*",
    ])


@pytest.mark.parametrize("launcher", [True, False], ids=["mpirun-n1", "singleton"])
def test_world_of_one(job, launcher):
    job.write("test_x.py", '''
import torch, torch.distributed as dist

def test_allreduce(mpi_world):
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t.tolist() == [1.0, 1.0] and mpi_world.size == 1
''')
    result = job.run(1, launcher=launcher, timeout=120)
    assert result.returncode == 0
    result.lines.fnmatch_lines(["mpidist: 1 ranks on 1 node(s) (*), backend gloo, *",
                                "*1 passed*"])


def test_backend_none_has_no_process_group(job):
    job.write("test_x.py", '''
import torch.distributed as dist

def test_no_group():
    assert not dist.is_initialized()

def test_group_fixture(process_group):
    pass
''')
    result = job.run(2, "--mpi-backend=none", "-rs", timeout=120)
    assert result.returncode == 0
    result.lines.fnmatch_lines(["*--mpi-backend none*", "*1 passed, 1 skipped*"])


PRINTS = RANK + '''
def test_print():
    print(f"hello from rank {RANK}", flush=True)
'''


def test_other_ranks_are_silent_by_default(job):
    job.write("test_x.py", PRINTS)
    result = job.run(3, "-s")
    assert "hello from rank 0" in result.stdout
    assert "hello from rank 1" not in result.stdout + result.stderr
    assert result.stdout.count("test session starts") == 1


def test_rank_output_prefixes_other_ranks(job):
    job.write("test_x.py", PRINTS)
    result = job.run(3, "-s", "--mpi-rank-output")
    result.lines.fnmatch_lines(["*[[]rank 2] hello from rank 2"])  # may follow a "."
    result.lines.fnmatch_lines(["*[[]rank 1] PASSED test_x.py::test_print"])
    assert result.stdout.count("test session starts") == 1


def test_log_dir_keeps_per_rank_logs(job):
    job.write("test_x.py", PRINTS)
    result = job.run(2, "-s", "--mpi-log-dir=logs", env={"MPIDIST_RANK_OUTPUT": "0"})
    assert result.returncode == 0
    log1 = (job.path / "logs" / "rank-1.log").read_text()
    assert "hello from rank 1" in log1 and "PASSED test_x.py::test_print" in log1
    assert "PASSED test_x.py::test_print" in (job.path / "logs" / "rank-0.log").read_text()
    assert "hello from rank 1" not in result.stdout


def test_mpi_that_does_not_match_the_launcher_is_one_error(job):
    # Two singletons that a launcher claims are tasks 0 and 1 of 2: each sees a
    # world of one. Only task 0 may speak; both must exit with the usage code.
    import subprocess
    import sys

    from ..mpijob import job_env

    job.write("test_x.py", "def test_a():\n    pass\n")
    procs = [subprocess.Popen(
        [sys.executable, "-m", "pytest", "--with-mpi"], cwd=job.path,
        env={**job_env(), "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": str(task)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for task in (0, 1)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [4, 4]
    assert "the launcher started 2 tasks (SLURM_STEP_NUM_TASKS=2)" in outputs[0][1]
    assert outputs[1] == ("", "")


def test_bad_environment_value_is_one_line_from_rank_zero(job):
    job.write("test_x.py", "def test_a():\n    pass\n")
    result = job.run(2, env={"MPIDIST_RANK_OUTPUT": "maybe"}, timeout=120)
    assert result.returncode == 4
    assert result.stderr.count("MPIDIST_RANK_OUTPUT='maybe': expected a boolean") == 1


LAST_FAILED = RANK + '''
import torch.distributed as dist

def test_a():
    dist.barrier()

def test_b():
    dist.barrier()
    assert RANK != 1
'''


def rerun_last_failed(job, ini: str):
    """Run LAST_FAILED (test_b fails), then again with --lf; return the second run."""
    (job.path / "pytest.ini").write_text(ini)
    job.write("test_x.py", LAST_FAILED)
    assert job.run(2, timeout=120).returncode == 1
    return job.run(2, "--lf", "-v", timeout=120)


def test_last_failed_uses_rank_zeros_cache(job):
    again = rerun_last_failed(job, "[pytest]\naddopts = --color=no\n")
    again.lines.fnmatch_lines(["run-last-failure: rerun previous 1 failure*",
                               "test_x.py::test_b FAILED*", "*= 1 failed in*"])


def test_last_failed_state_comes_from_rank_zero(job):
    # Ranks > 0 get an empty cache of their own (as on another node's disk):
    # they must still rerun exactly rank 0's last failures, or they deadlock.
    again = rerun_last_failed(
        job, "[pytest]\naddopts = --color=no\ncache_dir = .cache-$OMPI_COMM_WORLD_RANK\n")
    again.lines.fnmatch_lines(["test_x.py::test_b FAILED*", "*= 1 failed in*"])


def test_skip_on_some_ranks_is_agreed_before_the_body(job):
    job.write("test_x.py", RANK + '''
import pathlib
import pytest
import torch
import torch.distributed as dist

@pytest.fixture
def gpus():
    if RANK >= 2:
        pytest.skip("needs 2 GPUs")

def test_collective(gpus):
    pathlib.Path(f"body-{RANK}").write_text("")
    dist.all_reduce(torch.ones(1))  # would deadlock if ranks 2,3 skipped alone

@pytest.fixture
def broken():
    if RANK == 1:
        raise RuntimeError("no device on rank 1")

def test_after_setup_error(broken):
    pathlib.Path(f"body2-{RANK}").write_text("")
    dist.barrier()

def test_still_runs():
    dist.barrier()
''')
    result = job.run(4, "-rs", timeout=120)
    assert result.returncode == 1
    result.lines.fnmatch_lines([
        "SKIPPED [[]1] test_x.py:*: skipped on ranks 2-3/4 (host *): needs 2 GPUs",
        "*1 passed, 1 skipped, 1 error*",
    ])
    result.lines.fnmatch_lines(["*ERROR at setup of test_after_setup_error*",
                                "*[[]rank 1/4 (host *)]*"])
    assert not list(job.path.glob("body*")), "a body ran although a rank skipped/failed setup"


def test_skip_inside_the_body_on_some_ranks_is_a_failure(job):
    job.write("test_x.py", RANK + '''
import pytest

def test_body_skip():
    if RANK == 1:
        pytest.skip("only rank 1 skips")
''')
    result = job.run(2, timeout=120)
    assert result.returncode == 1
    result.lines.fnmatch_lines(["*skipped on 1 of 2 ranks only, so the test did not run "
                                "everywhere*only rank 1 skips*"])


def test_a_script_that_never_calls_shutdown_exits_cleanly(job):
    # mpidist.init() without shutdown(): shut down at exit, before mpi4py finalizes MPI
    # (gloo's threads met interpreter teardown: SIGABRT on rank 0, 1 run in 6).
    script = job.write("script.py", '''
import torch
import torch.distributed as dist
import mpidist

mpidist.init("gloo")
t = torch.ones(4)
dist.all_reduce(t)
assert t[0].item() == dist.get_world_size()
print("done", flush=True)
''')
    import sys

    from ..mpijob import mpirun_command

    for _ in range(3):
        result = job.execute([*mpirun_command(2), sys.executable, str(script)])
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.count("done") == 2
