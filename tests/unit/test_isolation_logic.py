"""The pure parts of per-test isolation: how a child ended, which tests are isolated,
the children's body agreement, the stacks shown, the wire, the setting."""

from __future__ import annotations

import signal
import socket
import threading

import pytest

from mpidist.bootstrap import settings
from mpidist.bootstrap.settings import setting
from mpidist.isolation.child import STOPPED, body_verdict
from mpidist.isolation.process import collapsible
from mpidist.isolation.rank import (
    TORCH_CHILD,
    describe_end,
    isolated_by,
    trim_stacks,
)
from mpidist.isolation.wire import receive, send
from mpidist.placement.sizes import TORCH_SIZE


def test_describe_end_names_signal_exit_timeout_and_stop():
    assert describe_end(-11, "Fatal Python error: Segmentation fault") == (
        "was killed by signal 11 (SIGSEGV)", "died")
    assert describe_end(-int(signal.SIGKILL), "")[0] == "was killed by signal 9 (SIGKILL)"
    assert describe_end(3, "") == ("exited with code 3 before it reported", "died")
    assert describe_end(0, "")[1] == "died"  # os._exit(0) mid-test: no reports came
    assert describe_end(1, "Timeout (0:00:05)!\nThread 0x1 ...") == (
        "exceeded its time limit (its stacks above)", "timeout")
    words, how = describe_end(75, f"{STOPPED}rank 2's process ended the test first\n...")
    assert how == "stopped" and words.startswith("stopped because rank 2's process")


def test_trim_stacks_keeps_the_tests_frames_only():
    text = "\n".join([
        "Timeout (0:00:04)!",
        "Thread 0x1 (most recent call first):",
        '  File "/site/torch/distributed/distributed_c10d.py", line 3252 in all_reduce',
        '  File "/suite/test_x.py", line 10 in test_hang',
        '  File "/site/_pytest/python.py", line 187 in pytest_pyfunc_call',
        '  File "/site/pluggy/_callers.py", line 103 in _multicall',
        '  File "/src/mpidist/isolation/child.py", line 154 in main',
        '  File "<frozen runpy>", line 88 in _run_code',
    ])
    kept = trim_stacks(text).splitlines()
    assert kept == text.splitlines()[:4]


def test_body_verdict_names_the_ranks_whose_setup_did_not_pass():
    ok = {"status": "passed", "reason": ""}
    assert body_verdict({0: ok, 1: ok}) == ""
    assert body_verdict({0: ok, 1: {"status": "skipped", "reason": "no GPU"}}) == (
        "setup skipped on rank 1: no GPU")
    bad = {"status": "failed", "reason": ""}
    assert body_verdict({0: bad, 1: ok, 2: bad}) == "setup failed on ranks 0,2"


@pytest.mark.parametrize(("mode", "marks", "torch", "expected"), [
    ("marked", "", None, ""),
    ("marked", "@pytest.mark.mpi(isolate=True)", None, "item"),
    ("on", "", None, "item"),
    ("on", "@pytest.mark.mpi(isolate=False)", None, ""),
    ("off", "@pytest.mark.mpi(isolate=True)", None, ""),
    ("on", "", True, "torch"),  # torch's child protocol is what gets forked
    ("on", "", False, ""),  # a continuous or one-process torch class: not isolated
])
def test_isolated_by(pytester, mode, marks, torch, expected):
    item = pytester.getitem(f"import pytest\n{marks}\ndef test_func():\n    pass\n")
    if torch is not None:
        item.stash[TORCH_SIZE] = 2
        item.stash[TORCH_CHILD] = torch
    assert isolated_by(item, mode) == expected


def test_isolate_setting_bare_flag_means_on(pytester, monkeypatch):
    monkeypatch.delenv("MPIDIST_ISOLATE", raising=False)
    assert setting(pytester.parseconfig(), settings.ISOLATE) == "marked"
    assert setting(pytester.parseconfig("--mpi-isolate"), settings.ISOLATE) == "on"
    assert setting(pytester.parseconfig("--mpi-isolate=off"), settings.ISOLATE) == "off"
    monkeypatch.setenv("MPIDIST_ISOLATE", "1")
    assert setting(pytester.parseconfig(), settings.ISOLATE) == "on"
    with pytest.raises(pytest.UsageError, match="expected one of on, marked, off"):
        setting(pytester.parseconfig("--mpi-isolate=sometimes"), settings.ISOLATE)


def test_wire_round_trip_with_descriptors_and_end_of_stream():
    a, b = socket.socketpair()
    with a, b:
        r, w = socket.socketpair()
        with r, w:
            send(a, {"op": "output"}, (r.fileno(), w.fileno()))
            message, fds = receive(b, with_fds=2)
            assert message == {"op": "output"} and len(fds) == 2
            big = {"out": "x" * 300_000, "n": [1, 2]}  # more than the socket buffers
            sender = threading.Thread(target=send, args=(a, big))
            sender.start()
            assert receive(b) == (big, [])
            sender.join()
            a.close()
            assert receive(b) == (None, [])


def test_collapse_to_huge_pages_backs_the_heap_with_huge_pages():
    """The template's memory becomes 2 MiB pages (fewer entries for each fork to copy),
    its contents unchanged; where the kernel cannot, it says 0 and changes nothing."""
    import subprocess
    import sys

    code = (
        "import hashlib\n"
        "from mpidist.isolation.process import collapse_to_huge_pages\n"
        "blob = bytearray(range(256)) * (256 * 1024)  # 64 MiB, touched\n"
        "before = hashlib.sha256(blob).hexdigest()\n"
        "mib = collapse_to_huge_pages()\n"
        "assert hashlib.sha256(blob).hexdigest() == before\n"
        "print(mib)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    mib = int(out.split()[-1])
    if collapsible():
        assert mib >= 32, f"only {mib} MiB of a 64 MiB heap in huge pages"
    else:
        assert mib == 0
