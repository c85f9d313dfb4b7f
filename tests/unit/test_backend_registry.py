"""testing.backends: a backend a test registers is dropped after it, one a module
registers when imported stays (the module is imported once per rank)."""

from __future__ import annotations

import sys

import pytest

dist = pytest.importorskip("torch.distributed")

from mpidist.testing import backends  # noqa: E402


def _create(store, rank, size, timeout):  # torch's non-extended creator signature
    return dist.ProcessGroup(rank, size)


def _gone(name: str) -> bool:
    return (not dist.is_backend_available(name) and name not in dist.Backend.backend_list
            and not hasattr(dist.Backend, name.upper())
            and name not in dist.Backend.backend_capability)


def test_a_backend_registered_in_a_test_is_dropped():
    backends.watch()
    before = backends.Registry()
    dist.Backend.register_backend("unit_probe", _create, devices=["cpu"])
    assert dist.is_backend_available("unit_probe")
    before.restore()
    assert _gone("unit_probe")
    assert dist.Backend.default_device_backend_map["cpu"] == "gloo"


def test_a_device_the_backend_claimed_is_given_back():
    backends.watch()
    before = backends.Registry()
    dist.Backend.register_backend("unit_claims", _create, devices=["unit_device"])
    assert dist.Backend.default_device_backend_map["unit_device"] == "unit_claims"
    before.restore()
    assert "unit_device" not in dist.Backend.default_device_backend_map
    assert _gone("unit_claims")


def test_a_backend_registered_on_import_stays(tmp_path, monkeypatch):
    backends.watch()
    (tmp_path / "unit_registers_on_import.py").write_text(
        "import torch.distributed as dist\n"
        "def _create(store, rank, size, timeout):\n"
        "    return dist.ProcessGroup(rank, size)\n"
        "dist.Backend.register_backend('unit_on_import', _create, devices=['cpu'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = backends.Registry()
    import unit_registers_on_import  # noqa: F401

    before.restore()
    try:
        assert dist.is_backend_available("unit_on_import")
    finally:
        sys.modules.pop("unit_registers_on_import", None)
