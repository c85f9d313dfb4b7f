"""A stranger on the network writes to a running job's store: nothing happens.

The attack of issue 13, against a real 3-rank run: connect to the channel port
rank 0 prints (mpidist's side channel, where the watchdog's keys live), send
it garbage, then forge the watchdog's keys -- a dump request
with a bad signature, a failure claim for a rank with a bad signature (with
a 1-s peer grace it would end a healthy test), answers whose payload is
a pickle that would create a file, an oversized value, malformed JSON. The
command must not run, every test must pass, the job must end on its own, and
rank 0 must name each rejected key.
"""

from __future__ import annotations

import json
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpidist.bootstrap.channel import ChannelClient
from mpidist.bootstrap.signing import MAX_VALUE

from ..mpijob import job_env, mpirun_command

SUITE = '''
import time
import torch.distributed as dist

def test_healthy_and_slow():
    time.sleep(6)
    dist.barrier()

def test_second():
    time.sleep(1.5)
    dist.barrier()

def test_third():
    time.sleep(1.5)
    dist.barrier()
'''


class Boom:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def forge(port: int, marker: Path) -> None:
    for garbage in (b"\xff\xff\xff\xff" + b"x" * 64, b"\x00\x00\x00\x03{{{"):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(garbage)
    client = ChannelClient("127.0.0.1", port)
    evil = pickle.dumps(Boom(str(marker))).decode("latin-1")
    client.set("mpidist/wd/failed/1/1", json.dumps({"v": "failed", "mac": "11" * 32}))
    client.set("mpidist/wd/dump/1", json.dumps({"v": "timeout", "mac": "00" * 32}))
    for rank in range(3):
        client.set(f"mpidist/wd/stack/1/{rank}", json.dumps(
            {"status": "in the test", "where": "x", "stacks": "", "payload": evil}))
        client.set(f"mpidist/wd/stack/2/{rank}", evil)
    client.set("mpidist/wd/dump/2", "x" * (MAX_VALUE + 100))  # over mpidist's read limit
    client.set("mpidist/wd/dump/3", evil)  # not JSON
    client.close()


def test_forged_store_values_change_nothing(job, tmp_path):
    job.write("test_suite.py", SUITE)
    marker = tmp_path / "the-pickle-ran"
    cmd = [*mpirun_command(3), sys.executable, "-m", "pytest", "--with-mpi", "-v",
           "--mpi-peer-grace", "1", "--mpi-timeout", "120", f"--junitxml={job.path / 'j.xml'}"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=job.path, env={**job_env(), "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"channel (\d+)", line)
        if found:
            time.sleep(1.0)  # the first test is running
            try:
                forge(int(found.group(1)), marker)
            except Exception:
                proc.kill()
                out, err = proc.communicate()
                raise AssertionError("".join(lines) + out + err) from None
            break
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the job did not end after the forgery: " + "".join(lines)[-2000:])
    text = "".join(lines) + out
    print(text, err)
    seconds = time.monotonic() - start
    assert not marker.exists(), "a pickle from the store ran"
    assert proc.returncode == 0, text[-3000:]
    assert re.search(r"3 passed", text)
    for key, why in (("failed/1/1", "bad signature"), ("dump/1", "bad signature"),
                     ("dump/2", "limit"), ("dump/3", "not JSON")):
        assert re.search(rf"mpidist: WARNING ignored store value mpidist/wd/{key}: .*{why}",
                         text), key
    assert seconds < 60
