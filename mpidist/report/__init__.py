"""Making the one report: what becomes of each rank's results once they reach the root.

``results`` (a rank's result, the marks reports carry) -> ``codec`` (a result as JSON
bytes and a fixed-size ``Record``, never pickle) -> ``merge`` (one report per phase:
a test fails if it failed on any rank, with its ranks and hosts), helped by
``failures`` (every synthesized failure: hangs, deaths, a rank that left) and
``grouping`` (ranks whose texts differ only in numbers, addresses and host names
printed once) -> ``replay`` (into pytest's logging hooks, so every reporter sees one
test once) -> ``rank_texts`` (each rank's own text, kept where the user asked).
``output`` decides who owns the terminal: rank 0; ranks > 0 are silent or prefixed.
Pure logic except ``output``: no MPI, no torch.
"""
