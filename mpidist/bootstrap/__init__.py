"""Bootstrap: from mpi4py's COMM_WORLD to a described world, an address and a store.

``world`` (rank, node, hosts), ``netif`` (which address reaches rank 0),
``store`` (rank 0's TCPStore and torchrun's variables), ``agree`` (fail on
every rank at once), ``probes`` (what the node has), ``slurm`` (does Slurm
agree) and ``settings`` (the one table of options). Nothing here imports the
layers above.
"""
