"""The durable record of finished tests that lets ``mpidist run`` resume a job.

One JSON object per line, appended by rank 0 only:

``{"collected": [nodeid, ...]}``
    the tests this launch will run, in order (after rank 0's selection);
``{"start": nodeid}``
    a test began (flushed, not fsynced: it only has to survive the process);
``{"done": nodeid, "reports": [...], "abnormal": why?}``
    its merged reports, serialized by pytest's own hook; fsynced before the
    next test starts, so a finished result survives even a node reboot.
    ``abnormal`` is set when the watchdog or a signal ended the job on it.

Pure: no MPI, no torch. The supervisor reads it between launches and the
replay session turns it back into one report and one JUnit file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["JournalState", "JournalWriter", "read_journal", "synthesized_failure"]


class JournalWriter:
    """Appends records to the journal file (rank 0)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def _write(self, record: dict[str, Any], durable: bool) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def collected(self, nodeids: list[str]) -> None:
        self._write({"collected": nodeids}, durable=True)

    def start(self, nodeid: str) -> None:
        self._write({"start": nodeid}, durable=False)

    def done(self, nodeid: str, reports: list[dict[str, Any]], abnormal: str = "") -> None:
        record: dict[str, Any] = {"done": nodeid, "reports": reports}
        if abnormal:
            record["abnormal"] = abnormal
        self._write(record, durable=True)

    def close(self) -> None:
        self._file.close()


@dataclass
class JournalState:
    """What a journal says: finished tests in order, and the test left in flight."""

    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    collected: list[str] = field(default_factory=list)
    in_flight: str | None = None
    last_abnormal: str = ""


def read_journal(path: str | os.PathLike[str]) -> JournalState:
    """Parse a journal; a torn last line (the writer died mid-write) is ignored."""
    state = JournalState()
    file = Path(path)
    if not file.exists():
        return state
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "collected" in record:
            state.collected = record["collected"]
        elif "start" in record:
            state.in_flight = record["start"]
        elif "done" in record:
            state.done[record["done"]] = record
            state.last_abnormal = record.get("abnormal", "")
            if state.in_flight == record["done"]:
                state.in_flight = None
    return state


def synthesized_failure(nodeid: str, message: str) -> list[dict[str, Any]]:
    """Serialized setup/call/teardown reports for a test no rank could report on
    (rank 0 died, or the test never got to run), in pytest's own wire format."""
    from ..runner.failures import failed_reports

    path, _, name = nodeid.partition("::")
    # what pytest_report_to_serializable makes, without a pytest session
    return [{**report._to_json(), "$report_type": "TestReport"}
            for report in failed_reports(nodeid, (path, None, name or nodeid), message)]
