"""Fail together: a local error on any rank becomes the same error on every rank.

Without this, one rank raising during a collective step leaves the others
waiting forever. Every step that can fail on some ranks only (bootstrap,
collection check, option parsing) reports through ``raise_together``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MpidistError

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["raise_together"]


def raise_together(
    comm: MPI.Comm,
    error: BaseException | None,
    kind: type[Exception] = MpidistError,
) -> None:
    """Collective: raise ``kind`` on every rank if ``error`` is set on any rank.

    The message is the lowest failing rank's error, prefixed with its rank and
    host (``rank 3/4 (host n2): ...``) when that is not rank 0, so rank 0 can
    print one line that names the culprit.
    """
    import socket

    local = "" if error is None else str(error) or type(error).__name__
    messages = comm.allgather(local)
    failing = [r for r, text in enumerate(messages) if text]
    if not failing:
        return
    first = failing[0]
    text = messages[first]
    if first != 0:
        host = comm.bcast(socket.gethostname() if comm.Get_rank() == first else None,
                          root=first)
        text = f"rank {first}/{comm.Get_size()} (host {host}): {text}"
    others = [r for r in failing[1:] if messages[r] != messages[first]]
    if others:  # the same error everywhere is one error; a different one is news
        text += f" [ranks {','.join(map(str, others))} failed differently]"
    raise kind(text) from error
