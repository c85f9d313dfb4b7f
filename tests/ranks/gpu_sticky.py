"""A device-side assert poisons the rank's CUDA context: the test says so, the rank's
next GPU test is skipped with the reason, and an isolated test (a fresh process)
still runs. ``tests/integration/test_gpu.py`` runs it where a GPU is lent."""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_1_device_side_assert():
    x = torch.zeros(2, device="cuda")
    x[torch.tensor([5], device="cuda")] = 1.0  # out of bounds: a device-side assert
    torch.cuda.synchronize()


def test_2_next_gpu_test():
    assert (torch.ones(1, device="cuda") + 1).item() == 2


@pytest.mark.mpi(isolate=True)
def test_3_isolated_gpu_test():
    assert (torch.ones(1, device="cuda") + 1).item() == 2
