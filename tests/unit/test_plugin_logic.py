"""The pure rules behind other plugins under MPI: hypothesis's example agreement,
the seeds, pytest-timeout's limits, pytest-forked, and who writes the artefacts."""

from __future__ import annotations

import argparse

import pytest

from mpidist.plugins.companions import isolation_mode, timeout_default
from mpidist.plugins.draws import test_seed
from mpidist.plugins.examples import (
    ESCAPE,
    FAIL,
    INVALID,
    OK,
    classify,
    origin_of,
    react,
)
from mpidist.report.merge import merge_test
from mpidist.report.results import ECHO, RankResult
from mpidist.runner.markers import NO_LIMIT, timeout_of

from .test_merge import rep, world


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_classify_follows_hypothesis_rules_for_a_failure():
    from hypothesis.errors import UnsatisfiedAssumption

    assert classify(None) == OK
    assert classify(UnsatisfiedAssumption()) == INVALID
    assert classify(AssertionError()) == FAIL
    assert classify(SystemExit(3)) == FAIL  # hypothesis treats it as a failure too
    assert classify(pytest.fail.Exception("x")) == FAIL
    assert classify(pytest.skip.Exception("x")) == ESCAPE
    assert classify(KeyboardInterrupt()) == ESCAPE


@pytest.mark.parametrize(("mine", "group", "late", "action"), [
    (OK, OK, False, "return"),
    (OK, OK, True, "deadline"),  # the slowest rank's time, judged on every rank
    (FAIL, FAIL, False, "own"),
    (OK, FAIL, False, "failed-elsewhere"),
    (INVALID, FAIL, False, "failed-elsewhere"),
    (OK, INVALID, False, "invalid"),
    (INVALID, INVALID, False, "own"),
    (OK, ESCAPE, False, "left"),
    (FAIL, ESCAPE, False, "own"),  # a failure says more than another rank's leaving
    (ESCAPE, ESCAPE, True, "own"),
])
def test_react_to_the_groups_verdict(mine, group, late, action):
    assert react(mine, group, late) == action


def test_origin_tells_failures_apart_by_type_and_line():
    def fail(kind: type[Exception], text: str) -> BaseException:
        try:
            raise kind(text)
        except Exception as caught:
            return caught

    assert origin_of(fail(ValueError, "a")) == origin_of(fail(ValueError, "b"))  # text aside
    assert origin_of(fail(ValueError, "a")) != origin_of(fail(KeyError, "a"))
    assert origin_of(raised(ValueError("a"))) != origin_of(fail(ValueError, "a"))  # line
    assert 0 <= origin_of(fail(KeyError, "a")) < 2**63


def test_each_test_has_its_own_seed_from_the_run_seed():
    assert test_seed(7, "t.py::a") == test_seed(7, "t.py::a")
    assert test_seed(7, "t.py::a") != test_seed(7, "t.py::b")
    assert test_seed(7, "t.py::a") != test_seed(8, "t.py::a")


def test_an_echo_follows_the_ranks_where_the_test_failed():
    echo = rep("call", "failed", "failed elsewhere")
    setattr(echo, ECHO, True)
    results = [RankResult(0, [rep("setup"), echo, rep("teardown")]),
               RankResult(1, [rep("setup"), rep("call", "failed", "E real"), rep("teardown")])]
    call = next(r for r in merge_test(world(2), results) if r.when == "call")
    assert [label for label, _ in call.longrepr.groups] == ["rank 1/2 (host n2)",
                                                            "rank 0/2 (host n1)"]
    assert call.longrepr.reprcrash.message == "[ranks 0-1/2 (hosts n1,n2)] E real"


class Config:
    """What ``timeout_default`` reads of pytest's config."""

    def __init__(self, timeout: object = None, ini: object = "", plugin: bool = True):
        self.option = argparse.Namespace(timeout=timeout)
        self._ini = ini
        self.pluginmanager = argparse.Namespace(hasplugin=lambda name: plugin)

    def getini(self, name: str) -> object:
        return self._ini


@pytest.mark.parametrize(("config", "env", "given", "expected"), [
    (Config(), None, False, 300.0),
    (Config(timeout="5"), None, False, 5.0),
    (Config(timeout="5"), "7", False, 5.0),  # pytest-timeout: option > env > ini
    (Config(ini="9"), "7", False, 7.0),
    (Config(ini="9"), None, False, 9.0),
    (Config(timeout="0"), None, False, NO_LIMIT),  # 0: no limit, as there
    (Config(timeout="5"), None, True, 300.0),  # --mpi-timeout given: it wins
    (Config(timeout="5", plugin=False), None, False, 300.0),
])
def test_pytest_timeouts_settings_set_the_default_limit(config, env, given, expected,
                                                         monkeypatch):
    if env is None:
        monkeypatch.delenv("PYTEST_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("PYTEST_TIMEOUT", env)
    assert timeout_default(config, 300.0, given) == expected


def test_a_bad_pytest_timeout_value_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("PYTEST_TIMEOUT", "soon")
    with pytest.raises(pytest.UsageError, match="PYTEST_TIMEOUT='soon': not a number"):
        timeout_default(Config(), 300.0, False)


def test_timeout_marker_zero_is_no_limit(pytester: pytest.Pytester):
    item = pytester.getitem("import pytest\n@pytest.mark.timeout(0)\ndef test_func():\n    pass\n")
    assert timeout_of(item, 300.0) == NO_LIMIT


@pytest.mark.parametrize(("mode", "forked", "expected"), [
    ("marked", False, "marked"), ("marked", True, "on"), ("on", True, "on"),
    ("off", False, "off")])
def test_forked_means_isolation(mode, forked, expected):
    assert isolation_mode(mode, argparse.Namespace(forked=forked)) == expected


def test_forked_with_isolation_off_is_a_usage_error():
    with pytest.raises(pytest.UsageError, match="drop --mpi-isolate=off"):
        isolation_mode("off", argparse.Namespace(forked=True))


def test_a_worker_writes_no_cache_and_no_log(pytester: pytest.Pytester):
    from _pytest.cacheprovider import Cache

    from mpidist.plugins.writers import adopt, not_the_writer

    config = pytester.parseconfig("--log-file=x.log", "-p", "no:randomly")
    saved = Cache.set
    try:
        not_the_writer(config, "gw2", 4)
        assert config.workerinput["workerid"] == "gw2"
        assert config.workerinput["workercount"] == 4
        assert config.option.log_file != "x.log"
        config.cache = Cache.for_config(config, _ispytest=True)
        config.cache.set("k", 1)
        assert config.cache.get("k", None) is None
        adopt(config, {"testrunuid": "abc", "hypothesis_seed": 1})
        assert config.workerinput["testrunuid"] == "abc"
    finally:
        Cache.set = saved  # type: ignore[method-assign]
