"""Tests run isolated (``mpi(isolate=True)``) that crash, exit, hang or leave state,
among tests that must pass: ``tests/integration/test_isolation.py`` runs it."""

import os
import signal
import time

import pytest
import torch
import torch.distributed as dist

LEFT = []  # module state a test leaves: a fresh child never sees it

pytestmark = pytest.mark.mpi(isolate=True)


def _sum():
    t = torch.ones(1)
    dist.all_reduce(t)
    return int(t.item())


def test_a_first():
    assert _sum() == dist.get_world_size()


def test_b_segfault():
    print(f"about to crash on rank {dist.get_rank()}")
    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGSEGV)
    _sum()


def test_c_after_crash():
    assert _sum() == dist.get_world_size()


def test_d_exit():
    if dist.get_rank() == 0:
        os._exit(3)
    _sum()


@pytest.mark.mpi(isolate=True, timeout=4)
def test_e_hang():
    if dist.get_rank() == 1:
        time.sleep(1000)
    _sum()


def test_f_peer_stops():
    if dist.get_rank() == 0:
        raise AssertionError("rank 0 fails before the collective")
    time.sleep(1000)  # no collective to fail in: the watcher stops it


def test_g_leaves_state():
    LEFT.append(dist.get_rank())


def test_h_fresh_state():
    assert LEFT == []


@pytest.mark.mpi(ranks=2, isolate=True)
def test_i_packed():
    assert dist.get_world_size() == 2 and _sum() == 2


@pytest.mark.mpi(isolate=False)
def test_j_in_the_rank(mpi_comm):
    assert mpi_comm.allreduce(1) == mpi_comm.Get_size() == _sum()


def test_k_no_mpi_here(mpi_comm):
    pass  # isolated: the fixture says why it cannot be had


def test_l_last():
    assert _sum() == dist.get_world_size()


@pytest.mark.parametrize("i", range(24))
def test_m_many(i):
    """Enough tests that the template backs its memory with huge pages
    (``template._COLLAPSE_AT`` children) before the ones below are forked."""
    assert _sum() == dist.get_world_size()


def test_n_segfault_late():
    print(f"crashing late on rank {dist.get_rank()}")
    if dist.get_rank() == 0:
        os.kill(os.getpid(), signal.SIGSEGV)
    _sum()


def test_o_after_late_crash():
    assert _sum() == dist.get_world_size()
    from mpidist.isolation.process import collapsible, huge_page_mib

    if collapsible():  # the template, this process's parent, did at its 32nd child
        assert huge_page_mib(os.getppid()) > 0, "the template's memory is not in huge pages"
