"""Placing sized tests: tests of k ranks side by side on disjoint groups of ranks.

``sizes`` reads each test's size (``mpi(ranks=k)``, ``parallel(nprocs=k)``, a torch
class's ``world_size``, ``--mpi-serial=spread``) -> ``planner`` cuts the world into
groups, node-aware, in phases from the largest size down -> ``scheduler`` (rank 0)
hands tests to groups as they ask, longest first -> ``subworld`` gives a group its own
world (communicator, store prefix, torch's default group, torchrun's variables) ->
``packing`` runs the phases through the runner's per-test pipeline and sends each
group's merged result to rank 0.
"""
