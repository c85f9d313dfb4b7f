"""Validation settings, from ``MPIDIST_VALIDATE_*`` variables (``mpidist validate``
sets them from its flags; the pytest route reads the same ones)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Config", "parse_expect", "parse_fraction", "parse_sizes"]

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all")


def parse_sizes(text: str) -> list[int]:
    """``"4K,1M,64M"`` -> bytes; each size must be positive."""
    sizes = []
    for part in text.split(","):
        part = part.strip().upper().removesuffix("B")
        if not part:
            continue
        try:
            size = int(part[:-1]) * UNITS[part[-1]] if part[-1] in UNITS else int(part)
        except (ValueError, KeyError):
            raise ValueError(f"bad size {part!r} (examples: 4096, 64K, 16M)") from None
        if size <= 0:
            raise ValueError(f"size must be positive, got {part!r}")
        sizes.append(size)
    if not sizes:
        raise ValueError("no sizes given")
    return sizes


def parse_expect(text: str) -> dict[str, float]:
    """``"all_reduce=90,all_gather=40"`` -> expected busbw (GB/s) per collective."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in COLLECTIVES:
            raise ValueError(f"bad --expect-busbw entry {part!r}: use COLLECTIVE=GBPS with "
                             f"COLLECTIVE one of {', '.join(COLLECTIVES)}")
        out[name] = float(value)
    return out


def parse_fraction(text: str) -> float:
    """``--history-fraction``: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad --history-fraction {text!r}: a number in (0, 1]") from None
    if not 0 < value <= 1:
        raise ValueError(f"bad --history-fraction {text!r}: a number in (0, 1]")
    return value


@dataclass(frozen=True)
class Config:
    """What to measure and where to write it."""

    json_path: str = "mpidist-validate.json"
    heatmap_path: str = "mpidist-validate.png"
    sizes: list[int] = field(default_factory=lambda: parse_sizes("4K,256K,4M"))
    warmup: int = 2
    iters: int = 5
    expect_busbw: dict[str, float] = field(default_factory=dict)
    expect_p2p: float | None = None
    p2p_bytes: int = 1 << 20
    #: a link below this fraction of its own median over earlier runs is named
    history_fraction: float = 0.8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(f"MPIDIST_VALIDATE_{name}", "")

        default = cls()
        expect_p2p = get("EXPECT_P2P")
        return cls(
            json_path=get("JSON") or default.json_path,
            heatmap_path=get("HEATMAP") or default.heatmap_path,
            sizes=parse_sizes(get("SIZES")) if get("SIZES") else default.sizes,
            warmup=int(get("WARMUP") or default.warmup),
            iters=max(1, int(get("ITERS") or default.iters)),
            expect_busbw=parse_expect(get("EXPECT_BUSBW")),
            expect_p2p=float(expect_p2p) if expect_p2p else None,
            p2p_bytes=parse_sizes(get("P2P_BYTES"))[0] if get("P2P_BYTES")
            else default.p2p_bytes,
            history_fraction=parse_fraction(get("HISTORY_FRACTION") or "0.8"),
        )
