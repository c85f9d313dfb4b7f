"""The validation suite's session: record each check, then write JSON, heatmap, verdict."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

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


def pytest_sessionstart(session: pytest.Session) -> None:
    state.reset()


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
    report.write_json(config.json_path, results)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _rank0() or "verdict" not in state.RESULTS:
        return
    terminalreporter.section("mpidist validate")
    for line in report.summary(state.RESULTS):
        terminalreporter.write_line(line)
