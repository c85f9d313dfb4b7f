"""Each rank's own text of a failure the report grouped: kept whole, not printed.

The report shows a failure seen on many ranks once, the values that differ
summarised (``grouping``); the merge keeps every other rank's text on the merged
report (``results.RANK_TEXTS``). Rank 0 writes them where ``--mpi-rank-texts``
says: the test's ``system-err`` in the JUnit file (default), or one file per rank
under a directory (``<dir>/<test>/<rank>.txt``). With the default and no JUnit
file, they go to a directory too, and the summary names it: a text is never lost,
only not printed.
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport

from .results import RANK_TEXTS

__all__ = ["RankTexts"]


def _safe(name: str) -> str:
    """A file name from a node id or a rank's label."""
    return re.sub(r"[^\w.\-\[\]]+", "_", name).strip("_")[:150] or "_"


class RankTexts:
    """Rank 0's writer of the ranks' own texts (``target``: ``junit`` or a directory)."""

    def __init__(self, config: pytest.Config, target: str) -> None:
        self.config = config
        self.target = target
        self.tests = 0
        self.directory: Path | None = None if target == "junit" else Path(target)

    @pytest.hookimpl(trylast=True)  # after junitxml made the test's node
    def pytest_runtest_logreport(self, report: TestReport) -> None:
        texts: dict[str, str] | None = getattr(report, RANK_TEXTS, None)
        if not texts:
            return
        self.tests += 1
        if self.target == "junit":
            from _pytest.junitxml import bin_xml_escape, xml_key

            xml = self.config.stash.get(xml_key, None)
            if xml is not None:
                node = ET.Element("system-err")
                node.text = bin_xml_escape("\n".join(f"[{label}]\n{text.rstrip()}\n"
                                                     for label, text in texts.items()))
                xml.node_reporter(report).append(node)
                return
        folder = self._folder() / _safe(report.nodeid)
        folder.mkdir(parents=True, exist_ok=True)
        for label, text in texts.items():
            (folder / f"{_safe(label)}.txt").write_text(text)

    def _folder(self) -> Path:
        if self.directory is None:  # junit asked for, and no JUnit file is written
            cache: Any = getattr(self.config, "cache", None)
            self.directory = (Path(cache.mkdir("mpidist-rank-texts")) if cache is not None
                              else Path(tempfile.mkdtemp(prefix="mpidist-rank-texts-")))
        return self.directory

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests:
            return
        where = ("the JUnit file (each test's system-err)" if self.directory is None
                 else str(self.directory))
        terminalreporter.write_line(
            f"mpidist: {self.tests} failure report(s) grouped ranks whose texts differ; "
            f"each rank's own text is in {where}")
