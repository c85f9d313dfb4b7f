"""Test-suite configuration: pytester, and the real-mpirun job fixtures."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

import pytest

from . import mpijob
from .mpijob import MPIRUN, Job

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def make_job(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Job]:
    """``make_job(name)``: a fresh job directory (session-scoped, for shared runs)."""
    if MPIRUN is None:
        pytest.skip("mpirun not found: install Open MPI (apt-get install openmpi-bin)")
    return lambda name: Job(tmp_path_factory.mktemp(name))


@pytest.fixture
def job(make_job: Callable[[str], Job], request: pytest.FixtureRequest) -> Job:
    """A fresh job directory for one test."""
    return make_job(re.sub(r"\W", "_", request.node.name)[:40])


def _marked_autoload(request: pytest.FixtureRequest) -> Iterator[None]:
    before = mpijob.AUTOLOAD
    mpijob.AUTOLOAD = request.node.get_closest_marker("autoload") is not None
    yield
    mpijob.AUTOLOAD = before


@pytest.fixture(scope="module", autouse=True)
def _autoload_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module's ``autoload`` mark reaches its module-scoped jobs."""
    yield from _marked_autoload(request)


@pytest.fixture(autouse=True)
def _autoload_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's own ``autoload`` mark (or its module's) for its jobs."""
    yield from _marked_autoload(request)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """In-process sessions load the plugins installed for the jobs; pytest-asyncio
    would warn in each of them for want of a loop scope."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:asyncio")
    return pytester


# The longest files, whose tests share no job (no module-scoped fixture): under xdist
# each test is a unit of its own, handed out last, so they fill the workers' tails.
_PER_TEST = frozenset(f"integration/{name}.py" for name in (
    "test_fault_matrix", "test_session", "test_plugins", "test_faults"))


class _ClusterTogether:
    """tests/run.sh runs the suite under pytest-xdist with ``--dist loadfile``: a file's
    tests share its module-scoped mpirun runs, so each file goes to one worker whole
    (but those of ``_PER_TEST``, which share none).
    The namespace and Slurm clusters are one resource of the machine (their names,
    addresses and daemons), so the files of tests/cluster go to one worker together,
    one after another. (``--dist loadgroup`` would say this with marks, but pytest 9.2's
    node ids no longer take xdist's group suffix.)"""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadfile":
            return None
        from xdist.scheduler import LoadFileScheduling

        class Scheduling(LoadFileScheduling):
            def _split_scope(self, nodeid: str) -> str:
                path = nodeid.split("::", 1)[0]
                if "/".join(path.split("/")[-2:]) in _PER_TEST:
                    return nodeid
                return "cluster" if path.split("/")[-2:-1] == ["cluster"] else path

            def schedule(self) -> None:
                first = self.collection is None
                super().schedule()
                if first:  # whole files first, the single tests after them
                    for scope in [s for s in self.workqueue if "::" in s]:
                        self.workqueue.move_to_end(scope)

        return Scheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "autoload: this test's jobs load every plugin the "
                            "venv has (pytest's autoload), not mpidist's alone")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_ClusterTogether(), "mpidist-tests-scheduling")
