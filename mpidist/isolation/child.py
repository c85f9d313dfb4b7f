"""One isolated test in a fresh process forked from the template.

The child starts the test's process group itself, through mpidist's TCPStore on
rank 0 (no MPI here: the template never initialised it), under a key prefix of
its own (the test, its attempt and its group), so that no two tests' groups meet.
Its connections to the store are the template's (``Connections``), inherited at
the fork: a new TCP connection per test would cost a reverse name lookup on each
side (torch's c10d logs peers by name), and where DNS drops a packet that is a
5 s stall of the store's server for every rank. Before the body the children agree
through the store as the ranks do over MPI (``body_verdict``): a setup that
skipped or failed on one rank stops the body on every rank instead of leaving the
others in a collective.

A child ends itself: at the test's time limit ``faulthandler`` writes every
thread's stack and exits; when another rank's child ended the test (it died, or
failed: the rank posts ``<prefix>/ended``), a watcher thread gives this one
``grace`` seconds to finish, then writes the stacks and exits. So a crash or a
hang costs one test, and the next one runs.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import signal
import threading
import time
from datetime import timedelta
from typing import IO, Any, Callable, cast

import pytest
from _pytest.runner import runtestprotocol

from ..plugins.draws import seed_hypothesis
from ..plugins.writers import quiet_expecttest
from ..runner.held import Held

__all__ = ["STOPPED", "STOPPED_EXIT", "Connections", "body_verdict", "main", "resolve"]

STOPPED = "mpidist: stopped because "  #: first words of a stopped child's stacks
STOPPED_EXIT = 75
#: backends that need MPI, which a child does not have: it starts gloo instead
_NEEDS_MPI = ("mpi", "mpi4py")
_POLL = 0.05  #: seconds between the watcher's looks at the store


class Connections:
    """The template's two clients of rank 0's store, used by one child at a time:
    one for the test (its process group, the agreement, the test's own store use),
    one for the watcher, which only polls (``check``), so that a child that exits
    leaves no request on it. After a child that did not end normally both are
    made anew (it may have died inside a request)."""

    def __init__(self) -> None:
        self.main: Any = None
        self.watch: Any = None

    def ensure(self, request: dict[str, Any]) -> None:
        if self.main is not None or not request.get("addr"):
            return
        from torch.distributed import TCPStore  # type: ignore[attr-defined]

        timeout = timedelta(seconds=request["store_timeout"])
        self.main, self.watch = (TCPStore(request["addr"], request["port"], is_master=False,
                                          timeout=timeout, wait_for_workers=False)
                                 for _ in range(2))

    def drop(self) -> None:
        self.main = self.watch = None


def body_verdict(statuses: dict[int, dict[str, str]]) -> str:
    """"" if every rank's setup passed, else why nobody runs the body (pure)."""
    bad = sorted((rank, s) for rank, s in statuses.items() if s.get("status") != "passed")
    if not bad:
        return ""
    first = bad[0][1]
    ranks = ",".join(str(r) for r, _ in bad)
    why = first.get("reason", "")
    return (f"setup {first.get('status')} on rank{'s' if len(bad) > 1 else ''} {ranks}"
            + (f": {why}" if why else ""))


class _BodyAgreement:
    """The children's agreement before the body, through the store."""

    def __init__(self, store: Any, rank: int, size: int) -> None:
        self.store, self.rank, self.size = store, rank, size

    def _post(self, status: str, reason: str = "") -> None:
        self.store.set(f"setup/{self.rank}", json.dumps({"status": status, "reason": reason}))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when == "setup" and not report.passed:
            longrepr = report.longrepr
            reason = str(longrepr[2]) if isinstance(longrepr, tuple) else "an error"
            self._post("skipped" if report.skipped else "failed",
                       reason.removeprefix("Skipped: "))
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self._post("passed")
        keys = [f"setup/{r}" for r in range(self.size)]
        self.store.wait(keys)
        verdict = body_verdict({r: json.loads(self.store.get(k))
                                for r, k in enumerate(keys)})
        if verdict:
            pytest.skip(verdict)


class _Watcher(threading.Thread):
    """Ends the child ``grace`` s after another rank's child ended the test."""

    def __init__(self, store: Any, grace: float, crash: IO[bytes]) -> None:
        super().__init__(name="mpidist-peer-watch", daemon=True)
        self.store, self.grace, self.crash = store, grace, crash
        self.lock = threading.Lock()  # held while a request is on the connection

    def run(self) -> None:
        while True:
            with self.lock:
                if self.store.check(["ended"]):
                    who = self.store.get("ended").decode()
                    break
            time.sleep(_POLL)
        time.sleep(self.grace)
        self.crash.write(f"{STOPPED}rank {who}'s process ended the test first\n".encode())
        self.crash.flush()
        faulthandler.dump_traceback(file=self.crash, all_threads=True)
        os._exit(STOPPED_EXIT)


def _bootstrap(request: dict[str, Any], connections: Connections, crash: IO[bytes]
               ) -> tuple[Any, _Watcher | None]:
    """The test's store (prefixed), default process group (none without a backend:
    torch's protocol starts its own) and the watcher."""
    if connections.main is None:
        return None, None
    import torch.distributed as dist
    from torch.distributed import PrefixStore  # type: ignore[attr-defined]

    store = PrefixStore(request["prefix"], connections.main)
    watcher = _Watcher(PrefixStore(request["prefix"], connections.watch), request["grace"],
                       crash)
    watcher.start()
    backend = request.get("backend")
    if backend:
        if backend in _NEEDS_MPI:
            backend = "gloo"
        if backend == "nccl" and request.get("device") is not None:
            import torch

            torch.cuda.set_device(int(request["device"]))
        dist.init_process_group(backend, store=PrefixStore("pg", store),
                                rank=request["rank"], world_size=request["size"],
                                timeout=timedelta(seconds=request["store_timeout"]))
    return store, watcher


def resolve(entry: str) -> Callable[[pytest.Item, dict[str, Any]], Any]:
    """``module:function`` -- a layer above the runner that runs its own part in the
    child (the testing layer: torch's child protocol). The template resolves it before
    it forks: imported in each child, it cost 28 ms a test."""
    module, _, name = entry.partition(":")
    return cast(Callable[[pytest.Item, dict[str, Any]], Any],
                getattr(importlib.import_module(module), name))


def _run_item(item: pytest.Item, request: dict[str, Any], store: Any) -> dict[str, Any]:
    """pytest's protocol for ``item``, unlogged; its reports, serialized."""
    config = item.config
    if store is not None:
        config.pluginmanager.register(_BodyAgreement(store, request["rank"], request["size"]),
                                      "mpidist-isolated-agreement")
    held = Held()
    with held.hold(item.session) as subtests:
        reports = runtestprotocol(item, nextitem=None, log=False)
    serial = config.hook.pytest_report_to_serializable
    return {"reports": [serial(config=config, report=r) for r in reports],
            "subtests": [serial(config=config, report=r) for r in subtests]}


def main(item: pytest.Item, request: dict[str, Any], connections: Connections,
         entry: Callable[[pytest.Item, dict[str, Any]], Any] | None, write_fd: int,
         crash: IO[bytes]) -> None:
    """Run ``item`` here (or ``entry``, the request's) and write what it gave to
    ``write_fd``; never returns. (The template has already tied this process's life
    to its own.)"""
    from .. import runtime

    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.enable(file=crash, all_threads=True)
    faulthandler.dump_traceback_later(request["timeout"], exit=True, file=crash)
    os.environ.clear()
    os.environ.update(request["env"])
    seed_hypothesis(request["hypothesis_seed"], item.nodeid)  # the same examples everywhere
    if request["rank"]:
        quiet_expecttest()  # rank 0's child rewrites the source, if any does
    runtime.mark_isolated()
    store, watcher = _bootstrap(request, connections, crash)
    data = json.dumps({"value": entry(item, request)} if entry is not None else
                      _run_item(item, request, store))
    if watcher is not None:
        watcher.lock.acquire()  # no request of the watcher's left on its connection
    faulthandler.cancel_dump_traceback_later()
    view = memoryview(data.encode())
    while view:
        view = view[os.write(write_fd, view):]
    os._exit(0)
