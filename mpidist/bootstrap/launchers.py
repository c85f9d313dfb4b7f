"""Each MPI launcher's manners, in one place (pure: no MPI, no torch).

mpidist runs under whatever started the ranks, and the launchers users have differ
in everything around the ranks: how they are recognised, how they spell
oversubscription, hosts, environment forwarding, the remote agent and the network
to use, which variables they give each task, what they do when a rank dies or when
they get SIGTERM, and how they say that a rank died. ``LAUNCHERS`` holds that,
``detect`` names the launcher behind an executable, ``Launcher.command`` builds a
command line for it (the test harness and ``mpidist run`` use these), and
``diagnose`` reads what any of them printed about dead ranks.

What they do when a rank dies is why mpidist forks a keeper per rank
(``safety.keeper``): all of them end the job within milliseconds, some with
SIGKILL, so no rank could report before the kill arrives.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

__all__ = ["LAUNCHERS", "Launcher", "detect", "diagnose", "mismatch"]


@dataclass(frozen=True)
class Launcher:
    """One launcher and its manners.

    ``hosts`` in ``command`` are (address, ranks) pairs; ``agent`` is an ssh
    stand-in for starting the remote daemons; ``iface`` the head's interface the
    remote side connects back to, ``subnet`` the network (CIDR) for MPI traffic.
    """

    key: str  # ompi4 | ompi5 | mpich | impi | srun
    title: str
    rank_var: str
    size_var: str
    local_rank_var: str
    on_death: str  # what it does to the other ranks when one dies
    on_sigterm: str  # how a SIGTERM (a time limit, scancel, Ctrl-C) reaches the ranks
    says: str  # what it prints about a dead rank
    env: tuple[tuple[str, str], ...] = ()  # what it needs to run as root
    keeps_node_loss: bool = False  # a lost node's ranks: SIGTERM to the rest, time to report
    remote_failure: int | None = None  # its exit status (at times) when remote ranks fail
    output_after_sigterm: bool = True  # ranks' output still reaches its terminal

    def executable(self, exe: str) -> str:
        """The program to start and signal: Intel MPI's ``mpirun`` is a shell script that
        does not pass SIGTERM on to ``mpiexec.hydra``, so that is the one to run."""
        hydra = os.path.join(os.path.dirname(exe), "mpiexec.hydra")
        if self.key == "impi" and os.path.basename(exe) == "mpirun" and os.access(hydra,
                                                                                   os.X_OK):
            return hydra
        return exe

    def oversubscribe(self) -> list[str]:
        """More ranks than cores, in this launcher's words (Hydra and srun need none)."""
        # Open MPI 5 maps by core and puts an oversubscribed job on the first node;
        # by slot it follows the hosts' counts, as Open MPI 4 does.
        return {"ompi4": ["--oversubscribe"],
                "ompi5": ["--map-by", "slot:OVERSUBSCRIBE", "--bind-to", "none"]
                }.get(self.key, [])

    def command(self, exe: str, n: int, *, hosts: Sequence[tuple[str, int]] = (),
                forward: Sequence[str] = (), agent: str | None = None,
                iface: str | None = None, subnet: str | None = None,
                oversubscribe: bool = True) -> list[str]:
        """``exe -n N`` and this launcher's spelling of the rest (``oversubscribe``:
        allow more ranks than cores; Open MPI then binds no rank to a core)."""
        if self.key == "srun":
            return [exe, f"--ntasks={n}", "--mpi=pmix"]
        cmd = [exe, "-n", str(n), *(self.oversubscribe() if oversubscribe else ())]
        if self.key in ("ompi4", "ompi5"):
            if hosts:
                cmd += ["--host", ",".join(f"{host}:{count}" for host, count in hosts)]
            for name in forward:
                cmd += ["-x", name]
            if agent:
                cmd += ["--mca", "plm_rsh_agent", agent]
            if subnet:
                cmd += ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", subnet,
                        "--mca", "oob_tcp_if_include", subnet]
                # notice a node cut off the network in ~11 s, not the default 480 s
                cmd += ["--mca", "oob_tcp_keepalive_time", "5", "--mca",
                        "oob_tcp_keepalive_intvl", "2", "--mca", "oob_tcp_keepalive_probes", "3"]
            return cmd
        # Hydra: MPICH and Intel MPI
        if hosts and self.key == "impi":  # its -hosts ignores counts; a machinefile keeps them
            cmd += ["-machinefile", _machinefile(hosts)]
        elif hosts:
            cmd += ["-hosts", ",".join(f"{host}:{count}" for host, count in hosts)]
        if forward:
            cmd += ["-genvlist", ",".join(forward)]
        if agent:
            cmd += (["-launcher", "ssh", "-launcher-exec", agent] if self.key == "mpich"
                    else ["-bootstrap", "ssh", "-bootstrap-exec", agent])
        if iface:
            cmd += ["-iface", iface]
        return cmd


_MACHINEFILES: dict[str, str] = {}  # host layout -> this process's machinefile for it


def _machinefile(hosts: Sequence[tuple[str, int]]) -> str:
    """This process's machinefile for ``hosts``: one private temporary file per
    layout (mkstemp: an unguessable name, mode 0600), reused by later launches and
    removed when the process exits (the command outlives this call)."""
    text = "".join(f"{host}:{count}\n" for host, count in hosts)
    path = _MACHINEFILES.get(text)
    if path is None:
        fd, path = tempfile.mkstemp(prefix="mpidist-hosts-", text=True)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        if not _MACHINEFILES:
            atexit.register(_remove_machinefiles)
        _MACHINEFILES[text] = path
    return path


def _remove_machinefiles() -> None:
    for path in _MACHINEFILES.values():
        with contextlib.suppress(OSError):
            os.remove(path)


_ROOT = (("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"))

LAUNCHERS = {
    "ompi4": Launcher(
        "ompi4", "Open MPI 4.1 (ORTE mpirun)", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        on_death="SIGTERM to every other rank, SIGKILL a few seconds later",
        on_sigterm="forwards SIGTERM to every rank, then SIGKILL",
        says='"mpirun noticed that process rank 2 with PID ... exited on signal 11" or '
             '"Process name: [[...],2] Exit code: 7"',
        env=_ROOT, keeps_node_loss=True),
    "ompi5": Launcher(
        "ompi5", "Open MPI 5 (PRRTE mpirun/prterun)", "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
        on_death="SIGCONT, SIGTERM 250 ms later, SIGKILL 250 ms after that, to each "
                 "rank's process group",
        on_sigterm="stops forwarding the ranks' output at once, then SIGCONT, SIGTERM, "
                   "SIGKILL as on a death: a report reaches the JUnit file only",
        says='"prterun detected that one or more processes exited with non-zero status" '
             'and "Process name: [prterun-...@1,2] Exit code: 7"',
        env=(*_ROOT, ("PRTE_MCA_prte_allow_run_as_root", "1")), output_after_sigterm=False),
    "mpich": Launcher(
        "mpich", "MPICH 4/5 (Hydra mpiexec)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
        on_death="SIGKILL to every other rank at once (-disable-auto-cleanup: none)",
        on_sigterm="forwards SIGTERM to every rank (and SIGINT on Ctrl-C)",
        says='"BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES ... EXIT CODE: 9" '
             "(the killed ranks' code; the dead rank's own code is not shown)"),
    "impi": Launcher(
        "impi", "Intel MPI 2021 (Hydra mpiexec)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
        on_death="SIGKILL to every other rank at once",
        on_sigterm="mpiexec forwards SIGTERM to every rank; the mpirun script does not",
        says='"BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES ... RANK 2 PID ... '
             'RUNNING AT host ... EXIT STATUS: 7"',
        remote_failure=255),
    "srun": Launcher(
        "srun", "Slurm srun (--mpi=pmix or pmi2)", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS",
        "SLURM_LOCALID",
        on_death="kills the step (SIGKILL) when a task dies with MPI's PMI; KillOnBadExit",
        on_sigterm="at the time limit (or scancel) SIGCONT+SIGTERM to every task, SIGKILL "
                   "after KillWait (default 30 s)",
        says='"srun: error: node2: task 2: Exited with exit code 7" or ": Segmentation fault"'),
}


def detect(exe: str) -> Launcher:
    """The launcher behind ``exe`` (an mpirun, mpiexec or srun), from its ``--version``."""
    if os.path.basename(exe) == "srun":  # its --version needs a reachable slurm.conf
        return LAUNCHERS["srun"]
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        text = proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"cannot run {exe} --version: {exc}") from None
    if re.match(r"slurm[- ]\d", text.strip().lower()):  # "slurm 22.05.8" (Hydra lists
        return LAUNCHERS["srun"]  # slurm among its resource managers: not this)
    if "Intel(R) MPI" in text:
        return LAUNCHERS["impi"]
    match = re.search(r"Open MPI\)? (\d+)\.", text)
    if match:
        return LAUNCHERS["ompi5" if int(match.group(1)) >= 5 else "ompi4"]
    if "HYDRA" in text or "MPICH" in text:
        return LAUNCHERS["mpich"]
    raise ValueError(f"{exe} is none of the launchers mpidist knows: {text[:200]!r}")


def mismatch(library: str, environ: Mapping[str, str]) -> str:
    """One line when the launcher that started this task is not one the MPI library
    (``MPI_Get_library_version``, callable before MPI_Init) can talk to, else "".
    MPICH and Intel MPI abort inside MPI_Init under Open MPI's PMIx, with a stack per rank."""
    ompi_launcher = "OMPI_COMM_WORLD_SIZE" in environ
    hydra_launcher = "PMI_SIZE" in environ and "PMIX_RANK" not in environ
    if ompi_launcher and "Open MPI" not in library:
        started, name = "Open MPI's mpirun", " ".join(library.split(",")[0].split("\n")[0].split())
    elif hydra_launcher and "Open MPI" in library:
        started, name = "a Hydra mpiexec (MPICH or Intel MPI)", "Open MPI"
    else:
        return ""
    return (f"{started} started this task, but mpi4py loads {name}: use the mpirun of the "
            "MPI that mpi4py loads (or rebuild mpi4py for this one)")


_PATTERNS = (
    # Open MPI: mpirun noticed that process rank 2 with PID 0 on node vm exited on signal 11 (...)
    re.compile(r"process rank (?P<rank>\d+) with PID \d+ on node (?P<host>\S+) "
               r"exited on signal (?P<signal>\d+)(?: \((?P<name>[^)]*)\))?"),
    # srun: error: n2: task 3: Segmentation fault / Exited with exit code 3
    re.compile(r"srun: error: (?P<host>[^:]+): task (?P<rank>\d+): "
               r"(?:Exited with exit code (?P<code>\d+)|(?P<name>.+))"),
    # Intel MPI: RANK 2 PID 123 RUNNING AT n2 / EXIT STATUS: 7
    re.compile(r"RANK (?P<rank>\d+) PID \d+ RUNNING AT (?P<host>\S+)\s+=\s+"
               r"(?:KILLED BY SIGNAL: (?P<signal>\d+) \((?P<name>[^)]*)\)|"
               r"EXIT STATUS: (?P<code>\d+))"),
)
# Open MPI 4: "Process name: [[54321,1],2]", Open MPI 5: "[prterun-vm-9145@1,2]"
_OMPI_EXIT = re.compile(r"Process name: \[(?:\[\d+,\d+\]|[^\]\s]*@\d+),(?P<rank>\d+)\]\s+"
                        r"Exit code:\s+(?P<code>\d+)")
# a node lost under a plain launcher, from the launcher's own words: Open MPI 5's
# "A daemon failed to report back ... Remote host: n2" (at start-up) and "PRTE has lost
# communication with a remote daemon. ... Remote daemon: [prterun-vm-1@0,2] on node n2"
# (later), Open MPI 4's "ORTE has lost communication with a remote daemon. ... Remote
# host: n2"
_LOST_NODE = re.compile(r"(?:daemon failed to report back|lost communication with a remote "
                        r"daemon).*?Remote (?:host:\s+|daemon:\s+\S+ on node )(?P<host>\S+)"
                        r"|downstream from host (?P<down>\S+) was killed", re.S)
# the keeper's own line (safety.keeper), the most exact of all
_KEEPER = re.compile(r"^mpidist: (?P<who>rank \d+/\d+ \(host [^)]*\)) died: (?P<how>.+)$", re.M)


def diagnose(lines: Iterable[str]) -> str:
    """A short account of how ranks died, from a launcher's output; "" if none."""
    text = "\n".join(lines)
    found = [f"{m['who']} died: {m['how']}" for m in _KEEPER.finditer(text)]
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            parts = match.groupdict()
            how = (f"exit code {parts['code']}" if parts.get("code")
                   else f"signal {parts['signal']} ({parts['name']})" if parts.get("signal")
                   else parts["name"])
            found.append(f"rank {match['rank']} (host {match['host'].strip()}) died: {how}")
    for match in _LOST_NODE.finditer(text):
        node = match["host"] or match["down"]
        found.append(f"node {node} was lost: its launcher daemon stopped answering")
    for match in _OMPI_EXIT.finditer(text):
        found.append(f"rank {match['rank']} exited with code {match['code']}")
    fault = re.search(r"^Fatal Python error:.*?(?=^Extension modules:|^-{20,}|\Z)", text,
                      re.M | re.S)
    if fault:
        found.append("its faulthandler output:\n" + fault.group(0).rstrip())
    return "\n".join(dict.fromkeys(found))
