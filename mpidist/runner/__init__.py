"""Running one test on a group of ranks: the per-test pipeline.

``pipeline`` (one test on a ``group`` of ranks, nothing logged until the root has every
result) -> ``agreement`` (the ranks agree on running the body) -> ``exchange``
(records and payloads to the group's root, the root's verdict back). ``markers`` reads
what a test's marks ask (its limit, isolation), ``held`` keeps reports pytest would log
mid-test, ``reruns`` and ``stops`` make ``--reruns`` and ``-x`` collective, ``sticky``
carries a poisoned CUDA context to the rank's later tests, ``fixtures`` gives tests
``mpi_comm``, ``mpi_world`` and ``mpi_tmp_path``. What becomes of the results is the
report's (``mpidist.report``).
"""
