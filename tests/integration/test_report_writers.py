"""Plugins that write a file of the session, under real mpirun: one file, written by
rank 0 from the merged results (mpidist/plugins/writers.py).

pytest-html, pytest-reportlog and pytest-json-report from PyPI, pytest's own
``--log-file``, a conftest plugin mpidist has never heard of that follows
pytest-xdist's convention, and expecttest's ``EXPECTTEST_ACCEPT=1``. One job writes
every report; expecttest has its own.
"""

from __future__ import annotations

import json
import re

import pytest

# these jobs prove mpidist beside the plugins of docs/plugins.md, installed from PyPI
pytestmark = pytest.mark.autoload

SUITE = '''
import logging

import pytest
import torch.distributed as dist


@pytest.mark.parametrize("i", range(12))
def test_passes(i):
    dist.barrier()


def test_fails_on_rank_1():
    logging.getLogger("suite").warning("rank %d was here", dist.get_rank())
    dist.barrier()
    assert dist.get_rank() != 1, "rank 1 disagrees"
'''

# A plugin mpidist never heard of, written as plugins are for pytest-xdist: it writes
# its file at the end of the session unless it is a worker. Each writer adds a line.
CONFTEST = '''
class Summary:
    def __init__(self):
        self.outcomes = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.outcomes.append(report.outcome)

    def pytest_sessionfinish(self, session):
        with open("summary.txt", "a") as f:
            f.write(f"{self.outcomes.count('passed')} passed, "
                    f"{self.outcomes.count('failed')} failed\\n")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Summary(), "summary")
'''


@pytest.fixture(scope="module")
def reports(make_job):
    for plugin in ("pytest_html", "pytest_reportlog", "pytest_jsonreport"):
        pytest.importorskip(plugin)
    job = make_job("writers")
    job.write("test_w.py", SUITE)
    job.write("conftest.py", CONFTEST)
    result = job.run(3, "--html=report.html", "--self-contained-html",
                     "--report-log=log.jsonl", "--json-report",
                     "--json-report-file=report.json", "--log-file=run.log", timeout=180)
    assert result.returncode == 1, result.stdout
    result.lines.fnmatch_lines(["*= 1 failed, 12 passed in *"])
    return job, result


def test_html_counts_every_test_once(reports):
    job, _ = reports
    html = (job.path / "report.html").read_text()
    assert re.search(r"\b12 Passed", html) and re.search(r"\b1 Failed", html), html[:2000]
    assert "rank 1/3 (host " in html and "rank 1 disagrees" in html


def test_report_log_parses_and_holds_each_call_once(reports):
    job, _ = reports
    entries = [json.loads(line) for line in
               (job.path / "log.jsonl").read_text().splitlines()]  # a corrupt line raises
    calls = [e for e in entries if e.get("$report_type") == "TestReport"
             and e["when"] == "call"]
    assert len(calls) == 13 and len({e["nodeid"] for e in calls}) == 13
    assert sum(e["$report_type"] == "SessionStart" for e in entries) == 1
    failed = next(e for e in calls if e["outcome"] == "failed")
    assert "rank 1/3 (host " in json.dumps(failed["longrepr"])


def test_json_report_counts_the_merged_results(reports):
    job, _ = reports
    data = json.loads((job.path / "report.json").read_text())
    assert data["summary"]["passed"] == 12 and data["summary"]["failed"] == 1
    assert data["summary"]["total"] == 13 and len(data["tests"]) == 13
    failed = next(t for t in data["tests"] if t["outcome"] == "failed")
    assert "rank 1/3 (host " in json.dumps(failed["call"])


def test_a_plugin_mpidist_never_heard_of_writes_once(reports):
    job, _ = reports
    assert (job.path / "summary.txt").read_text() == "12 passed, 1 failed\n"


def test_the_log_file_is_rank_0s(reports):
    job, _ = reports
    log = (job.path / "run.log").read_text()
    assert "rank 0 was here" in log and "rank 1 was here" not in log, log


def test_nothing_else_lands_beside_them(reports):
    job, _ = reports
    written = {p.name for p in job.path.iterdir()} - {"test_w.py", "conftest.py", "pytest.ini"}
    assert {n for n in written if not n.startswith("junit-")} == {
        "report.html", "log.jsonl", "report.json", "summary.txt", "run.log"}


EXPECT = '''
import time

import expecttest
import torch.distributed as dist


class TestExpect(expecttest.TestCase):
    def test_inline(self):
        if dist.get_rank():
            time.sleep(1)  # rank 0 accepts first; a later writer would replace it
        self.assertExpectedInline(f"rank {dist.get_rank()}", """old""")
'''


def test_expecttest_accept_rewrites_the_source_once_from_rank_0(job):
    pytest.importorskip("expecttest")
    source = job.write("test_expect.py", EXPECT)
    result = job.run(3, "-s", "--mpi-rank-output", timeout=120, env={"EXPECTTEST_ACCEPT": "1"})
    assert result.returncode == 0, result.stdout
    assert '"""rank 0"""' in source.read_text()
    assert result.stdout.count("Accepting new output") == 1  # every rank shows its output
