"""``mpidist validate``: is the cluster healthy, and if not, which node or link is bad.

This package is a pytest suite run under ``--with-mpi`` on every rank
(``mpirun -n N python -m pytest --with-mpi --pyargs mpidist.validation``, or
``mpidist validate``): inventory, collective correctness on every backend,
bandwidth sweeps (nccl-tests' busbw), and node-to-node links with
localisation. Rank 0 writes one JSON file with every number and a node x
node heatmap, and prints a verdict; the exit status is the verdict.

Pure parts: ``stats`` (formulas, robust outliers, suspects), ``inventory.compare``,
``config``; ``measure`` times things over MPI; ``report`` writes the files.
"""
