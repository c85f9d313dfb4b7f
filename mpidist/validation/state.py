"""What the checks found, kept on rank 0 until the session writes it out."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["RESULTS", "reset"]

RESULTS: dict[str, Any] = {}


def reset() -> None:
    RESULTS.clear()
    RESULTS.update(inventory={}, correctness=[], bandwidth=[], links=None, suspects=[],
                   checks=[], files=[], started=time.time())


reset()
