"""What the launcher said about a rank that died (pure text parsing).

Rank 0 can tell that a rank stopped answering, but only the launcher knows
how it ended. ``mpidist run`` keeps the tail of the launcher's stderr and
pulls out which rank died, its exit code or signal, and the Python
faulthandler traceback a crashing rank printed, so the crashed test's report
says all of it.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["diagnose"]

_PATTERNS = (
    # Open MPI: mpirun noticed that process rank 2 with PID 0 on node vm exited on signal 11 (...)
    re.compile(r"process rank (?P<rank>\d+) with PID \d+ on node (?P<host>\S+) "
               r"exited on signal (?P<signal>\d+)(?: \((?P<name>[^)]*)\))?"),
    # srun: error: n2: task 3: Segmentation fault / Exited with exit code 3
    re.compile(r"srun: error: (?P<host>[^:]+): task (?P<rank>\d+): "
               r"(?:Exited with exit code (?P<code>\d+)|(?P<name>.+))"),
)
_OMPI_EXIT = re.compile(r"Process name: \[\[\d+,\d+\],(?P<rank>\d+)\]\s+Exit code:\s+(?P<code>\d+)")


def diagnose(lines: Iterable[str]) -> str:
    """A short account of how ranks died, from the launcher's stderr; "" if none."""
    text = "\n".join(lines)
    found: list[str] = []
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            how = (f"exit code {match['code']}" if match.groupdict().get("code")
                   else f"signal {match['signal']} ({match['name']})"
                   if match.groupdict().get("signal") else match["name"])
            found.append(f"rank {match['rank']} (host {match['host'].strip()}) died: {how}")
    for match in _OMPI_EXIT.finditer(text):
        found.append(f"rank {match['rank']} exited with code {match['code']}")
    fault = re.search(r"^Fatal Python error:.*?(?=^Extension modules:|^-{20,}|\Z)", text,
                      re.M | re.S)
    if fault:
        found.append("its faulthandler output:\n" + fault.group(0).rstrip())
    return "\n".join(dict.fromkeys(found))
