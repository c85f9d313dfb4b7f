"""The pytest session under ``--with-mpi``: where every stage is wired together.

``plugin`` is the pytest entry point (inert without ``--with-mpi``: no mpi4py, no
torch) -> ``session`` bootstraps the world, starts the watchdog, registers the
runner's pipeline, the report's rank texts, placement's packer, isolation and the
other plugins' shims, and ends the job with one exit code -> ``collection`` makes
every rank hold rank 0's selection and order (and rank 0's cache state).
"""
