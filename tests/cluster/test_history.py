"""The history across namespace nodes: a test that fails only on one node is named as
that node's problem, and `mpidist validate` names a link slower than its own past that
the cluster's own median does not see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import pytest

from ..mpijob import job_env
from .test_validate import validate

SUITE = '''
import os, socket
import torch.distributed as dist

def test_fine():
    dist.barrier()

def test_on_a_bad_node():
    dist.barrier()
    assert not (os.path.exists("fail-now") and socket.gethostname() == "{bad}"), "bad node"
'''


def test_failures_on_one_node_are_concentrated_there(ns_cluster, job):
    bad = ns_cluster.hosts[1][0]
    job.write("test_n.py", SUITE.replace("{bad}", bad))
    (job.path / "fail-now").touch()
    assert ns_cluster.run(job, [2, 2], "--mpi-history=h.sqlite", timeout=180).returncode == 1
    (job.path / "fail-now").unlink()
    assert ns_cluster.run(job, [2, 2], "--mpi-history=h.sqlite", timeout=180).returncode == 0
    out = subprocess.run([sys.executable, "-m", "mpidist.cli", "history", "flaky", "--file",
                          "h.sqlite"], cwd=job.path, env=job_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"test_n.py::test_on_a_bad_node: failed in 1 of 2 runs ({bad} 1) - concentrated on "
        f"host {bad}: 1 of 1 failures there; passed in 1 runs with it, 0 without it"]
    nodes = subprocess.run([sys.executable, "-m", "mpidist.cli", "history", "nodes", "--file",
                            "h.sqlite", "--json"], cwd=job.path, env=job_env(),
                           capture_output=True, text=True, timeout=60)
    ranked = json.loads(nodes.stdout)
    assert ranked[0] == {"host": bad, "failures": 1, "tests": 1, "runs": 2}
    assert ranked[1]["failures"] == 0


P2P = ["--checks", "links", "--p2p-bytes", "8M"]


@contextmanager
def rate_limited(node: str, mbit: int) -> Iterator[None]:
    """Traffic towards ``node`` at ``mbit`` Mbit/s, with tbf (this kernel has no netem).
    At Gbit/s a token bucket smaller than what a late timer lets through starves the link
    on a busy box, so the bucket holds 2 ms at the rate, and the messages are 8 MiB
    (``P2P``): most of each is paced at the rate, not sent from the bucket."""
    dev = f"v{node}"
    burst = max(256 * 1024, int(mbit * 1e6 / 8 * 0.002))
    subprocess.run(["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit",
                    "burst", str(burst), "latency", "400ms"], check=True)
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def test_validate_names_a_link_slower_than_its_own_past(ns_cluster, make_job):
    """A first run is the past; then one node is slowed to half of what its links
    gave. Its two links are now the cluster's median (the third link is the fast one), so
    the cluster's own rule (below half the median) sees nothing; against their own history
    (below 0.8 of their median) they are named, as the node they share."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("measures bandwidth against an earlier run: it needs the box to itself, "
                    "not beside other pytest-xdist workers; run it alone (.ci/run does): "
                    "pytest tests/cluster/test_history.py")
    job = make_job("validate_history")
    hist = str(job.path / "h.sqlite")
    result, first = validate(ns_cluster, job, *P2P, "--history", hist)
    assert result.returncode == 0, result.stdout[-3000:]
    assert first["history"]["below"] == [] and first["history"]["earlier_runs"] == 0
    slow = ns_cluster.hosts[2][0]
    gbps = min(first["links"]["bandwidth_gbps"][0][2], first["links"]["bandwidth_gbps"][1][2])
    healthy = f"{ns_cluster.hosts[0][0]}<->{ns_cluster.hosts[1][0]}"
    factor = 0.4
    for attempt in range(4):
        # each attempt against the first run alone: a rejected attempt recorded in the
        # history would pull its median down (seen: the shaped link at 79% of a median
        # of the first run and a whole-box-slow one)
        again = str(job.path / f"h{attempt}.sqlite")
        shutil.copyfile(hist, again)
        with rate_limited(slow, int(gbps * 8000 * factor)):
            result, second = validate(ns_cluster, job, *P2P, "--history", again)
        below = second["history"]["below"]
        # Two time-shared cores shape and measure unevenly under load: a whole run may
        # measure every link at half its usual figure (seen: the untouched link at 42% of
        # its history), or the shaping may overshoot below a third of the other links,
        # where the cluster's own rule names the node. Neither is the case under test: a
        # run where the untouched link is off its history is done again, and one where
        # the shaping overshot is done again at a higher rate (at most four runs).
        if second["suspects"]:
            factor *= 1.4
        elif not any(healthy in b["why"] for b in below):
            break
    assert result.returncode == 1
    assert second["suspects"] == [], "the cluster's own median sees nothing"
    assert second["verdict"] == "unhealthy"
    assert [(b["kind"], b["name"]) for b in below] == [("node", slow)], below
    result.lines.fnmatch_lines([f"*below its own history: node {slow}: every one of its "
                                f"links is below its own history: *"])
