"""Print CI's MPI x outcome table from the JUnit files the legs wrote (.ci/run)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(path: Path) -> tuple[int, int, int]:
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main(argv: list[str]) -> int:
    print(f"{'leg':<58} {'passed':>7} {'failed':>7} {'skipped':>8}")
    bad = 0
    for spec in argv:
        title, _, file = spec.partition("=")
        path = Path(file)
        if not path.exists():
            print(f"{title:<58} {'no JUnit file':>24}")
            bad += 1
            continue
        p, f, s = counts(path)
        bad += f
        print(f"{title:<58} {p:>7} {f:>7} {s:>8}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
