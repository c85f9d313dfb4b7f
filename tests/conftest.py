"""Test-suite configuration: pytester, and the real-mpirun job fixtures."""

from __future__ import annotations

import re
from typing import Callable

import pytest

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


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """In-process sessions load the plugins installed for the jobs; pytest-asyncio
    would warn in each of them for want of a loop scope."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:asyncio")
    return pytester
