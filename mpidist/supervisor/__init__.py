"""Supervisor: ``mpidist run``, a job that survives the tests that kill it.

``journal`` (the durable record of finished tests), ``recorder`` (the pytest
plugin with which rank 0 writes it), ``relaunch`` (start the launcher again on
the tests not done), ``launchers`` (what each launcher says when a rank dies)
and ``replay`` (the journal back through pytest's reporters). The supervising
process imports neither mpi4py nor torch.
"""
