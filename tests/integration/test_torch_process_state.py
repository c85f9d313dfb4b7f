"""torch spawning classes that count on a fresh process per test (``ranks/torch_process_state.py``),
under real mpirun on 4 ranks: the MPI world of a one-rank test is that rank (packed, or on
four ranks with three sitting out), a test's own
MASTER_PORT gets a store on its rank 0, and a backend, c10d's debug level or torchrun's
node-local variables do not pass from one test to the next."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ..mpijob import MPIResult

SUITE = Path(__file__).resolve().parents[1] / "ranks" / "torch_process_state.py"
pytest.importorskip("torch")
TESTS = ["OneRankMPITest::test_mpi_group_of_one", "OneRankOfFourMPITest::test_mpi_group_of_one",
         "OwnPortTest::test_env_rendezvous_on_own_port", "RegistryTest::test_1_registers",
         "RegistryTest::test_2_not_registered", "DebugLevelTest::test_1_sets_detail",
         "DebugLevelTest::test_2_level_is_back", "NodeLocalTest::test_no_local_rank"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def state_run(make_job) -> MPIResult:
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job = make_job("torch_process_state")
    job.write("test_torch_process_state.py", SUITE.read_text())
    # a hang (the MPI stand-in on the whole job, a client waiting for a store no one
    # hosts) fails its test at 60 s and ends the job: later tests are then absent
    return job.run(4, "-v", "-rfEs", "-p", "no:randomly", "--mpi-timeout", "60",
                   timeout=300, env={"STATE_PORT": str(_free_port())})


def test_every_test_passes(state_run):
    assert state_run.returncode == 0, state_run.stdout[-3000:]
    state_run.lines.fnmatch_lines([f"*= {len(TESTS)} passed[ ,]*in *"])


@pytest.mark.parametrize("name", TESTS)
def test_each_test_passed_once_in_junit(state_run, name):
    cls, test = name.split("::")
    cases = [c for c in state_run.junit().iter("testcase")
             if c.get("name") == test and c.get("classname", "").endswith(cls)]
    assert len(cases) == 1, state_run.stdout[-3000:]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    assert cases[0].find("skipped") is None
