"""The default torch.distributed process group, from a World and a store.

Backends live in a registry: each entry says how to tell whether this torch
build has it, so an explicit request fails with a message naming what is
missing (``this torch build (2.13.0+cpu) has no NCCL``) instead of torch's
generic error deep inside ``init_process_group``. ``auto`` means NCCL when
this rank's node has a CUDA device for it, else gloo; the CUDA device is
``local_rank % device_count``, as torchrun users expect. ``mpi`` means
torch's own MPI backend when this build has one, else ``mpi4py``
(``mpi4py_pg``: mpidist's process group on mpi4py, for stock PyPI torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Callable

from ..bootstrap.probes import cuda_devices
from ..bootstrap.world import World
from ..errors import BackendUnavailableError, UsageError

if TYPE_CHECKING:
    from torch.distributed import Store  # type: ignore[attr-defined]  # no __all__ entry

__all__ = ["BACKENDS", "Backend", "init_default_group", "nccl_obstacle", "resolve_backend"]


@dataclass(frozen=True)
class Backend:
    """A torch.distributed backend mpidist can start.

    Attributes:
        name: torch's name for it.
        available: whether this torch build has it.
        needs_cuda: whether every rank needs a CUDA device.
        hint: what to do when it is missing.
    """

    name: str
    available: Callable[[], bool]
    needs_cuda: bool
    hint: str


def _dist_has(attr: str) -> Callable[[], bool]:
    def check() -> bool:
        import torch.distributed as dist

        return bool(getattr(dist, attr)())

    return check


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Add a backend; names are unique."""
    if backend.name in BACKENDS:
        raise ValueError(f"backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend


register_backend(Backend("gloo", _dist_has("is_gloo_available"), False,
                         "every PyPI build of torch has gloo"))
register_backend(Backend("nccl", _dist_has("is_nccl_available"), True,
                         "install a CUDA build of torch on a machine with NVIDIA GPUs"))
register_backend(Backend("ucc", _dist_has("is_ucc_available"), False,
                         "build torch with USE_UCC=1"))
def _torch_has_mpi() -> bool:
    """torch's own MPI backend (not mpidist's stand-in for it, ``mpi4py.stand_in``)."""
    from .mpi4py import stand_in

    return not stand_in.installed() and _dist_has("is_mpi_available")()


register_backend(Backend("mpi", _torch_has_mpi, False,
                         "build torch from source against your MPI (USE_MPI=1)"))
register_backend(Backend("mpi4py", lambda: True, False, "mpidist's MPI process group"))

CHOICES = ("auto", "none", *BACKENDS)


def nccl_obstacle(world: World, devices: int, has_nccl: bool) -> str | None:
    """Why this rank cannot run NCCL (None: it can): for ``auto``, decided per rank and
    then across ranks, since every rank must pick the same backend. NCCL refuses two
    ranks on one device, so a node needs a GPU per rank."""
    if not has_nccl:
        return "this torch build has no NCCL"
    if devices == 0:
        return f"no CUDA device on host {world.hostname}"
    if world.local_size > devices:
        return (f"{world.local_size} ranks share {devices} GPU(s) on host {world.hostname}; "
                "NCCL needs one GPU per rank")
    return None


def resolve_backend(requested: str, world: World) -> str | None:
    """Map ``none`` or a backend's name to the backend to start, or None for no group.
    (``auto`` is decided across ranks by ``runtime.init``, from ``nccl_obstacle``.)

    Raises:
        UsageError: unknown name.
        BackendUnavailableError: this torch build lacks it, or it needs a GPU
            and there is none.
    """
    name = requested.strip().lower()
    if name == "none":
        return None
    if name == "auto":
        raise ValueError("auto is decided across ranks, by mpidist.runtime.init")
    if name == "mpi" and not BACKENDS["mpi"].available():
        return "mpi4py"  # stock torch: our MPI process group (the header says so)
    if name not in BACKENDS:
        raise UsageError(
            f"unknown backend {requested!r}; choose one of {', '.join(CHOICES)}"
        )
    backend = BACKENDS[name]
    if not backend.available():
        import torch

        raise BackendUnavailableError(
            f"this torch build ({torch.__version__}) has no {name.upper()} "
            f"backend: {backend.hint}, or use --mpi-backend gloo"
        )
    if backend.needs_cuda and cuda_devices() == 0:
        raise BackendUnavailableError(
            f"backend {name} needs a CUDA device and {world.describe(world.rank)} "
            "sees none; use --mpi-backend gloo"
        )
    return name


def init_default_group(
    backend: str, world: World, store: Store, timeout: float, generation: int = 0,
    prefix: str = "",
) -> None:
    """Initialise torch's default process group on ``store`` (collective).

    ``generation`` counts re-initialisations in one job: each uses its own key
    prefix, since torch names every default group the same and stale
    rendezvous keys of a destroyed group would otherwise be read back;
    ``prefix`` keeps packed groups that run at the same time apart.
    """
    import torch
    import torch.distributed as dist

    if generation or prefix:
        from torch._C._distributed_c10d import PrefixStore

        store = PrefixStore(f"mpidist/{prefix}pg{generation}", store)
    device_id = None
    if BACKENDS[backend].needs_cuda:
        device_id = torch.device("cuda", world.local_rank % cuda_devices())
        torch.cuda.set_device(device_id)
    dist.init_process_group(
        backend,
        store=store,
        rank=world.rank,
        world_size=world.size,
        timeout=timedelta(seconds=timeout),
        device_id=device_id,
    )
