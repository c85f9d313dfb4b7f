"""torch classes that torch's runner runs in one process of its own (plain
``common_utils.TestCase``, ranks as threads), under real mpirun: once, on one rank, with
no default group and the launch's torchrun variables, whatever the test before left."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..mpijob import MPIResult

SUITE = Path(__file__).resolve().parents[1] / "ranks" / "torch_solo.py"
pytest.importorskip("torch")
ONCE = ["no_default_group", "variables", "leaves", "left_over", "threads", "local"]


@pytest.fixture(scope="module")
def solo_run(make_job) -> tuple[MPIResult, Path]:
    pytest.importorskip("expecttest", reason="torch's testing modules need expecttest")
    job = make_job("torch_solo")
    job.write("test_torch_solo.py", SUITE.read_text())
    out = job.path / "marks"
    out.mkdir()
    result = job.run(4, "-v", "-rfEs", "-p", "no:randomly", "--mpi-timeout", "120",
                     timeout=300, env={"HYGIENE_OUT": str(out)})
    return result, out


def test_every_test_passes(solo_run):
    result, _ = solo_run
    assert result.returncode == 0, result.stdout[-3000:]
    result.lines.fnmatch_lines(["*= 11 passed in *"])
    cases = list(result.junit().iter("testcase"))  # two classes share a test name
    assert len(cases) == 11 and all(c.find("failure") is None for c in cases)


@pytest.mark.parametrize("name", ONCE)
def test_a_torch_class_test_runs_once_on_one_rank(solo_run, name):
    _, out = solo_run
    assert len(list(out.glob(f"{name}-*"))) == 1, sorted(p.name for p in out.iterdir())


def test_a_spawning_dtensor_test_runs_on_its_world(solo_run):
    _, out = solo_run
    assert len(list(out.glob("mesh-*"))) == 4, sorted(p.name for p in out.iterdir())


def test_the_outcome_names_the_one_rank(solo_run):
    result, _ = solo_run
    props = {p.get("name"): p.get("value")
             for p in result.testcases()["test_no_default_group"].iter("property")}
    assert props["mpi_outcomes"].startswith("passed=") and "-" not in props["mpi_outcomes"]
