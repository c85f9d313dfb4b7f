"""Every exception mpidist raises, in one tree, so callers can catch by kind.

A usage error is the user's to fix (bad option, divergent collection); it is
printed once, by rank 0, as one line, and every rank exits with the same code.
A bootstrap error means the job could not be wired up (no MPI, unreachable
rank 0); its message names the fix.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "BootstrapError",
    "MpidistError",
    "UnsupportedCollective",
    "UsageError",
]


class MpidistError(Exception):
    """Base class of all mpidist errors."""


class UsageError(MpidistError):
    """Bad input from the user: an option, a marker, an environment variable."""


class BootstrapError(MpidistError):
    """The MPI world could not be turned into a torch.distributed world."""


class BackendUnavailableError(BootstrapError):
    """The requested torch.distributed backend is not in this torch build."""


class UnsupportedCollective(MpidistError, NotImplementedError):
    """mpidist's MPI process group cannot do this collective (the message says what to
    call instead). Under torch's test protocol the test is reported as skipped with it."""
