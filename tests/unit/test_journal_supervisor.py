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
    writer.running("t::a")
    writer.done("t::a", [{"x": 1}])
    writer.running("t::b")
    writer.close()
    with path.open("a") as f:
        f.write('{"done": "t::b", "rep')  # torn by a crash mid-write
    state = read_journal(path)
    assert state.collected == ["t::a", "t::b", "t::c"]
    assert list(state.done) == ["t::a"] and state.in_flight == "t::b"


def test_abnormal_is_remembered(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path)
    writer.running("t::a")
    writer.done("t::a", [], abnormal="timeout")
    writer.close()
    state = read_journal(path)
    assert state.in_flight is None and state.last_abnormal == "timeout"
    assert read_journal(tmp_path / "missing").done == {}


def test_rank_0_is_in_the_test_it_began_running_not_the_one_it_logged_last(tmp_path: Path):
    """Rank 0 logs a test once the next one's setup is done: a death in that setup
    is the next test's, and the test before it finished with its result unlogged."""
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, durable=False)
    writer.running("t::a")
    writer.running("t::b")  # rank 0 died here, before it logged t::a
    writer.close()
    state = read_journal(path)
    assert state.in_flight == "t::b" and state.unlogged == ["t::a"] and not state.done


def test_a_rerun_begins_again_and_logging_clears_it(tmp_path: Path):
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path)
    writer.running("t::a")
    writer.running("t::b")
    writer.done("t::a", [])
    writer.done("t::b", [])
    writer.running("t::b")  # its rerun
    writer.close()
    state = read_journal(path)
    assert state.in_flight == "t::b" and state.unlogged == []


def test_a_reported_end_of_the_job_is_the_last_word(tmp_path: Path):
    """A rank that failed a test went on to the next test's setup; rank 0 then
    reported the job's end on the first: the second is not in flight."""
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path)
    writer.running("t::a")
    writer.running("t::b")
    writer.done("t::a", [], abnormal="died")
    writer.close()
    state = read_journal(path)
    assert state.in_flight is None and state.unlogged == [] and state.last_abnormal == "died"


def test_a_test_begun_after_the_report_of_the_end_is_not_in_flight(tmp_path: Path):
    """Rank 0's main thread may begin the next test's setup while another thread
    writes the report that ends the job: that test is not in flight (the relaunch
    runs it), until the next launch begins."""
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path)
    writer.collected(["t::a", "t::b", "t::c"])
    writer.running("t::a")
    writer.done("t::a", [], abnormal="died")
    writer.running("t::b")  # after the report: it ran on no rank to the end
    writer.close()
    state = read_journal(path)
    assert state.in_flight is None and state.unlogged == [] and list(state.done) == ["t::a"]
    writer = JournalWriter(path)
    writer.collected(["t::b", "t::c"])  # the relaunch
    writer.running("t::b")
    writer.close()
    assert read_journal(path).in_flight == "t::b"


def test_the_replay_of_a_dead_rank_0_names_its_test_and_the_lost_ones(tmp_path: Path,
                                                                      pytestconfig):
    from mpidist.supervisor.replay import _reported

    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, durable=False)
    writer.running("t::a")
    writer.running("t::b")
    writer.done("t::a", [{"kept": True}])
    writer.running("t::c")
    writer.running("t::d")
    writer.close()
    tests = _reported(read_journal(path), "rank 0/2 (host n1) died: signal 9 (SIGKILL)")
    assert list(tests) == ["t::a", "t::b", "t::c", "t::d"]
    assert tests["t::a"] == [{"kept": True}]
    calls = {nodeid: pytestconfig.hook.pytest_report_from_serializable(
        config=pytestconfig, data=reports[1]) for nodeid, reports in tests.items() if
        nodeid != "t::a"}
    assert calls["t::d"].longrepr == ("rank 0/2 (host n1) died: signal 9 (SIGKILL) while "
                                      "this test ran")
    for nodeid in ("t::b", "t::c"):
        assert str(calls[nodeid].longrepr).startswith("result lost: rank 0/2 (host n1) died")
    assert _reported(read_journal(path), "") == {"t::a": [{"kept": True}]}


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


def test_a_flight_log_is_readable_while_its_writer_lives_and_grows(tmp_path: Path):
    """Rank 0's flight log is written through a shared mapping: a reader (its keeper,
    after rank 0 died) sees every record at once, before any close; past the first
    mapping it grows, and close cuts off the unwritten tail."""
    path = tmp_path / "flight.jsonl"
    writer = JournalWriter(path, durable=False)
    writer.collected([f"t::{i}" for i in range(3000)])
    for i in range(3000):  # ~1.4 MiB of records: more than the first mapping
        writer.running(f"t::{i}")
        writer.done(f"t::{i}", [{"n": i, "pad": "x" * 400}])
    writer.running("t::last")
    state = read_journal(path)  # the writer never closed: as after a SIGKILL
    assert len(state.done) == 3000 and state.done["t::2999"]["reports"] == [
        {"n": 2999, "pad": "x" * 400}]
    assert state.in_flight == "t::last"
    assert path.stat().st_size > 1 << 20 and path.read_bytes().endswith(b"\0")
    writer.close()
    assert not path.read_bytes().endswith(b"\0")
    assert read_journal(path).in_flight == "t::last"


def test_a_plain_pass_is_logged_briefly_and_read_back_as_pytests_reports(
        tmp_path: Path, pytestconfig):
    path = tmp_path / "flight.jsonl"
    writer = JournalWriter(path, durable=False)
    writer.running("t.py::a")
    properties = [("mpi_outcomes", "passed=0-1")]
    writer.passed("t.py::a", ("t.py", 3, "a"), [
        ("setup", 0.5, 10.0, 10.5, [], properties),
        ("call", 1.25, 10.5, 11.75, [("Captured stdout call", "hi\n")], properties),
        ("teardown", 0.0, 11.75, 11.75, [], properties)], subtests=4)
    writer.close()
    record = read_journal(path).done["t.py::a"]
    assert record["subtests"] == 4 and "passed" not in record
    reports = [pytestconfig.hook.pytest_report_from_serializable(config=pytestconfig,
                                                                 data=data)
               for data in record["reports"]]
    assert [(r.when, r.outcome, r.duration) for r in reports] == [
        ("setup", "passed", 0.5), ("call", "passed", 1.25), ("teardown", "passed", 0.0)]
    call = reports[1]
    assert call.nodeid == "t.py::a" and tuple(call.location) == ("t.py", 3, "a")
    assert call.capstdout == "hi\n"
    assert [tuple(p) for p in call.user_properties] == properties
