"""probes: the EFA probe runs libfabric's fi_info (a stand-in script here, since
this box has no libfabric) and reads sysfs (a stand-in tree); reasons are kept."""

from __future__ import annotations

import os
import stat

import pytest

from mpidist.bootstrap import probes


@pytest.fixture
def fake_sysfs(tmp_path, monkeypatch):
    root = tmp_path / "infiniband"
    root.mkdir()
    monkeypatch.setattr(probes, "SYS_INFINIBAND", root)
    probes.efa.cache_clear()
    yield root
    probes.efa.cache_clear()


def fi_info(tmp_path, monkeypatch, code: int, message: str = "") -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "fi_info"
    script.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_no_libfabric_says_so(fake_sysfs, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_sysfs))  # nothing to run there
    probe = probes.efa()
    assert not probe
    assert probe.detail == ("fi_info not found: libfabric is not installed; no EFA device in "
                            f"{fake_sysfs}")


def test_provider_missing_gives_fi_info_s_reason(fake_sysfs, tmp_path, monkeypatch):
    (fake_sysfs / "mlx5_0").mkdir()
    fi_info(tmp_path, monkeypatch, 61, "fi_getinfo: -61 (No data available)")
    probe = probes.efa()
    assert not probe.ok
    assert "exited 61: fi_getinfo: -61 (No data available)" in probe.detail
    assert "(has mlx5_0)" in probe.detail


def test_efa_present(fake_sysfs, tmp_path, monkeypatch):
    (fake_sysfs / "efa_0").mkdir()
    fi_info(tmp_path, monkeypatch, 0)
    probe = probes.efa()
    assert probe.ok and bool(probe)
    assert probe.detail.endswith("EFA devices: efa_0")


def test_multicast_on_this_torch_says_why_not():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU machine: the probe asks the driver")
    probe = probes.multicast()
    assert not probe
    assert probe.detail.startswith("no multicast: ")
