"""Runner: every rank runs each test, rank 0 prints one merged report.

``plugin`` (the pytest entry, inert without ``--with-mpi``) -> ``session``
(hooks only) -> ``collection`` (every rank holds rank 0's selection) ->
``pipeline`` (one test on a ``group`` of ranks) -> ``exchange`` (records and
payloads to the group's root) -> ``merge`` (one report per phase) ->
``replay`` (into pytest's logging hooks). ``failures`` builds every synthesized
failure; ``output`` silences ranks > 0.
"""
