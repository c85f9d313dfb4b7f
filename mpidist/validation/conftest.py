"""The validation suite's session: record each check, then write JSON, heatmap, verdict."""

from __future__ import annotations

import math
import sqlite3
from typing import Any, Iterator

import pytest

from mpidist.history.recorder import history_path, open_history, run_info
from mpidist.history.store import Figure
from mpidist.validation import report, state
from mpidist.validation.config import Config


@pytest.fixture(scope="session")
def config() -> Config:
    try:
        return Config.from_env()
    except ValueError as exc:
        raise pytest.UsageError(f"mpidist validate: {exc}") from None


@pytest.fixture(scope="session")
def comm() -> Iterator[Any]:
    """A communicator of its own for the measurements."""
    from mpi4py import MPI

    dup = MPI.COMM_WORLD.Dup()
    yield dup
    dup.Free()


@pytest.fixture(scope="session")
def world() -> Any:
    from mpidist import runtime

    return runtime.current().world


def _rank0() -> bool:
    from mpidist import runtime

    return runtime.is_initialized() and runtime.current().world.rank == 0


@pytest.fixture(scope="session")
def past_links(pytestconfig: pytest.Config, config: Config) -> dict[str, list[float]]:
    """Rank 0: each link's GB/s in the earlier validate runs of the history file."""
    path = history_path(pytestconfig)
    if not _rank0() or path is None or not path.exists():
        return {}
    history = open_history(path, print)
    if history is None:
        return {}
    try:
        return history.figures(f"link:{config.p2p_bytes}")  # like for like
    finally:
        history.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    state.reset()


def pytest_collection_finish(session: pytest.Session) -> None:
    # this run goes into the history as figures of nodes and links, not as tests (this
    # conftest loads with the package, after the session started: hence here)
    recorder = session.config.pluginmanager.get_plugin("mpidist-history")
    if recorder is not None:
        session.config.pluginmanager.unregister(recorder)


def _record(session: pytest.Session, results: dict[str, Any]) -> None:
    """Rank 0 adds this run's link and node figures to the history file."""
    from mpidist import runtime

    path = history_path(session.config)
    links = results["links"]
    if path is None or links is None:
        return
    names, matrix = links["nodes"], links["bandwidth_gbps"]
    kind = f"link:{links['bytes']}"  # a link's figure depends on the message size
    figures = [Figure(kind, f"{names[a]}<->{names[b]}", matrix[a][b])
               for a in range(len(names)) for b in range(a + 1, len(names))
               if math.isfinite(matrix[a][b])]
    figures += [Figure(f"node:{links['bytes']}", name, gbps)
                for name, gbps in links["node_scores_gbps"].items()]
    history = open_history(path, print)
    if history is None:
        return
    try:
        history.record(run_info("validate", runtime.current().world, results["started"]),
                       figures=figures)
        results.setdefault("history", {})["file"] = str(path)
    except (sqlite3.Error, OSError) as exc:
        print(f"mpidist: WARNING history not written to {path}: {exc}")
    finally:
        history.close()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # rank 0 sees the merged reports: one per phase for the whole job
    name = report.nodeid.rsplit("::", 1)[-1].removeprefix("test_")  # bandwidth[gloo-...]
    checks = state.RESULTS["checks"]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        detail = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            detail = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            detail = crash.message if crash is not None else str(report.longrepr)[:300]
        checks.append({"name": name, "outcome": report.outcome, "detail": detail})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _rank0():
        return
    config = Config.from_env()
    results = state.RESULTS
    failed = [c for c in results["checks"] if c["outcome"] == "failed"]
    results["verdict"] = "unhealthy" if failed or exitstatus not in (0, 5) else "healthy"
    results["config"] = {"sizes": config.sizes, "warmup": config.warmup,
                         "iters": config.iters, "expect_busbw": config.expect_busbw,
                         "expect_p2p_gbps": config.expect_p2p, "p2p_bytes": config.p2p_bytes}
    if results["links"] is not None:
        results["files"].append(report.heatmap(config.heatmap_path, results["links"],
                                               results["suspects"]))
    results["files"].append(f"json: {config.json_path}")
    _record(session, results)
    report.write_json(config.json_path, results)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _rank0() or "verdict" not in state.RESULTS:
        return
    terminalreporter.section("mpidist validate")
    for line in report.summary(state.RESULTS):
        terminalreporter.write_line(line)
