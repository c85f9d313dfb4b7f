"""Backends: which torch.distributed process groups exist and how to start one.

``registry`` names every backend mpidist can start (gloo, nccl, ucc, mpi,
mpi4py) and starts the default group; ``mpi4py`` is mpidist's own MPI process
group for PyPI torch, which has no MPI backend.
"""
