"""journal and supervisor argument handling (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpidist.bootstrap.launchers import LAUNCHERS
from mpidist.supervisor.journal import JournalWriter, read_journal, synthesized_failure
from mpidist.supervisor.relaunch import _launch_args, parse_run_args


def test_journal_round_trip_and_in_flight(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path)
    writer.collected(["t::a", "t::b", "t::c"])
    writer.start("t::a")
    writer.done("t::a", [{"x": 1}])
    writer.start("t::b")
    writer.close()
    with path.open("a") as f:
        f.write('{"done": "t::b", "rep')  # torn by a crash mid-write
    state = read_journal(path)
    assert state.collected == ["t::a", "t::b", "t::c"]
    assert list(state.done) == ["t::a"] and state.in_flight == "t::b"


def test_abnormal_is_remembered(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path)
    writer.start("t::a")
    writer.done("t::a", [], abnormal="timeout")
    writer.close()
    state = read_journal(path)
    assert state.in_flight is None and state.last_abnormal == "timeout"
    assert read_journal(tmp_path / "missing").done == {}


def test_synthesized_failure_is_pytest_wire_format(pytestconfig):
    reports = [pytestconfig.hook.pytest_report_from_serializable(config=pytestconfig, data=d)
               for d in synthesized_failure("t.py::test_x", "crashed")]
    assert [(r.when, r.outcome) for r in reports] == [
        ("setup", "passed"), ("call", "failed"), ("teardown", "passed")]
    assert reports[1].longrepr == "crashed" and reports[1].nodeid == "t.py::test_x"


def test_parse_run_args():
    unknown = lambda name: None  # noqa: E731  # a launcher mpidist does not know
    options = parse_run_args(["--max-restarts", "1", "-n", "4", "--oversubscribe", "--",
                              "tests/", "-x", "--junitxml", "o.xml"], unknown)
    assert options.launcher == ["mpirun", "-n", "4", "--oversubscribe"]
    assert options.pytest_args == ["tests/", "-x", "--junitxml", "o.xml"]
    assert options.max_restarts == 1
    srun = parse_run_args(["--launcher", "srun --mpi=pmix", "-N", "2", "--", "t.py"],
                          lambda name: ("/usr/bin/srun", LAUNCHERS["srun"]))
    assert srun.launcher == ["srun", "--mpi=pmix", "-N", "2"]


def test_run_spells_oversubscribe_and_signals_the_right_program():
    def ompi5(name):
        return "/v/bin/mpirun", LAUNCHERS["ompi5"]

    options = parse_run_args(["-n", "4", "--oversubscribe", "--", "t.py"], ompi5)
    assert options.launcher == ["mpirun", "-n", "4", "--map-by", "slot:OVERSUBSCRIBE",
                                "--bind-to", "none"]
    mpich = parse_run_args(["-n", "4", "--oversubscribe", "-hosts", "a:2,b:2", "--", "t.py"],
                           lambda name: ("/v/bin/mpirun", LAUNCHERS["mpich"]))
    assert mpich.launcher == ["mpirun", "-n", "4", "-hosts", "a:2,b:2"]  # not -h osts


def test_run_starts_intel_mpiexec_hydra_which_passes_sigterm_on(tmp_path):
    hydra = tmp_path / "mpiexec.hydra"
    hydra.write_text("#!/bin/sh\n")
    hydra.chmod(0o755)
    options = parse_run_args(["-n", "2", "--", "t.py"],
                             lambda name: (str(tmp_path / "mpirun"), LAUNCHERS["impi"]))
    assert options.launcher == [str(hydra), "-n", "2"]


def test_bad_restarts_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_run_args(["--max-restarts", "-1", "--", "t.py"])
    assert exc.value.code == 2
    assert "--max-restarts must be >= 0" in capsys.readouterr().err


def test_launch_args_drop_junit_only():
    assert _launch_args(["t.py", "--junitxml", "o.xml", "-x", "--junit-xml=p.xml", "-v"]) == [
        "t.py", "-x", "-v"]


OMPI_SIGNAL = """Fatal Python error: Segmentation fault

Current thread 0x00007f53c5665b80 (most recent call first):
  File "/tmp/t/test_x.py", line 9 in test_crash

Extension modules: mpi4py.MPI, torch._C (total: 2)
--------------------------------------------------------------------------
mpirun noticed that process rank 2 with PID 0 on node n2 exited on signal 11 (Segmentation fault).
--------------------------------------------------------------------------"""

OMPI_EXIT = """mpirun detected that one or more processes exited with non-zero status, thus causing
the job to be terminated. The first process to do so was:

  Process name: [[21404,1],2]
  Exit code:    3
--------------------------------------------------------------------------"""


def test_diagnose_open_mpi_signal_and_faulthandler():
    from mpidist.bootstrap.launchers import diagnose

    text = diagnose(OMPI_SIGNAL.splitlines())
    assert text.startswith("rank 2 (host n2) died: signal 11 (Segmentation fault)")
    assert 'File "/tmp/t/test_x.py", line 9 in test_crash' in text
    assert "Extension modules" not in text


def test_diagnose_exit_code_and_srun():
    from mpidist.bootstrap.launchers import diagnose

    assert diagnose(OMPI_EXIT.splitlines()) == "rank 2 exited with code 3"
    assert diagnose(["srun: error: n1: task 3: Exited with exit code 7"]) == (
        "rank 3 (host n1) died: exit code 7")
    assert diagnose(["srun: error: n2: task 1: Segmentation fault (core dumped)"]) == (
        "rank 1 (host n2) died: Segmentation fault (core dumped)")
    assert diagnose(["all good"]) == ""
