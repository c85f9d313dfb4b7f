"""``mpi4py``: a torch.distributed process group on mpi4py, for stock PyPI torch.

PyPI torch has no MPI backend (it needs a source build against your MPI).
This one is a Python ``ProcessGroup`` subclass registered with
``torch.distributed.Backend.register_backend``, so ``init_process_group
("mpi4py")``, ``new_group(backend="mpi4py")`` and every ``dist.*`` collective
work on CPU tensors. Split along its seams: ``ops`` (dtype and reduce-op
mapping), ``buffers`` (tensors as MPI buffers), ``work`` (async Work objects),
``group`` (the collectives and the registration).
"""

from __future__ import annotations

from .group import NAME, MPI4PyProcessGroup, register
from .work import MPIWork

__all__ = ["NAME", "MPI4PyProcessGroup", "MPIWork", "register"]
