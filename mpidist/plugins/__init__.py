"""Other pytest plugins under ``--with-mpi``: one writer, one draw.

``writers`` makes ranks > 0 what pytest-xdist's workers are to every plugin that
knows xdist, and points their session-end files away from the user's paths, so a
report file, a log, a cache or a database is written once, by rank 0, from the merged
results. ``draws`` agrees on what is random and decides what a test does
(hypothesis's seed and example database). ``examples`` keeps the ranks in step
example by example inside a hypothesis test, and ends a divergence as one named
failure. ``companions`` reads other plugins' options and markers (pytest-timeout,
pytest-forked) as mpidist's own settings, and refuses in one line what cannot work.
"""
