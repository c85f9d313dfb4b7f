"""The durable record of finished tests that lets ``mpidist run`` resume a job.

One JSON object per line, appended by rank 0 only:

``{"collected": [nodeid, ...]}``
    the tests this launch will run, in order (after rank 0's selection);
``{"running": nodeid}``
    rank 0 began running the test (its setup starts). Rank 0 logs a test
    only once the next one's setup is done (``runner.pipeline``), so this,
    not pytest's logstart, says which test rank 0 was in when it died;
``{"done": nodeid, "reports": [...], "abnormal": why?, "subtests": n?}``
    its merged reports, serialized by pytest's own hook. ``abnormal`` is set
    when the watchdog or a signal ended the job on it; ``subtests`` counts the
    passed subtests the flight log keeps by number only.

Every record is written through to the kernel at once, so it survives the
death of the process. ``mpidist run``'s journal also fsyncs each ``done``
(a finished result survives a node reboot); rank 0's flight log, which only
has to outlive rank 0's process for its keeper, does not (``durable``).

Pure: no MPI, no torch. The supervisor reads it between launches, rank 0's
keeper reads it when rank 0 died, and the replay session turns it back into
one report and one JUnit file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["JournalState", "JournalWriter", "read_journal", "synthesized_failure"]


class JournalWriter:
    """Appends records to the journal file (rank 0).

    Args:
        path: the journal file (appended to).
        durable: fsync each ``done`` record (``mpidist run``); else a record
            only has to outlive this process (rank 0's flight log).
    """

    def __init__(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._durable = durable

    def _write(self, record: dict[str, Any], durable: bool) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")  # (user_properties: any)
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def collected(self, nodeids: list[str]) -> None:
        self._write({"collected": nodeids}, durable=True)

    def running(self, nodeid: str) -> None:
        self._write({"running": nodeid}, durable=False)

    def done(self, nodeid: str, reports: list[dict[str, Any]], abnormal: str = "",
             subtests: int = 0) -> None:
        """``subtests``: passed subtests counted, not among ``reports`` (the flight log)."""
        record: dict[str, Any] = {"done": nodeid, "reports": reports}
        if abnormal:
            record["abnormal"] = abnormal
        if subtests:
            record["subtests"] = subtests
        self._write(record, durable=self._durable)

    def close(self) -> None:
        self._file.close()


@dataclass
class JournalState:
    """What a journal says: finished tests in order, and the test left in flight.

    Attributes:
        done: node id -> its ``done`` record, in the order they were logged.
        collected: the tests the launch meant to run.
        in_flight: the test rank 0 was in when the journal ended (None: between tests).
        unlogged: tests rank 0 ran before ``in_flight`` whose merged result it never
            logged (it died while the other ranks' results were on their way).
        last_abnormal: why the last ``done`` test ended the job, if it did.
    """

    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    collected: list[str] = field(default_factory=list)
    in_flight: str | None = None
    unlogged: list[str] = field(default_factory=list)
    last_abnormal: str = ""


def read_journal(path: str | os.PathLike[str]) -> JournalState:
    """Parse a journal; a torn last line (the writer died mid-write) is ignored."""
    state = JournalState()
    file = Path(path)
    if not file.exists():
        return state
    begun: dict[str, None] = {}  # begun and not done, in order
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "collected" in record:
            state.collected = record["collected"]
        elif "running" in record:
            nodeid = str(record["running"])
            begun.pop(nodeid, None)  # a rerun: it begins again
            begun[nodeid] = None
        elif "done" in record:
            state.done[record["done"]] = record
            state.last_abnormal = record.get("abnormal", "")
            begun.pop(record["done"], None)
            if state.last_abnormal:  # rank 0 reported what ended the job: the last word
                begun.clear()  # (ranks that went on to the next test ran no more of it)
    pending = list(begun)
    if pending:
        state.in_flight, state.unlogged = pending[-1], pending[:-1]
    return state


def synthesized_failure(nodeid: str, message: str, abnormal: str = "") -> list[dict[str, Any]]:
    """Serialized setup/call/teardown reports for a test no rank could report on
    (rank 0 died, or the test never got to run), in pytest's own wire format;
    ``abnormal``: why it ended the job (also its ``mpi_outcomes`` in JUnit)."""
    from ..runner.failures import failed_reports

    path, _, name = nodeid.partition("::")
    properties = [("mpi_outcomes", abnormal)] if abnormal else []
    # what pytest_report_to_serializable makes, without a pytest session
    return [{**report._to_json(), "$report_type": "TestReport"}
            for report in failed_reports(nodeid, (path, None, name or nodeid), message,
                                         properties=properties, abnormal=abnormal)]
