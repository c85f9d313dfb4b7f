"""Results that outlive the run: a local history of every test, rank, host and link.

``store`` is the SQLite file (schema, upgrades, one transaction per run) -> ``recorder``
(rank 0 adds each run's merged results at the session's end) -> ``queries`` (flaky tests
and where they fail, slow tests and straggler hosts, hosts ranked by failures, a test's
runs) for ``mpidist history``; placement reads the durations (longest first) and
``mpidist validate`` judges each node and link against its own past.
"""
