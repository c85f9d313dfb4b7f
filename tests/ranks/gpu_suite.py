"""The GPU path, run on every rank under ``mpirun ... pytest --with-mpi --mpi-backend auto``.

Each test needs a CUDA device and skips with the reason where there is none,
so the same file runs (all skipped) on a CPU machine. With one rank per GPU
``auto`` must pick NCCL; with more ranks than GPUs on a node it must pick gloo
and say why (NCCL refuses two ranks on one device).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from mpidist import current
from mpidist.bootstrap import probes
from mpidist.testing import has_efa, requires_multicast_support, skip_if_lt_x_gpu

pytestmark = pytest.mark.mpi

GPUS = probes.cuda_devices()
needs_gpu = pytest.mark.skipif(GPUS == 0, reason=f"no CUDA device (torch {torch.__version__}, "
                               f"CUDA {torch.version.cuda or 'none: a CPU build'})")


def _one_rank_per_gpu() -> bool:
    world = current().world
    return world.local_size <= GPUS


@needs_gpu
def test_auto_chooses_by_ranks_per_gpu():
    expected = "nccl" if _one_rank_per_gpu() else "gloo"
    assert dist.get_backend() == expected
    print(f"GPU-CHECK auto backend {dist.get_backend()} with {current().world.local_size} "
          f"rank(s) on {GPUS} GPU(s)")


@needs_gpu
def test_device_binding_is_local_rank_mod_device_count():
    if not _one_rank_per_gpu():
        pytest.skip("gloo default group: no device binding")
    world = current().world
    assert torch.cuda.current_device() == world.local_rank % GPUS


@needs_gpu
def test_nccl_collectives_give_the_right_values():
    if dist.get_backend() != "nccl":
        pytest.skip("the default group is not NCCL")
    n, rank = dist.get_world_size(), dist.get_rank()
    t = torch.full((1024,), float(rank + 1), device="cuda")
    dist.all_reduce(t)
    assert t[0].item() == n * (n + 1) / 2
    out = torch.empty(n * 4, device="cuda")
    dist.all_gather_into_tensor(out, torch.full((4,), float(rank), device="cuda"))
    assert out.view(n, 4)[:, 0].tolist() == [float(r) for r in range(n)]
    b = torch.full((8,), float(rank), device="cuda")
    dist.broadcast(b, src=0)
    assert b.sum().item() == 0.0


@needs_gpu
def test_gloo_takes_cuda_tensors():
    group = dist.new_group(backend="gloo")
    t = torch.ones(16, device="cuda") * (dist.get_rank() + 1)
    dist.all_reduce(t, group=group)
    n = dist.get_world_size()
    assert t[0].item() == n * (n + 1) / 2 and t.is_cuda


@skip_if_lt_x_gpu(1)
def test_skip_if_lt_one_gpu_runs():
    assert torch.cuda.is_available()


@skip_if_lt_x_gpu(2)
def test_skip_if_lt_two_gpus_skips_collectively():
    assert torch.cuda.device_count() >= 2


@needs_gpu
def test_mpi4py_backend_refuses_cuda_tensors_in_one_line():
    group = dist.new_group(backend="mpi4py")
    with pytest.raises(NotImplementedError) as info:
        dist.all_reduce(torch.ones(2, device="cuda"), group=group)
    message = str(info.value)
    assert "\n" not in message and "CPU tensors" in message and "nccl" in message
    print(f"GPU-CHECK mpi4py error: {message}")


def test_multicast_and_efa_say_what_they_looked_at():
    multicast, efa = probes.multicast(), has_efa()
    print(f"GPU-CHECK multicast {multicast.ok}: {multicast.detail}")
    print(f"GPU-CHECK efa {bool(efa)}: {probes.efa().detail}")
    assert multicast.detail and probes.efa().detail
    if GPUS and not multicast.ok:
        assert "cuda:0" in multicast.detail  # names the device it asked about


@requires_multicast_support()
def test_requires_multicast_support_runs_only_with_multicast():
    assert probes.multicast().ok


def test_environment_is_torchruns():
    world = current().world
    assert os.environ["LOCAL_RANK"] == str(world.local_rank)
    assert os.environ["WORLD_SIZE"] == str(world.size)
