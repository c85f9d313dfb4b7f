"""Across namespace nodes under real mpirun: bootstrap, collectives, report, tmp paths."""

from __future__ import annotations

import pytest

from ..mpijob import launcher

SUITE = '''
import ipaddress
import json
import os
import socket

import torch
import torch.distributed as dist

LAYOUT = json.load(open("layout.json"))


def test_world_layout(mpi_world):
    me = LAYOUT["ranks"][mpi_world.rank]
    assert socket.gethostname() == me["host"] == mpi_world.hostname
    assert mpi_world.node_rank == me["node_rank"]
    assert mpi_world.local_rank == me["local_rank"]
    assert mpi_world.local_size == me["local_size"]
    assert mpi_world.num_nodes == LAYOUT["nodes"]
    assert os.environ["LOCAL_RANK"] == str(me["local_rank"])
    assert os.environ["LOCAL_WORLD_SIZE"] == str(me["local_size"])
    assert os.environ["GROUP_RANK"] == str(me["node_rank"])
    assert list(mpi_world.hosts) == [r["host"] for r in LAYOUT["ranks"]]


def test_master_addr_is_rank0s_node_address():
    # Nobody told mpidist which interface to use: it found the route itself.
    assert "MPIDIST_IFNAME" not in os.environ
    assert os.environ["MASTER_ADDR"] == LAYOUT["master"]
    assert not ipaddress.ip_address(os.environ["MASTER_ADDR"]).is_loopback
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth0"  # chosen so gloo reaches rank 0


def test_gloo_collectives_across_nodes(mpi_world):
    t = torch.full((8,), float(mpi_world.rank + 1))
    dist.all_reduce(t)
    n = mpi_world.size
    assert t.tolist() == [n * (n + 1) / 2] * 8
    gathered = [torch.zeros(2) for _ in range(n)]
    dist.all_gather(gathered, torch.tensor([float(mpi_world.rank), float(mpi_world.node_rank)]))
    assert [g.tolist() for g in gathered] == [
        [float(r), float(LAYOUT["ranks"][r]["node_rank"])] for r in range(n)]


def test_fails_on_the_last_nodes_first_rank(mpi_world):
    last = mpi_world.node_rank == mpi_world.num_nodes - 1 and mpi_world.local_rank == 0
    assert not last, f"broken on {socket.gethostname()}"


def test_mpi_tmp_path_is_per_node(mpi_tmp_path, mpi_world):
    (mpi_tmp_path / f"r{mpi_world.rank}").write_text(socket.gethostname())
    dist.barrier()
    mine = sorted(p.name for p in mpi_tmp_path.iterdir())
    assert mine == sorted(f"r{r}" for r in range(mpi_world.size)
                          if mpi_world.nodes[r] == mpi_world.node_rank)
'''


@pytest.mark.parametrize(("layout", "failing"), [([3, 1], 3), ([2, 2, 2], 4)],
                         ids=["2nodes-3+1", "3nodes-2+2+2"])
def test_across_nodes(ns_cluster, job, layout, failing):
    job.write("test_nodes.py", SUITE)
    result = ns_cluster.run(job, layout, "-rA", timeout=180)
    n, last_host = sum(layout), ns_cluster.hosts[len(layout) - 1][0]
    # exactly the one test that fails by design: every rank exits 1 (Intel MPI's ssh
    # bootstrap may turn a non-zero exit of remote ranks into 255)
    assert result.returncode in {1, launcher().remote_failure or 1}
    result.lines.fnmatch_lines([
        f"mpidist: {n} ranks on {len(layout)} node(s) (*), backend gloo, "
        f"store {ns_cluster.hosts[0][1]}:*",
    ])
    result.lines.fnmatch_lines([
        f"FAILED test_nodes.py::test_fails_on_the_last_nodes_first_rank - "
        f"[[]rank {failing}/{n} (host {last_host})] AssertionError: broken on {last_host}*",
        "*1 failed, 4 passed*",
    ])
    cases = result.testcases()
    assert len(cases) == 5
    assert all(cases[name].find("failure") is None for name in cases
               if name != "test_fails_on_the_last_nodes_first_rank")


FAULT_SUITE = '''
import json, os, socket, time
import torch.distributed as dist

def test_before():
    dist.barrier()

def test_fault():
    open(f"in-fault-{socket.gethostname()}-{dist.get_rank()}", "w").close()
    time.sleep(30)
    dist.barrier()

def test_after():
    dist.barrier()
'''


def _run_with_fault(ns_cluster, job, fault):
    """Start a 2+2 job, wait until every rank is inside test_fault, apply ``fault``."""
    import subprocess
    import threading
    import time

    if not launcher().keeps_node_loss:
        pytest.skip(f"{launcher().title} ends the job at once, with SIGKILL, when a node's "
                    "daemon is lost: no rank can report (README, Supported MPIs)")
    job.write("test_nodes.py", FAULT_SUITE)

    def inject() -> None:
        deadline = time.monotonic() + 120
        while len(list(job.path.glob("in-fault-*"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run(["sh", "-c", fault], check=False)

    threading.Thread(target=inject, daemon=True).start()
    return ns_cluster.run(job, [2, 2], "--mpi-timeout=20", "-rA", timeout=150)


def lose_node(node: str) -> str:
    """A shell command that loses ``node`` at once, as a power cut does: every process in
    it is stopped before any is killed. Killed one by one, a rank whose keeper died first
    gets its parent-death SIGTERM and, on a busy 2-core box, can answer rank 0 before its
    own SIGKILL lands -- a node that is half there."""
    return f"pids=$(ip netns pids {node}); kill -STOP $pids; kill -9 $pids"


def test_node_loss_ends_the_job_and_names_the_lost_node(ns_cluster, job):
    lost = ns_cluster.hosts[1][0]
    result = _run_with_fault(ns_cluster, job, lose_node(lost))
    assert result.returncode != 0
    assert result.seconds < 20 + 30 + 30  # timeout + 30 s, plus start-up
    result.lines.fnmatch_lines([
        "*test_fault*",
        f"*ranks 2-3/4 (host {lost}) did not answer*",
    ])
    assert_fault_recorded(result, lost)


def assert_fault_recorded(result, node: str) -> None:
    """JUnit keeps the test before the fault and names the faulty test and node."""
    cases = result.testcases()
    assert cases["test_before"].find("failure") is None
    failure = cases["test_fault"].find("failure")
    assert failure is not None
    assert f"ranks 2-3/4 (host {node}) did not answer" in (failure.text or "")
    assert "test_after" not in cases


def test_network_partition_ends_the_job_and_names_the_cut_off_node(ns_cluster, job):
    cut = ns_cluster.hosts[1][0]
    result = _run_with_fault(ns_cluster, job, f"ip link set v{cut} down")
    subprocess_restore(cut)
    assert result.returncode != 0
    assert result.seconds < 20 + 30 + 30  # timeout + 30 s, plus start-up
    # mpirun notices the lost daemon (keepalive) and ends the job, or the
    # watchdog's 20 s limit does; either way the cut-off ranks are named.
    result.lines.fnmatch_lines([f"*ranks 2-3/4 (host {cut}) did not answer*"])
    assert_fault_recorded(result, cut)


def subprocess_restore(node: str) -> None:
    import subprocess

    subprocess.run(["ip", "link", "set", f"v{node}", "up"], check=False)


def test_mpidist_run_names_a_lost_node_the_launcher_gives_no_time_for(ns_cluster, job):
    """Open MPI 5, MPICH and Intel MPI end the job at once when a node is lost; under
    ``mpidist run`` the journal keeps the finished tests and the report says what the
    launcher said about the node."""
    import subprocess
    import sys
    import threading
    import time

    from ..mpijob import job_env

    if launcher().keeps_node_loss:
        pytest.skip(f"{launcher().title} leaves time to report: the plain-launcher test")
    lost, address = ns_cluster.hosts[1]
    job.write("test_nodes.py", FAULT_SUITE)
    cmd = ns_cluster.launcher(job, [2, 2])
    junit = job.path / "run.xml"

    def inject() -> None:
        deadline = time.monotonic() + 120
        while len(list(job.path.glob("in-fault-*"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run(["sh", "-c", lose_node(lost)], check=False)

    threading.Thread(target=inject, daemon=True).start()
    proc = subprocess.run(
        [sys.executable, "-m", "mpidist.cli", "run", "--launcher", cmd[0], "--max-restarts",
         "0", *cmd[1:], "--", "test_nodes.py", "--mpi-timeout=20", f"--junitxml={junit}"],
        cwd=job.path, env=job_env(), capture_output=True, text=True, timeout=150)
    print(proc.stdout, proc.stderr)
    assert proc.returncode != 0
    import xml.etree.ElementTree as ET

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["test_before"].find("failure") is None
    failure = cases["test_fault"].find("failure")
    assert failure is not None
    text = failure.get("message", "") + (failure.text or "")
    # the journal's record of the crash, or rank 0's own report when the launcher sent
    # SIGTERM first (Intel MPI does on a lost node)
    # (Open MPI 5 names the node -- "node mdn2 was lost" -- when it prints its lost-daemon
    # message in time, which it does not always do); or, when the lost node's ranks still
    # answered rank 0's SIGTERM dump (seen once under Intel MPI), what the launcher said
    assert ("crashed: the job ended" in text or f"(host {lost}) did not answer" in text
            or f"the launcher says: node {address} was lost" in text
            or f"the launcher says: node {lost} was lost" in text), text


NODE_LOCAL = '''
import socket

import pytest
import torch
import torch.distributed as dist


@pytest.mark.mpi(ranks=[2, 3, 4])
def test_a_group_that_fits_a_node_stays_on_it(mpi_world, mpi_ranks):
    assert mpi_world.size == mpi_ranks
    assert mpi_world.num_nodes == 1 and len(set(mpi_world.hosts)) == 1
    assert mpi_world.hostname == socket.gethostname()


@pytest.mark.mpi(ranks=6)
def test_a_larger_group_spans_nodes(mpi_world):
    assert mpi_world.num_nodes == 2 and mpi_world.size == 6
    t = torch.ones(2) * (dist.get_rank() + 1)
    dist.all_reduce(t)
    assert t.tolist() == [21.0, 21.0]
'''


def test_mixed_sizes_packed_over_two_nodes_match_one_at_a_time(ns_cluster, job):
    """Sizes 1-4 and 6 (and torch's world_size 2, 4 and 8 classes) on 8 ranks over 2 nodes: the same
    outcome for every test, each once, packed and with --mpi-pack=off."""
    from ..integration.test_packing import MIXED, TORCH_CLASS, outcomes

    job.write("test_mixed.py", MIXED)
    job.write("test_torch_pair.py", TORCH_CLASS)
    job.write("test_node_local.py", NODE_LOCAL)
    args = ("-p", "no:randomly", "--mpi-timeout=120")
    packed = ns_cluster.run(job, [4, 4], *args, timeout=300)
    unpacked = ns_cluster.run(job, [4, 4], *args, "--mpi-pack=off", timeout=300)
    for result in (packed, unpacked):  # Intel MPI's ssh bootstrap may say 255
        assert result.returncode in {1, launcher().remote_failure or 1}
    mine, theirs = outcomes(packed), outcomes(unpacked)
    assert mine == theirs
    assert len(mine) == 24 + 4
    failed = {name.split("::")[-1] for name, kind in mine.items() if kind == "failure"}
    assert failed == {"test_fails_on_group_rank_1", "test_b_fails_everywhere"}
    packed.lines.fnmatch_lines(["*= 2 failed, 24 passed, 2 skipped* in *"])
