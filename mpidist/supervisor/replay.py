"""``pytest -p mpidist.supervisor.replay --mpi-replay JOURNAL``: report a journal as a run.

The supervisor's last step, and what rank 0's keeper runs when rank 0 died
(``--mpi-replay-died``). It collects nothing and runs nothing: every journaled
test's reports go back through the runner's one ``replay``
(``pytest_runtest_logstart`` / ``logreport`` / ``logfinish``), as pytest-xdist's
controller replays worker reports. The terminal summary, ``--junitxml``,
``-r``, ``--durations`` and the exit code are pytest's own, computed over
every launch of the job at once.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import pytest

from ..report.replay import replay
from .journal import JournalState, read_journal, synthesized_failure

__all__ = ["replay_command"]

_COUNTED = pytest.StashKey[int]()  # passed subtests the journal counts, not lists
_STATE = pytest.StashKey[JournalState]()  # the journal, read once (at collection)

def replay_command(journal: str | os.PathLike[str], pytest_args: Sequence[str],
                   died: str = "") -> list[str]:
    """The pytest command line that reports ``journal`` with the user's own pytest
    arguments (reporting options, ini, plugins; it collects nothing, so paths and
    selection options are inert); ``died``: how rank 0 died (``--mpi-replay-died``)."""
    args = [a for a in pytest_args if a != "--with-mpi"]
    command = [sys.executable, "-m", "pytest", "-p", "mpidist.supervisor.replay",
               f"--mpi-replay={journal}"]
    if died:
        command.append(f"--mpi-replay-died={died}")
    return command + args


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mpi")
    group.addoption(
        "--mpi-replay", default=None, metavar="JOURNAL",
        help="Report the tests recorded in JOURNAL instead of collecting and running.")
    group.addoption(
        "--mpi-replay-died", default="", metavar="TEXT",
        help="With --mpi-replay: rank 0 died (TEXT says how); the test it was in is "
        "reported failed with TEXT (rank 0's keeper passes this).")


def _reported(state: JournalState, died: str) -> dict[str, list[dict[str, Any]]]:
    """node id -> serialized reports: every finished test, then -- when rank 0
    died -- the tests it ran whose merged result it never logged, and the test it
    was in."""
    tests = {nodeid: list(record["reports"]) for nodeid, record in state.done.items()}
    if not died:
        return tests
    for nodeid in state.unlogged:
        tests[nodeid] = synthesized_failure(nodeid, (
            f"result lost: {died} before the other ranks' results of this test reached "
            "it (the test finished on rank 0)"))
    if state.in_flight is not None:
        tests[state.in_flight] = synthesized_failure(
            state.in_flight, f"{died} while this test ran", abnormal="died")
    return tests


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """The ranks' own texts of the failures the report grouped go where the live run
    would have written them (the journal keeps them on the merged reports)."""
    if config.getoption("mpi_replay", None) is not None:
        from ..bootstrap.settings import RANK_TEXTS, setting
        from ..report.rank_texts import RankTexts

        config.pluginmanager.register(RankTexts(config, setting(config, RANK_TEXTS)),
                                      "mpidist-rank-texts")


def pytest_report_header(config: pytest.Config) -> list[str]:
    died = config.getoption("mpi_replay_died", "")
    return [f"mpidist: {died}; its keeper reports what rank 0 had logged"] if died else []


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    path = session.config.getoption("mpi_replay")
    if path is None:
        return None
    state = session.config.stash[_STATE] = read_journal(path)
    session.items = []
    session.testscollected = len(_reported(state, session.config.getoption("mpi_replay_died")))
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    config = session.config
    path = config.getoption("mpi_replay")
    if path is None:
        return None
    hook = config.hook
    died = config.getoption("mpi_replay_died")
    state = config.stash[_STATE]
    for nodeid, serialized in _reported(state, died).items():
        reports = [hook.pytest_report_from_serializable(config=config, data=data)
                   for data in serialized]
        location = reports[0].location if reports else (nodeid, None, nodeid)
        replay(hook, nodeid, location, reports)
    counted = sum(int(record.get("subtests", 0)) for record in state.done.values())
    if counted:
        config.stash[_COUNTED] = counted
    if died:  # pytest's "!!! ... !!!" line under the summary, as for a hang
        where = f"in {state.in_flight}" if state.in_flight else "between tests"
        session.shouldfail = f"mpidist: {died} {where}"
    return True


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counted = config.stash.get(_COUNTED, 0)
    if counted:
        terminalreporter.write_line(
            f"mpidist: and {counted} passed subtests, counted in rank 0's flight log")
