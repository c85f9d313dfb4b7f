"""Per-test isolation on warm ranks: ``--mpi-isolate`` and ``mpi(isolate=True)``.

Each rank forks a *template* before ``MPI_Init`` (``template.fork``); the template
is the same pytest process minus MPI: it collects the tests once, then forks one
child per isolated test (``child``), which starts its own process group through
mpidist's TCPStore, runs the test and exits. The rank (``rank``) keeps MPI and
does the agreement, exchange, merge and report as for any test, from the reports
its child sent or from how the child died.

``wire`` frames the messages between the rank and its template (JSON, a local
socket pair: nothing here crosses the network).
"""
