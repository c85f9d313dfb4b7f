"""``mpi4py``: a torch.distributed process group on mpi4py, for stock PyPI torch.

PyPI torch has no MPI backend (it needs a source build against your MPI).
This one is a Python ``ProcessGroup`` subclass registered with
``torch.distributed.Backend.register_backend``, so ``init_process_group
("mpi4py")``, ``new_group(backend="mpi4py")`` and every ``dist.*`` collective
work on CPU tensors. Split along its seams: ``ops`` (dtype and reduce-op
mapping), ``buffers`` (tensors as MPI buffers), ``work`` (async Work objects),
``group`` (the collectives and the registration).

The names load on first use (PEP 562), so that ``stand_in``, which the runner
tells each test's world, can be imported without torch or MPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .group import NAME, MPI4PyProcessGroup, register
    from .work import MPIWork

__all__ = ["NAME", "MPI4PyProcessGroup", "MPIWork", "register"]
_HOMES = {"NAME": "group", "MPI4PyProcessGroup": "group", "register": "group",
          "MPIWork": "work"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
