"""Hold the launcher off while a rank's death is reported.

Launchers end the whole job the moment one rank process exits badly: Open MPI 5
(PRRTE), MPICH and Intel MPI (Hydra) and srun kill the other ranks within
milliseconds, long before rank 0 could write its report or JUnit file. No rank can
win that race, so mpidist does not run it: under ``--with-mpi`` the process the
launcher started forks once, before MPI is initialized. The child runs pytest and
MPI; the parent, the *keeper*, only waits for it, and the launcher watches the
keeper. When the child dies without a normal exit, the launcher sees nothing yet:
the keeper posts a signed ``died/<rank>`` value (how it died) on mpidist's channel,
waits until rank 0 says it has reported (or a time limit), prints one line, and
only then exits as the child did -- the same exit code, or the same signal -- so the
launcher ends the job in its usual way, after the report.

The keeper imports no MPI and no torch. It forwards the signals a launcher sends
(SIGTERM at a time limit, SIGINT, SIGCONT, ...) to the child, which lives in a
process group of its own (a launcher's group-wide SIGKILL would cut its report
short) and asks the kernel for SIGTERM should the keeper be killed: the SIGTERM path
then reports and ends the child within a bounded time.
What the keeper needs -- this rank, its host, the channel's address and the job's
secret -- comes from the child over a private pipe after the bootstrap (the secret
never enters the environment, a file, argv or the store).

Rank 0's own death cannot be reported this way: its process hosts the channel and
the report. So rank 0's child also hands its keeper a command to run should it die
(``Link.on_death``): the supervisor layer's replay of rank 0's flight log, which
prints the summary and writes the JUnit file from what rank 0 had logged, with
the test it was in failed as died. The keeper runs it in a session of its own
(a launcher's group-wide kill spares it), waits for it, and only then exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any

from ..bootstrap.channel import ChannelClient, ChannelError
from ..bootstrap.settings import launcher_task
from ..bootstrap.signing import SealedStore, Signer
from .signals import die_with

__all__ = ["DIED", "REPORTED", "await_report", "died_how", "link", "mark_done", "start"]

DIED = "mpidist/wd/died"  # "<rank>" of the last death; died/<rank>: how it died
REPORTED = "mpidist/wd/reported"  # rank 0 has written its report (a death, a hang, SIGTERM)
_PATIENCE = 5.0  # seconds a waiting rank gives rank 0 to answer one question
_FORWARD = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCONT")


class Link:
    """The child's end of the socket pair to its keeper."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._done = False
        self._remove = ""  # on_death's directory: the keeper's to remove, or ours
        self._pid = os.getpid()  # a process the test forks inherits this object

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        # OSError: the keeper is gone, and the kernel is ending this process too
        with contextlib.suppress(OSError):
            socket.send_fds(self._sock, [json.dumps(message).encode() + b"\n"], fds or [])

    def hold_launcher_sockets(self) -> None:
        """Right after MPI_Init, before mpidist or torch open any: hand the keeper a
        copy of every socket this process has -- its connection to the launcher's
        PMI/PMIx server. The launcher then sees no disconnect when this process dies
        (srun with Open MPI 5's PMIx ends the step on one) until the keeper exits."""
        fds = []
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.fstat(fd).st_mode) and fd != self._sock.fileno():
                    fds.append(fd)
        if fds:
            self._send({"held": len(fds)}, fds)

    def contact(self, rank: int, label: str, addr: str, port: int, secret: bytes) -> None:
        """After the bootstrap: what the keeper needs to tell rank 0 of a death."""
        self._send({"rank": rank, "label": label, "addr": addr, "port": port,
                    "secret": secret.hex()})

    def on_death(self, argv: list[str], unset: tuple[str, ...] = (),
                 remove: str = "") -> None:
        """Should this process die (not ``done``), the keeper runs ``argv`` with
        ``{died}`` in any argument replaced by ``<label> died: <how>``, without the
        environment variables ``unset``, then removes the directory ``remove``."""
        self._remove = remove
        self._send({"on_death": argv, "unset": list(unset), "remove": remove})

    def done(self) -> None:
        """This rank is ending on purpose (a normal exit, or a reported end). The
        keeper will run no ``on_death`` command, so its directory goes now: a job
        ended by MPI_Abort under Hydra has its keeper SIGKILLed before it could."""
        if not self._done and os.getpid() == self._pid:
            self._done = True
            self._send({"done": True})
            if self._remove:
                shutil.rmtree(self._remove, ignore_errors=True)


_LINK: Link | None = None


def link() -> Link | None:
    """The link to this process's keeper, or None when there is none."""
    return _LINK


def mark_done() -> None:
    """Call before any deliberate ``os._exit``: the keeper must not report a death."""
    if _LINK is not None:
        _LINK.done()


def start() -> None:
    """Fork the keeper (Linux, a launcher with more than one task; before MPI is
    initialized). Returns in the child only, or at once when there is nothing to keep."""
    global _LINK
    if _LINK is not None or not sys.platform.startswith("linux"):
        return
    if launcher_task() is None:  # no launcher, or one task: nobody to hold off (and an
        return  # interactive run keeps its terminal: --pdb reads stdin)
    keeper_end, child_end = socket.socketpair()
    sys.stdout.flush()
    sys.stderr.flush()
    keeper = os.getpid()
    child = os.fork()
    if child == 0:
        keeper_end.close()
        _die_with(keeper)
        _LINK = Link(child_end)
        atexit.register(_LINK.done)  # runs on a normal exit, never after a crash
        return
    child_end.close()
    try:
        _keep(child, keeper_end)
    finally:
        os._exit(70)  # not reached: _keep exits as the child did


def _die_with(keeper: int) -> None:
    """Leave the keeper's process group and ask for SIGTERM when the keeper dies.

    Open MPI 5 ends a job by signalling each launched process's group: SIGCONT,
    SIGTERM 250 ms later, SIGKILL 250 ms after that -- too soon for rank 0's report.
    In a group of its own the child gets the SIGTERM (the keeper forwards it) but not
    the SIGKILL; the keeper's death then reaches it as a second SIGTERM, and the
    SIGTERM path (``safety.signals``) reports and exits within a bounded time."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    die_with(keeper, signal.SIGTERM, 128 + int(signal.SIGTERM))


def _keep(child: int, sock: socket.socket) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for name in _FORWARD:
        signal.signal(getattr(signal, name), forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            status = 70 << 8
            break
    messages, held = _read_all(sock)
    command = next((m for m in reversed(messages) if "on_death" in m), None)
    if not any(m.get("done") for m in messages):
        contact = next((m for m in messages if "secret" in m), None)
        _report_death(contact, died_how(status), command)
    if command is not None and command.get("remove"):
        # also when the child reported and then ended the job without its own clean-up
        # (a hang's report ends the job from a watchdog thread): nothing else would
        shutil.rmtree(str(command["remove"]), ignore_errors=True)
    del held  # the launcher's sockets close with this process, as the child's would have
    _exit_as(status)


def _read_all(sock: socket.socket) -> tuple[list[dict[str, Any]], list[int]]:
    """Every message the child sent, and the sockets it handed over (a few short
    messages; a forked grandchild may hold the pair open, so no waiting for its end)."""
    sock.setblocking(False)
    data, held = b"", []
    while True:
        try:
            chunk, fds, _, _ = socket.recv_fds(sock, 65536, 1024)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        data += chunk
        held += fds
    messages = []
    for line in data.splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue
    return messages, held


def died_how(status: int) -> str:
    """``exit code 7`` or ``signal 11 (SIGSEGV)`` from a wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "?"
        return f"signal {number} ({name})"
    return f"exit code {os.WEXITSTATUS(status)}"


def _report_death(contact: dict[str, Any] | None, how: str,
                  command: dict[str, Any] | None = None) -> None:
    if contact is None:  # it died during the bootstrap: the launcher's word is all
        return
    rank, label = int(contact["rank"]), str(contact["label"])
    print(f"mpidist: {label} died: {how}", file=sys.stderr, flush=True)
    if command is not None:
        _run_on_death(command, f"{label} died: {how}")
        return
    if rank == 0:
        print("mpidist: rank 0 held the report and JUnit file, so none was written; "
              "`mpidist run` recovers the finished results from its journal",
              file=sys.stderr, flush=True)
        return
    try:
        client = ChannelClient(str(contact["addr"]), int(contact["port"]), timeout=_PATIENCE)
        store = SealedStore(client, Signer(bytes.fromhex(contact["secret"])))
        store.put(f"{DIED}/{rank}", how)
        store.put(DIED, str(rank))
    except (ChannelError, ValueError):
        return  # rank 0 is gone (it reported and ended, or died too)
    await_report(store, _wait_limit())


def await_report(store: SealedStore, limit: float) -> None:
    """Return once rank 0 has posted ``REPORTED`` (its report is out), its channel
    is gone, or after ``limit``: the wait of a dead rank's keeper, and of a rank a
    launcher's SIGTERM reached, before it exits and the launcher ends the job.

    Each question waits at most ``_PATIENCE``: rank 0 answers in milliseconds while
    it writes its report, but inside ``MPI_Abort`` (or a C ``exit`` the launcher has
    not ended yet) it holds the GIL and answers nothing; the connection's own 30-s
    timeout kept the job's output open that long after the report was out."""
    store.settimeout(_PATIENCE)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if store.has(REPORTED):
                return
        except ChannelError:  # closed, or silent: rank 0 is gone or ending
            return
        time.sleep(0.1)


def _run_on_death(command: dict[str, Any], died: str) -> None:
    """Run the child's ``on_death`` command (bounded by ``_wait_limit``). Its own
    session: Open MPI 5 and Hydra signal the keeper's process group when they end
    the job, and the report must not be cut short by that."""
    argv = [str(arg).replace("{died}", died) for arg in command["on_death"]]
    unset = set(command.get("unset", ()))
    env = {k: v for k, v in os.environ.items() if k not in unset}
    print(flush=True)  # the dead child's last progress line may lack its newline
    try:
        subprocess.run(argv, env=env, start_new_session=True, timeout=_wait_limit(),
                       check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"mpidist: the report of the death could not be written: {exc}",
              file=sys.stderr, flush=True)


def _wait_limit() -> float:
    """How long a dead rank's keeper holds the launcher off: rank 0 reports within
    a few seconds (the answers of the living ranks), unless it is stuck itself."""
    try:
        return float(os.environ.get("MPIDIST_DEATH_WAIT", "60"))
    except ValueError:
        return 60.0


def _exit_as(status: int) -> None:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        time.sleep(1.0)
        os._exit(128 + number)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)
