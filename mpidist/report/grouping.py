"""Failures grouped by what they have in common, so a report is a page at any scale.

A failure whose text differs from rank to rank only in its numbers -- the rank in the
message, a value computed from it, an object's address in a repr, a host name --
is one failure seen 128 times, not 128 failures. Each text is cut into a skeleton
(what stays) and slots (hex addresses, numbers, the world's host names); ranks whose
skeletons are equal form one group, shown once: the first rank's full text, then the
lines whose slots differ between the ranks, each slot replaced by a summary of its
values (``rank {0-127} sees a value of {0, 7, 14, … 889}``). Identical texts are the
special case of no differing slot. The texts left out are kept whole by the caller
(``details``): nothing is lost, only not printed.

Pure: no MPI, no torch.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Sequence

from ..bootstrap.world import format_ranks

__all__ = ["TextGroup", "group_texts", "summarize"]

_SLOT = r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?"
#: shown per group: the lines whose values differ between the ranks, at most this many
MAX_LINES = 6
#: a value set is listed whole up to this size, else first values, …, last
_LISTED = 6


@dataclass
class TextGroup:
    """Ranks whose texts share a skeleton.

    Attributes:
        ranks: the ranks, ascending; ``ranks[0]``'s text is the one shown.
        texts: each rank's text (the caller keeps those that differ).
        differs: the first text's lines whose slots differ between the ranks, each
            slot that differs replaced by its summary (``summarize``).
    """

    ranks: list[int]
    texts: dict[int, str]
    differs: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return len(set(self.texts.values())) == 1


def _pattern(hosts: Sequence[str]) -> re.Pattern[str]:
    names = sorted({h for h in hosts if h}, key=len, reverse=True)
    host = "|".join(rf"\b{re.escape(h)}\b" for h in names)
    return re.compile(f"(?:{host})|{_SLOT}" if host else _SLOT)


def _split(text: str, pattern: re.Pattern[str]) -> tuple[str, list[str]]:
    """The skeleton (each slot a NUL) and the slots' values, in order."""
    values = pattern.findall(text)
    return pattern.sub("\0", text), values


def group_texts(texts: dict[int, str], hosts: Sequence[str] = ()) -> list[TextGroup]:
    """Group ``texts`` (rank -> text) by skeleton, in order of each group's first rank.
    ``hosts``: the world's host names, masked like numbers."""
    pattern = _pattern(hosts)
    by_skeleton: dict[str, list[tuple[int, list[str]]]] = {}
    for rank in sorted(texts):
        skeleton, values = _split(texts[rank], pattern)
        by_skeleton.setdefault(skeleton, []).append((rank, values))
    groups = []
    for skeleton, members in by_skeleton.items():
        group = TextGroup([r for r, _ in members], {r: texts[r] for r, _ in members})
        if not group.identical:
            group.differs = _differing_lines(skeleton, members)
        groups.append(group)
    return groups


def _differing_lines(skeleton: str, members: list[tuple[int, list[str]]]) -> list[str]:
    """The skeleton's lines that hold a slot whose value differs between members."""
    columns = list(zip(*(values for _, values in members), strict=True))
    ranks = [r for r, _ in members]
    shown, slot = [], 0
    lines = skeleton.split("\n")
    for line in lines:
        parts = line.split("\0")
        out, differs = [parts[0]], False
        for part in parts[1:]:
            column = columns[slot]
            slot += 1
            if len(set(column)) > 1:
                differs = True
                out.append(summarize(column, ranks))
            else:
                out.append(column[0])
            out.append(part)
        if differs:
            shown.append("".join(out).rstrip())
    if len(shown) > MAX_LINES:
        more = len(shown) - MAX_LINES
        shown = [*shown[:MAX_LINES], f"(and {more} more line{'s' if more > 1 else ''})"]
    return shown


def summarize(values: Sequence[str], ranks: Sequence[int] = ()) -> str:
    """One slot's values across ranks, in braces: the ranks themselves as ranges
    (``{0-127}``), a few values listed, an arithmetic run as ``{0, 7, 14, … 889}``,
    else the first values, the last and how many; addresses and names by count."""
    distinct = sorted(set(values), key=_order)
    if all(v.isdigit() for v in values):
        numbers = [int(v) for v in values]
        if numbers == list(ranks):  # each rank's own number
            return "{" + format_ranks(numbers) + "}"
        ints = sorted(set(numbers))
        if len(ints) <= _LISTED:
            return "{" + ", ".join(map(str, ints)) + "}"
        steps = {b - a for a, b in itertools.pairwise(ints)}
        head = ", ".join(map(str, ints[:3]))
        if len(steps) == 1:
            return "{" + f"{head}, … {ints[-1]}" + "}"
        return "{" + f"{head}, … {ints[-1]}" + f"}} ({len(ints)} distinct)"
    if len(distinct) <= 3:
        return "{" + ", ".join(distinct) + "}"
    kind = ("addresses" if all(v.startswith("0x") for v in distinct) else
            "values" if all(_is_number(v) for v in distinct) else "names")
    if kind == "values":
        return f"{{{len(distinct)} values, {distinct[0]} to {distinct[-1]}}}"
    return f"{{{len(distinct)} {kind}}}"


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:\.\d+)?", text))


def _order(text: str) -> tuple[int, float, str]:
    return (0, float(text), "") if _is_number(text) else (1, 0.0, text)
