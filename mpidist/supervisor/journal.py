"""The durable record of finished tests that lets ``mpidist run`` resume a job.

One JSON object per line, appended by rank 0 only:

``{"collected": [nodeid, ...]}``
    the tests this launch will run, in order (after rank 0's selection);
``{"running": nodeid}``
    rank 0 began running the test (its setup starts). Rank 0 logs a test
    only once the next one's setup is done (``runner.pipeline``), so this,
    not pytest's logstart, says which test rank 0 was in when it died. After
    an ``abnormal`` record it says nothing until the next ``collected``: rank
    0's main thread may begin a test while the report of the end is written;
``{"done": nodeid, "reports": [...], "abnormal": why?, "subtests": n?}``
    its merged reports, serialized by pytest's own hook. ``abnormal`` is set
    when the watchdog or a signal ended the job on it; ``subtests`` counts the
    passed subtests the flight log keeps by number only.
``{"done": nodeid, "passed": [location, [phase, ...]], "subtests": n?}``
    (each phase: ``[when, duration, start, stop, sections, user_properties]``)
    the flight log's record of a plain pass: every phase passed, with no
    attribute a layer or plugin added. ``read_journal`` turns it back into
    ``reports``, without the keywords (the terminal and JUnit read none).
    Rank 0 sets every rank's pace: serializing each pass in full cost a
    real-shaped suite (1,100 tests) 4% of its wall time.

Every record is in the kernel's page cache as soon as it is written, so it
survives the death of the process. ``mpidist run``'s journal also fsyncs each
``done`` (a finished result survives a node reboot). Rank 0's flight log only
has to outlive rank 0's process for its keeper (``durable=False``): it is
written through a shared mapping of the file, a copy into the page cache with
no system call per record (the syscalls cost the same suite another 2%).

Pure: no MPI, no torch. The supervisor reads it between launches, rank 0's
keeper reads it when rank 0 died, and the replay session turns it back into
one report and one JUnit file.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["JournalState", "JournalWriter", "read_journal", "synthesized_failure"]


class _Appended:
    """A file appended to with ``write`` (each record one system call), fsynced on request."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, data: bytes, durable: bool) -> None:
        os.write(self._fd, data)
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class _Mapped:
    """A new file written through a shared mapping: a record is a copy into the
    page cache, which is what any reader of the file sees, whatever becomes of this
    process. The mapping grows by doubling; the file's unwritten tail is NUL bytes
    (``read_journal`` stops at the first) until ``close`` cuts it off."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._map: mmap.mmap | None = None
        self._end = 0
        self._grow(1 << 20)

    def _grow(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size)

    def write(self, data: bytes, durable: bool) -> None:
        del durable  # it has to outlive this process only
        assert self._map is not None
        end = self._end + len(data)
        if end > len(self._map):
            self._grow(max(2 * len(self._map), end))
            assert self._map is not None
        self._map[self._end:end] = data
        self._end = end

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            os.ftruncate(self._fd, self._end)
            os.close(self._fd)


#: one encoder for every record (``json.dumps`` with ``default`` builds one per call);
#: default=str: user_properties may hold any object
_ENCODER = json.JSONEncoder(default=str)


class JournalWriter:
    """Appends records to the journal file (rank 0).

    Args:
        path: the journal file (appended to; a flight log's is new).
        durable: fsync the ``collected`` and each ``done`` record (``mpidist
            run``); else a record only has to outlive this process (rank 0's
            flight log: written through a shared mapping).
    """

    def __init__(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        self._file = _Appended(path) if durable else _Mapped(path)
        self._durable = durable

    def _write(self, record: dict[str, Any], durable: bool) -> None:
        self._file.write((_ENCODER.encode(record) + "\n").encode(), durable)

    def collected(self, nodeids: list[str]) -> None:
        self._write({"collected": nodeids}, durable=True)

    def running(self, nodeid: str) -> None:
        # once per test on rank 0: a string's encoder, not a dict's (5x cheaper)
        self._file.write(f'{{"running": {json.dumps(nodeid)}}}\n'.encode(), False)

    def done(self, nodeid: str, reports: list[dict[str, Any]], abnormal: str = "",
             subtests: int = 0) -> None:
        """``subtests``: passed subtests counted, not among ``reports`` (the flight log)."""
        record: dict[str, Any] = {"done": nodeid, "reports": reports}
        if abnormal:
            record["abnormal"] = abnormal
        if subtests:
            record["subtests"] = subtests
        self._write(record, durable=self._durable)

    def passed(self, nodeid: str, location: tuple[str, int | None, str],
               phases: list[tuple[Any, ...]], subtests: int = 0) -> None:
        """A plain pass: ``phases`` are (when, duration, start, stop, sections,
        user_properties)."""
        record: dict[str, Any] = {"done": nodeid, "passed": [location, phases]}
        if subtests:
            record["subtests"] = subtests
        self._write(record, durable=self._durable)

    def close(self) -> None:
        self._file.close()


def _expand(nodeid: str, record: dict[str, Any]) -> dict[str, Any]:
    """A ``passed`` record as a ``reports`` one, in pytest's own wire format (as
    ``synthesized_failure`` makes it, without a pytest session)."""
    from _pytest.reports import TestReport

    location, phases = record.pop("passed")
    record["reports"] = [
        {**TestReport(nodeid, tuple(location), {}, "passed", None, when, sections, duration,
                      start, stop, properties)._to_json(), "$report_type": "TestReport"}
        for when, duration, start, stop, sections, properties in phases]
    return record


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
    ended = False  # this launch's report of its end is written: the last word
    text = file.read_text(encoding="utf-8").partition("\0")[0]  # (a flight log's tail)
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "collected" in record:  # a launch begins
            state.collected, ended = record["collected"], False
        elif "running" in record:
            if ended:  # rank 0's main thread, not yet stopped, began the next test's
                continue  # setup while the report was written: no rank finished it
            nodeid = str(record["running"])
            begun.pop(nodeid, None)  # a rerun: it begins again
            begun[nodeid] = None
        elif "done" in record:
            if "passed" in record:
                record = _expand(record["done"], record)
            state.done[record["done"]] = record
            state.last_abnormal = record.get("abnormal", "")
            begun.pop(record["done"], None)
            if state.last_abnormal:  # rank 0 reported what ended the job: the last word
                begun.clear()  # (ranks that went on to the next test ran no more of it)
                ended = True
    pending = list(begun)
    if pending:
        state.in_flight, state.unlogged = pending[-1], pending[:-1]
    return state


def synthesized_failure(nodeid: str, message: str, abnormal: str = "") -> list[dict[str, Any]]:
    """Serialized setup/call/teardown reports for a test no rank could report on
    (rank 0 died, or the test never got to run), in pytest's own wire format;
    ``abnormal``: why it ended the job (also its ``mpi_outcomes`` in JUnit)."""
    from ..report.failures import failed_reports

    path, _, name = nodeid.partition("::")
    properties = [("mpi_outcomes", abnormal)] if abnormal else []
    # what pytest_report_to_serializable makes, without a pytest session
    return [{**report._to_json(), "$report_type": "TestReport"}
            for report in failed_reports(nodeid, (path, None, name or nodeid), message,
                                         properties=properties, abnormal=abnormal)]
