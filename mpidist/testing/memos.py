"""DTensor's memos, forgotten where torch's runner would have changed process.

DTensor memoizes its plans: ``_redistribute._gen_transform_infos`` (the steps of a
redistribution, with the logical shape of *this rank's* shard) and the sharding
propagator's decisions, keyed by ``DTensorSpec``s whose ``DeviceMesh`` compares by
layout, device type and names -- not by rank, not by process group. A plan made on
rank 5 of a real 8-rank mesh is therefore handed to a local-tensor test (one process
simulating every rank with a fake group) on a mesh of the same shape, whose uneven shards
then get rank 5's sizes: torch's ``test_redistribute.py`` fails two local-tensor tests so
under persistent ranks ("Sizes of tensors must match", wrong values), and passes them
alone. torch's runner never meets this: a test of ranks runs in children that exit, a
local-tensor test in its own pytest process. mpidist's ranks run both, so when a rank
goes from one kind to the other (``switch``) the memos are dropped: what the new kind's
test sees is what a process that never ran the other kind would have. Between tests of
one kind nothing is dropped (torch's own process keeps its memos across local tests).
"""

from __future__ import annotations

import functools
import importlib
import sys

_PACKAGE = "torch.distributed.tensor"
_MEMO = type(functools.lru_cache(None)(lambda: None))  # what functools.cache makes too
_last: list[str] = [""]


def switch(kind: str) -> bool:
    """This rank's next test is of ``kind`` ("ranks": a real group's, "parent": torch's
    one-process local tensors); forget DTensor's memos if the last one was of the other
    kind. True when they were forgotten."""
    last, _last[0] = _last[0], kind
    if not last or last == kind or _PACKAGE not in sys.modules:
        return False
    forget()
    return True


def forget() -> None:
    """Clear every module-level ``functools`` cache of DTensor's modules and, through
    torch's own helper, the sharding propagator's caches."""
    for name, module in list(sys.modules.items()):
        if module is None or not (name == _PACKAGE or name.startswith(_PACKAGE + ".")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, _MEMO):
                value.cache_clear()
    try:
        debug = importlib.import_module(_PACKAGE + ".debug")
    except ImportError:
        return
    helper = getattr(debug, "_clear_sharding_prop_cache", None)
    if callable(helper):
        helper()
