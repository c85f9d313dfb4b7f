"""One precedence for every setting: option > ini > MPIDIST_* env > default."""

from __future__ import annotations

import pytest

from mpidist.bootstrap import settings as env
from mpidist.bootstrap.settings import setting


def test_env_value_parses_and_names_the_variable():
    assert env.env_value(env.STORE_TIMEOUT, {}) == 300.0
    assert env.env_value(env.STORE_TIMEOUT, {"MPIDIST_STORE_TIMEOUT": "5"}) == 5.0
    assert env.env_value(env.RANK_OUTPUT, {"MPIDIST_RANK_OUTPUT": "yes"}) is True
    with pytest.raises(ValueError, match=r"MPIDIST_STORE_TIMEOUT='-1': must be > 0"):
        env.env_value(env.STORE_TIMEOUT, {"MPIDIST_STORE_TIMEOUT": "-1"})
    with pytest.raises(ValueError, match="expected a boolean"):
        env.env_value(env.RANK_OUTPUT, {"MPIDIST_RANK_OUTPUT": "maybe"})


def test_precedence(pytester, monkeypatch):
    monkeypatch.setenv("MPIDIST_BACKEND", "from-env")
    assert setting(pytester.parseconfig(), env.BACKEND) == "from-env"
    pytester.makeini("[pytest]\nmpi_backend = from-ini\n")
    assert setting(pytester.parseconfig(), env.BACKEND) == "from-ini"
    assert setting(pytester.parseconfig("--mpi-backend=from-cli"), env.BACKEND) == "from-cli"
    monkeypatch.delenv("MPIDIST_BACKEND")
    pytester.makeini("[pytest]\n")
    assert setting(pytester.parseconfig(), env.BACKEND) == "auto"


def test_bad_value_is_a_usage_error_naming_its_source(pytester):
    config = pytester.parseconfig("--mpi-store-timeout=abc")
    with pytest.raises(pytest.UsageError, match="--mpi-store-timeout: could not convert"):
        setting(config, env.STORE_TIMEOUT)


def test_every_setting_is_unique():
    for field in ("name", "option", "ini", "envvar"):
        values = [getattr(s, field) for s in env.SETTINGS]
        assert len(values) == len(set(values)), field
    assert all(s.envvar.startswith("MPIDIST_") and s.option.startswith("--mpi-")
               and s.ini.startswith("mpi_") for s in env.SETTINGS)


@pytest.mark.parametrize(
    ("environ", "task"),
    [({}, None),
     ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}, None),
     ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2"}, ("OMPI_COMM_WORLD_SIZE", 2, 4)),
     ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "0"}, ("SLURM_STEP_NUM_TASKS", 0, 8)),
     ({"SLURM_NTASKS": "8"}, None),  # a batch script is one task, not eight
     ({"PMI_SIZE": "x"}, None)],
)
def test_launcher_task(environ, task):
    assert env.launcher_task(environ) == task
