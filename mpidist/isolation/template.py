"""The template: forked before ``MPI_Init``, it forks one child per isolated test.

Why a fork before MPI, and not after: a process that has initialised MPI must not
fork (RDMA transports pin memory that the child would share; Open MPI warns and
some providers break), and a process that has started a process group carries
gloo's or NCCL's threads into the child. So each rank forks its template in
``pytest_load_initial_conftests``, right after the keeper and before
``MPI_Init`` -- the process then holds pytest and its plugins only. The template
runs pytest on, without MPI (``in_template``: no ``MPISession``) -- but first it
waits, before any of pytest's start-up, until its rank says whether any test is
isolated: only then does it go on, collect (importing torch and the test modules
once) and serve; else it exits, having cost a fork and nothing else.

The template keeps nothing of the launcher's: the sockets and pipes it inherited
(the PMI connection, the keeper's link) are pointed at ``/dev/null``, its stdout
and stderr become the rank's (after the rank's redirection), and it dies with
its rank (``PR_SET_PDEATHSIG``), as its children die with it. It ignores SIGINT
(the rank handles it); it never writes JUnit or pytest's cache.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import tempfile
from typing import Any

import pytest

from ..plugins.writers import not_the_writer
from ..safety.signals import die_with
from .process import collapse_to_huge_pages, drop_inherited
from .wire import receive, send

__all__ = ["NoWorkers", "TemplateLink", "TemplatePlugin", "fork", "in_template", "link"]

_TAIL = 64 * 1024  #: the most of a dead child's output or stacks kept for its report
#: the template's memory goes to huge pages before this child, not the first: that takes
#: about 0.5 CPU-s and saves about 10 ms a child (``process.collapse_to_huge_pages``), so
#: a run of a few isolated tests does not pay for it, and a long run loses little
_COLLAPSE_AT = 32


class TemplateLink:
    """The rank's end: the template's pid and the socket to it."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.serving = False  # told to collect (some test is isolated)

    def hand_output(self) -> None:
        """After the rank's output redirection: the template writes where the rank does."""
        with contextlib.suppress(OSError):
            send(self.sock, {"op": "output"}, (1, 2))

    def collect(self, serve: bool) -> None:
        """Collect and serve (some test is isolated), or exit."""
        self.serving = serve
        with contextlib.suppress(OSError):
            send(self.sock, {"op": "collect" if serve else "exit"})

    def run(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """One isolated test; the template's answer, or None if the template is gone."""
        try:
            send(self.sock, {"op": "run", **request})
            answer, _ = receive(self.sock)
        except OSError:
            return None
        return answer

    def close(self) -> None:
        """Tell the template to exit; not waited for (it may be collecting still: it
        exits when it next reads, or with this process)."""
        with contextlib.suppress(OSError):
            send(self.sock, {"op": "exit"})
        self.sock.close()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)


_LINK: TemplateLink | None = None
_SOCK: socket.socket | None = None  # the template's end, in the template


def link() -> TemplateLink | None:
    """The rank's link to its template, or None when none was forked."""
    return _LINK


def in_template() -> bool:
    """Whether this process is a template (or a test's child of one)."""
    return _SOCK is not None


def fork() -> None:
    """Fork the template (Linux; before ``MPI_Init``). Returns in both processes:
    ``in_template()`` tells them apart."""
    global _LINK, _SOCK
    if _LINK is not None or _SOCK is not None or not sys.platform.startswith("linux"):
        return
    rank_end, template_end = socket.socketpair()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        template_end.close()
        _LINK = TemplateLink(pid, rank_end)
        return
    rank_end.close()
    die_with(parent, signal.SIGKILL, 0)
    drop_inherited(template_end.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    message, fds = receive(template_end, with_fds=2)
    if message is None or len(fds) != 2:
        os._exit(0)  # the rank ended before it was set up (a usage error)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    os.close(fds[0])
    os.close(fds[1])
    message, _ = receive(template_end)  # here, before pytest's start-up: a run with no
    if message is None or message.get("op") != "collect":  # isolated test costs a fork
        os._exit(0)
    # torch.cuda.is_available() at collection must not initialise CUDA: a forked
    # child of a process that did cannot use it
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    _no_mpi_init()
    _SOCK = template_end


def _no_mpi_init() -> None:
    """``from mpi4py import MPI`` in a test's child must not initialise MPI: it would
    join the launcher's job as a second process of this rank (Open MPI aborts the
    job, after a long wait). mpi4py then says MPI is not initialised instead."""
    try:
        import mpi4py
    except ImportError:
        return
    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False


class NoWorkers:
    """pytest-xdist must not start workers from a template (they would start MPI): its
    distribution mode is off before xdist's own ``pytest_configure`` reads it."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        if hasattr(config.option, "dist"):
            config.option.dist = "no"
            config.option.tx = []


class TemplatePlugin:
    """The template's pytest: quiet; after collection it serves its rank."""

    def __init__(self, config: pytest.Config) -> None:
        assert _SOCK is not None
        self.config = config
        self.sock = _SOCK
        not_the_writer(config, "template", 1)  # rank 0 writes JUnit, reports, the cache

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        from .child import Connections

        items = {item.nodeid: item for item in session.items}
        capman = self.config.pluginmanager.getplugin("capturemanager")
        connections = Connections()
        # What collection made (torch, the test modules) goes to the collector's permanent
        # generation: a child's garbage collection would otherwise visit, and so copy, every
        # page of it (seen: a third of a child's time on 2 cores).
        gc.collect()
        gc.freeze()
        served = 0
        while True:
            message, _ = receive(self.sock)
            if message is None or message.get("op") != "run":
                os._exit(0)
            served += 1
            if served == _COLLAPSE_AT:
                collapse_to_huge_pages()
            item = items.get(message["nodeid"])
            answer = (run_child(item, message, connections, capman) if item is not None else
                      {"error": "the test was not collected in the rank's isolation "
                                "template (its collection differs from the rank's)"})
            send(self.sock, answer)


def run_child(item: pytest.Item, request: dict[str, Any], connections: Any,
              capman: Any) -> dict[str, Any]:
    """Fork the test's child, wait for it, and say what it sent and how it ended."""
    from .child import main, resolve

    try:
        entry = resolve(request["entry"]) if request.get("entry") else None
    except (ImportError, AttributeError) as exc:
        return {"error": f"the isolation template cannot load {request['entry']}: {exc}"}
    try:
        connections.ensure(request)
    except Exception as exc:  # the store is gone: the report says so
        return {"error": f"the test's process could not reach mpidist's store: {exc}"}
    _captured(capman)  # the template's own output is not the test's
    crash = tempfile.TemporaryFile()  # noqa: SIM115 -- the child writes it; closed below
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    template = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            die_with(template, signal.SIGKILL, 0)
            os.close(read_fd)
            self_sock = _SOCK
            if self_sock is not None:
                os.dup2(os.open(os.devnull, os.O_RDWR), self_sock.fileno())
            main(item, request, connections, entry, write_fd, crash)
        finally:
            os._exit(70)
    os.close(write_fd)
    data, status = _wait(pid, read_fd)
    out, err = _captured(capman)
    crash.seek(0)
    stacks = crash.read()[-_TAIL:].decode(errors="replace")
    crash.close()
    result: Any = None
    if data:
        with contextlib.suppress(ValueError):
            result = json.loads(data)
    if result is None or status != 0:
        connections.drop()  # it may have died inside a request to the store
    return {"status": status, "pid": pid, "result": result, "crash": stacks,
            "out": out[-_TAIL:], "err": err[-_TAIL:]}


def _wait(pid: int, read_fd: int) -> tuple[bytes, int]:
    """The child's result bytes and its exit code (``-signal`` if killed). Reads until
    the child has exited, not until end of file: a grandchild may hold the pipe."""
    pidfd = os.pidfd_open(pid)
    chunks: list[bytes] = []
    exited = False
    try:
        while True:
            ready, _, _ = select.select([read_fd, pidfd], [], [])
            if read_fd in ready:
                chunk = os.read(read_fd, 1 << 20)
                if chunk:
                    chunks.append(chunk)
                    continue
                if exited:
                    break
                ready = [pidfd]  # end of file: the child is exiting
            if pidfd in ready and not exited:
                exited = True
                os.set_blocking(read_fd, False)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(read_fd, 1 << 20):
                        chunks.append(chunk)
                break
    finally:
        os.close(pidfd)
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks), os.waitstatus_to_exitcode(status)


def _captured(capman: Any) -> tuple[str, str]:
    """What was written to the captured stdout and stderr since the last call (a
    dead child's output is still in the files it shares with the template)."""
    if capman is None or not getattr(capman, "_global_capturing", None):
        return "", ""
    try:
        out, err = capman.read_global_capture()
    except (AssertionError, OSError, ValueError):
        return "", ""
    return str(out), str(err)
