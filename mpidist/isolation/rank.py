"""The rank's side of isolation: which tests are isolated, and their reports.

The rank decides once, after collection (every rank holds rank 0's tests, so
every rank decides alike): ``--mpi-isolate`` isolates every test, the default
only those marked ``mpi(isolate=True)``. A torch class is not isolated: its
protocol already gives each test the processes torch's runner would
(``testing.compat``). The template is told to collect only when a test is
isolated; else it exits, having cost one fork.

For each isolated test the rank sends its template the test, the group's
store prefix and this rank's environment, and turns the answer into this rank's
reports: the child's own, or -- when it died, hung or was stopped -- one failed
call report that says how (exit code or signal, its stacks and output). A child
that ended the test, by failing or dying, is announced on the store
(``<prefix>/ended``) so the other ranks' children do not wait for it in a
collective.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

import pytest
from _pytest.reports import TestReport

from ..placement.sizes import TORCH_SIZE
from ..report.failures import failed_reports
from ..report.results import DIED
from ..runner.markers import ISOLATED, closest_markers
from .child import STOPPED
from .template import TemplateLink

if TYPE_CHECKING:
    from ..bootstrap.world import World
    from ..runner.group import Group

__all__ = ["TORCH_CHILD", "Isolation", "describe_end", "isolated_by",
           "trim_stacks"]

#: item stash key, set by the testing layer: a torch class whose tests run through
#: torch's child protocol (``MultiProcessTestCase._run``), which isolation forks
TORCH_CHILD = pytest.StashKey[bool]()


def isolated_by(item: pytest.Item, mode: str) -> str:
    """How ``item`` runs isolated under ``mode`` (``on``, ``marked``, ``off``): "item",
    "torch" (a torch class: its child protocol, forked), or "" (not isolated). Other
    torch classes are not: a ``MultiProcContinuousTest`` keeps one group per class on
    purpose, and a one-process class has no child to fork."""
    if mode == "off":
        return ""
    markers = closest_markers(item)
    marker = markers.get("mpi")
    wanted = (bool(marker.kwargs["isolate"]) if marker is not None and "isolate" in marker.kwargs
              else mode == "on" or "forked" in markers)  # pytest-forked's marker
    if not wanted:
        return ""
    if TORCH_SIZE in item.stash:
        return "torch" if item.stash.get(TORCH_CHILD, False) else ""
    return "item"


def describe_end(status: int, crash: str) -> tuple[str, str]:
    """How a child that sent no reports ended: ``(words, abnormal)``, where
    ``abnormal`` is ``died``, ``timeout`` or ``stopped`` (pure)."""
    if crash.startswith("Timeout ("):
        return "exceeded its time limit (its stacks above)", "timeout"
    if crash.startswith(STOPPED):
        return crash.splitlines()[0].removeprefix("mpidist: ") + " (its stacks above)", \
            "stopped"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by signal {-status} ({name})", "died"
    if status == 0:
        return "exited with code 0 before it reported (os._exit(0)?)", "died"
    return f"exited with code {status} before it reported", "died"


def trim_stacks(text: str) -> str:
    """faulthandler's stacks without the frames of pytest, pluggy and mpidist's child
    (the test's own frames and the libraries it called stay; pure)."""
    return "\n".join(line for line in text.splitlines()
                     if not (line.startswith('  File "') and any(
                         part in line for part in _MACHINERY)))


_MACHINERY = ("/_pytest/", "/pluggy/", "/mpidist/isolation/", "/pytest/__main__.py",
              "<frozen runpy>")


class Isolation:
    """Runs isolated tests through this rank's template.

    Args:
        config: the pytest config.
        template: the link to this rank's template.
        mode: ``on`` (every test), ``marked`` (``mpi(isolate=True)``) or ``off``.
        world: this rank's world (host, store address).
        backend: the default group's backend (None: the children start none).
        store_timeout: seconds for the store and the children's process groups.
        grace: seconds a child gets after another rank's child ended the test.
        hypothesis_seed: rank 0's seed of hypothesis's draws (``examples``), once known.
    """

    def __init__(self, config: pytest.Config, template: TemplateLink, mode: str,
                 world: World, backend: str | None, store_timeout: float,
                 grace: float, hypothesis_seed: Callable[[], int]) -> None:
        self.config = config
        self.template = template
        self.mode = mode
        self.world = world
        self.backend = backend
        self.store_timeout = store_timeout
        self.grace = grace
        self.hypothesis_seed = hypothesis_seed
        self._store: Any = None
        if mode == "on":  # every test will be isolated: the template collects meanwhile
            template.collect(True)
        self._current: tuple[Group, int, float] | None = None  # the test in flight

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        any_isolated = False
        for item in session.items:
            how = isolated_by(item, self.mode)
            if how:
                item.stash[ISOLATED] = how
                any_isolated = True
        if not self.template.serving:  # (``on``: told at once)
            self.template.collect(any_isolated and not self.config.option.collectonly)

    def pytest_unconfigure(self) -> None:
        self.template.close()

    def begin(self, group: Group, index: int, timeout: float) -> None:
        """The isolated test about to run (the pipeline), for ``run_torch``."""
        self._current = (group, index, timeout)

    def _request(self, item: pytest.Item, group: Group, index: int, timeout: float,
                 backend: str | None) -> dict[str, Any]:
        digest = hashlib.sha1(item.nodeid.encode(), usedforsecurity=False).hexdigest()[:12]
        env = dict(os.environ)
        env.update(RANK=str(group.rank), WORLD_SIZE=str(group.size))  # the child's group
        world = self.world
        return {
            "nodeid": item.nodeid,
            "prefix": f"mpidist/isolate/{'.'.join(map(str, group.ranks))}/{index}/{digest}",
            "rank": group.rank, "size": group.size,
            "addr": world.master_addr if world.master_port else "",
            "port": world.master_port, "backend": backend, "device": _device(),
            "timeout": timeout, "store_timeout": self.store_timeout,
            "grace": self.grace, "env": env, "hypothesis_seed": self.hypothesis_seed(),
        }

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.template.run(request)
        if answer is None:
            return {"status": 0, "result": None, "crash": "", "out": "", "err": "",
                    "error": "this rank's isolation template is gone"}
        return answer

    def run(self, item: pytest.Item, group: Group, index: int,
            timeout: float) -> tuple[list[TestReport], list[TestReport]]:
        """This rank's reports (and subtest reports) of ``item``, run in a child."""
        request = self._request(item, group, index, timeout, self.backend)
        reports, subtests = self._reports(item, self._ask(request))
        if any(r.failed for r in (*reports, *subtests)):
            self._announce(request["prefix"], group.rank)
        return reports, subtests

    def run_torch(self, item: pytest.Item, call: dict[str, Any]) -> dict[str, Any]:
        """torch's child protocol of the test in flight, in a child: ``call`` names the
        testing layer's entry and its arguments. Returns ``code``, ``error`` (the
        body's traceback), ``skip`` (its reason) and ``died`` (how the child ended
        without answering, with its output and stacks), each None if not so, and
        ``ended`` (``describe_end``'s word, "" when it answered)."""
        assert self._current is not None, "begin() names the test first"
        group, index, timeout = self._current
        request = {**self._request(item, group, index, timeout, None), **call}
        request["env"] = dict(os.environ)  # torch's RANK and WORLD_SIZE, as setUp set them
        answer = self._ask(request)
        result = answer.get("result")
        if result is not None:
            value = {**result["value"], "died": None, "ended": ""}
        else:
            text, how = self._death(answer)
            value = {"code": int(answer.get("status", 1)) or 1, "error": None, "skip": None,
                     "died": text, "ended": how}
        if value["died"] is not None or value.get("error") is not None:
            self._announce(request["prefix"], group.rank)
        return value

    def _reports(self, item: pytest.Item,
                 answer: dict[str, Any]) -> tuple[list[TestReport], list[TestReport]]:
        result = answer.get("result")
        if result is not None:
            hook = self.config.hook.pytest_report_from_serializable
            return ([hook(config=self.config, data=d) for d in result["reports"]],
                    [hook(config=self.config, data=d) for d in result["subtests"]])
        # an ordinary failure: the job goes on (``abnormal`` is for a test that ended it)
        text, how = self._death(answer)
        reports = failed_reports(item.nodeid, item.location, text)
        if how != "stopped":
            setattr(reports[1], DIED, True)  # the cause: the merge puts it first
        return reports, []

    @staticmethod
    def _death(answer: dict[str, Any]) -> tuple[str, str]:
        """How a child that sent nothing ended: its output, its stacks, and a last
        line (the one the short summary and JUnit show) that says how; and
        ``describe_end``'s word for it ("died" when the template could not run it)."""
        if answer.get("error"):
            words, how = answer["error"], "died"
        else:
            words, how = describe_end(int(answer["status"]), answer.get("crash", ""))
            words = f"the test's process (pid {answer.get('pid')}) {words}"
        text = []
        for title, key in (("stdout", "out"), ("stderr", "err"), ("stacks", "crash")):
            if answer.get(key):
                shown = str(answer[key]) if key != "crash" else trim_stacks(answer[key])
                text += [f"----- {title} -----", shown.rstrip()]
        text.append(f"mpidist: {words}")
        return "\n".join(text), how

    def _announce(self, prefix: str, rank: int) -> None:
        """``<prefix>/ended`` on the store: the other ranks' children stop waiting."""
        world = self.world
        if not world.master_port:
            return
        with contextlib.suppress(Exception):
            if self._store is None:
                from torch.distributed import TCPStore  # type: ignore[attr-defined]

                self._store = TCPStore(world.master_addr, world.master_port, is_master=False,
                                       timeout=timedelta(seconds=self.store_timeout),
                                       wait_for_workers=False)
            self._store.set(f"{prefix}/ended", str(rank))


def _device() -> int | None:
    """The CUDA device this rank uses, if it uses one (its child uses the same)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.current_device())
