"""Hold back every report pytest logs while a test runs on this rank.

pytest 9 logs subtest reports mid-test, through ``item.ihook``; nothing may
reach a reporter before the group's root has every rank's result, so while a
test runs, ``session.gethookproxy`` hands out relays whose
``pytest_runtest_logreport`` keeps the report instead.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, cast

import pluggy
import pytest
from _pytest.reports import TestReport

__all__ = ["Held"]


class _HeldHooks:
    """The hook relay a test sees while it runs: ``pytest_runtest_logreport`` is held."""

    def __init__(self, real: Any, held: Held) -> None:
        self._real = real
        self._held = held

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._real, name)
        setattr(self, name, value)  # as pytest's FSHookProxy: looked up once
        return value

    def pytest_runtest_logreport(self, *, report: TestReport) -> None:
        self._held.reports.append(report)


class Held:
    """Every report logged during a test, held.

    pytest asks ``session.gethookproxy`` on every ``item.ihook`` access; the
    relays are made once per path for the whole session, so holding costs a
    dict lookup per hook call.
    """

    def __init__(self) -> None:
        self.reports: list[TestReport] = []
        self._relays: dict[os.PathLike[str], pluggy.HookRelay] = {}

    @contextmanager
    def hold(self, session: pytest.Session) -> Iterator[list[TestReport]]:
        real, relays = session.gethookproxy, self._relays
        self.reports = held = cast(list[TestReport], [])

        def held_proxy(fspath: os.PathLike[str]) -> pluggy.HookRelay:
            relay = relays.get(fspath)
            if relay is None:
                relay = relays[fspath] = cast(pluggy.HookRelay, _HeldHooks(real(fspath), self))
            return relay

        session.gethookproxy = held_proxy  # type: ignore[method-assign]
        try:
            yield held
        finally:
            del session.gethookproxy
