"""``--mpi-isolate`` under real mpirun: a crash, an exit or a hang costs its test
only, the next test runs, every test is in the report and the JUnit file once,
and a torch class's forked children give torch's runner's outcomes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ..mpijob import MPIResult

RANKS = Path(__file__).resolve().parents[1] / "ranks"
pytest.importorskip("torch")

EXPECTED = {
    "test_a_first": "passed", "test_b_segfault": "failed", "test_c_after_crash": "passed",
    "test_d_exit": "failed", "test_e_hang": "failed", "test_f_peer_stops": "failed",
    "test_g_leaves_state": "passed", "test_h_fresh_state": "passed",
    "test_i_packed": "passed", "test_j_in_the_rank": "passed",
    "test_k_no_mpi_here": "error", "test_l_last": "passed",
    **{f"test_m_many[{i}]": "passed" for i in range(24)},
    "test_n_segfault_late": "failed", "test_o_after_late_crash": "passed",
}


def outcomes(result: MPIResult) -> dict[str, list[str]]:
    """Each JUnit testcase's outcomes (a list: a test recorded twice shows)."""
    found: dict[str, list[str]] = {}
    for case in result.junit().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found.setdefault(case.get("name", ""), []).append(
            {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
                kinds[0] if kinds else "", "passed"))
    return found


@pytest.fixture(scope="module")
def isolated_run(make_job) -> MPIResult:
    job = make_job("isolated")
    job.write("test_isolated.py", (RANKS / "isolated_suite.py").read_text())
    return job.run(4, "-v", "-rfE", "-p", "no:randomly", "--mpi-peer-grace=6",
                   "--mpi-timeout=60", timeout=240)


def test_every_test_once_and_the_next_one_runs(isolated_run):
    assert isolated_run.returncode == 1, isolated_run.stdout[-3000:]
    found = outcomes(isolated_run)
    assert found == {name: [outcome] for name, outcome in EXPECTED.items()}, \
        isolated_run.stdout[-3000:]
    isolated_run.lines.fnmatch_lines(["*5 failed, 32 passed, 1 error in*"])


def test_a_crash_names_rank_host_signal_and_output(isolated_run):
    isolated_run.lines.fnmatch_lines([
        "*_ test_b_segfault _*",
        "[[]rank 1/4 (host *)[]]",
        "----- stdout -----",
        "about to crash on rank 1",
        "----- stacks -----",
        "Fatal Python error: Segmentation fault",
        "*test_isolated.py*in test_b_segfault",
        "mpidist: the test's process (pid *) was killed by signal 11 (SIGSEGV)",
    ])
    # the summary and JUnit lead with the death, not with the others' lost connections
    message = isolated_run.testcases()["test_b_segfault"].find("failure").get("message", "")
    assert "was killed by signal 11 (SIGSEGV)" in message, message
    isolated_run.lines.fnmatch_lines([
        "*_ test_d_exit _*",
        "[[]rank 0/4 (host *)[]]",
        "mpidist: the test's process (pid *) exited with code 3 before it reported",
    ])
    # after the template's memory went to huge pages (its 32nd child): the same
    isolated_run.lines.fnmatch_lines([
        "*_ test_n_segfault_late _*",
        "[[]rank 0/4 (host *)[]]",
        "----- stdout -----",
        "crashing late on rank 0",
        "----- stacks -----",
        "Fatal Python error: Segmentation fault",
        "mpidist: the test's process (pid *) was killed by signal 11 (SIGSEGV)",
    ])


def test_a_hang_reports_stacks_and_ends_at_its_limit(isolated_run):
    isolated_run.lines.fnmatch_lines([
        "*_ test_e_hang _*",
        "Timeout (0:00:04)!",
        "*in test_e_hang",
        "mpidist: the test's process (pid *) exceeded its time limit (its stacks above)",
    ])


def test_a_failure_stops_the_others_children(isolated_run):
    isolated_run.lines.fnmatch_lines([
        "*_ test_f_peer_stops _*",
        "*AssertionError: rank 0 fails before the collective",
        "mpidist: stopped because rank 0's process ended the test first",
        "*in test_f_peer_stops",
        "mpidist: the test's process (pid *) stopped because rank 0's process ended the "
        "test first (its stacks above)",
    ])


def test_an_isolated_test_has_no_mpi_and_says_so(isolated_run):
    isolated_run.lines.fnmatch_lines([
        "*this test runs in an isolated process (--mpi-isolate, mpi(isolate=True)), which "
        "has no MPI*"])


@pytest.fixture(scope="module")
def torch_runs(make_job) -> tuple[MPIResult, MPIResult]:
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job = make_job("isolated_torch")
    job.write("test_forked.py", (RANKS / "isolated_torch.py").read_text())
    theirs = job.execute([sys.executable, "-m", "pytest", "-p", "no:randomly",
                          "-p", "no:cacheprovider", "test_forked.py",
                          f"--junitxml={job.path / 'torch.xml'}"], job.path / "torch.xml",
                         timeout=240)
    ours = job.run(2, "-p", "no:randomly", "--mpi-isolate", "-rfs", timeout=240)
    return theirs, ours


def test_torch_class_forked_children_give_torchs_outcomes(torch_runs):
    theirs, ours = torch_runs
    expected = {"test_1_leaves_state": "passed", "test_2_fresh_process": "passed",
                "test_3_fails": "failed", "test_4_skips": "skipped",
                "test_5_second_rank_crashes": "passed", "test_6_expected_abort": "passed",
                "test_7_after": "passed"}
    assert outcomes(theirs) == {k: [v] for k, v in expected.items()}, theirs.stdout[-2000:]
    assert outcomes(ours) == {k: [v] for k, v in expected.items()}, ours.stdout[-3000:]
    ours.lines.fnmatch_lines(["*ChildError: Traceback (most recent call last):*",
                              "*AssertionError: Scalars are not equal!*"])


RPC_TESTS = ("test_rref_context_debug_info", "test_rref_leak", "test_local_rref_no_fork",
             "test_rref_str")


def test_torchs_rpc_tests_pass_with_isolation(make_job):
    """torch's TensorPipe RPC tests (world size 4) leave the RPC agent and RRef state
    in the process; with each test's children forked fresh they pass, as under torch's
    runner (without isolation, test_rref_context_debug_info waits for RRef state an
    earlier test left)."""
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job = make_job("isolated_rpc")
    job.write("test_rpc.py", (RANKS / "torch_rpc_tensorpipe.py").read_text())
    result = job.run(4, "-p", "no:randomly", "--mpi-isolate", "-rfE",
                     "-k", "TensorPipeRpcTest and (" + " or ".join(RPC_TESTS) + ")",
                     timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert outcomes(result) == {name: ["passed"] for name in RPC_TESTS}
