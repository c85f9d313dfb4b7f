"""``pytest -p mpidist.supervisor.replay --mpi-replay JOURNAL``: report a journal as a run.

The supervisor's last step. It collects nothing and runs nothing: every
journaled test's reports go back through the runner's one ``replay``
(``pytest_runtest_logstart`` / ``logreport`` / ``logfinish``), as pytest-xdist's
controller replays worker reports. The terminal summary, ``--junitxml``,
``-r``, ``--durations`` and the exit code are pytest's own, computed over
every launch of the job at once.
"""

from __future__ import annotations

import pytest

from ..runner.replay import replay
from .journal import read_journal

__all__: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("mpi").addoption(
        "--mpi-replay", default=None, metavar="JOURNAL",
        help="Report the tests recorded in JOURNAL instead of collecting and running.")


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    path = session.config.getoption("mpi_replay")
    if path is None:
        return None
    session.items = []
    session.testscollected = len(read_journal(path).done)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    config = session.config
    path = config.getoption("mpi_replay")
    if path is None:
        return None
    hook = config.hook
    for nodeid, record in read_journal(path).done.items():
        reports = [hook.pytest_report_from_serializable(config=config, data=data)
                   for data in record["reports"]]
        location = reports[0].location if reports else (nodeid, None, nodeid)
        replay(hook, nodeid, location, reports)
    return True
