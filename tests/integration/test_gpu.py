"""The GPU rank suite (tests/ranks/gpu_suite.py) under real mpirun, at 1 and 2 ranks.

On a GPU node it checks the GPU path (scripts/gpu-check.sh runs it there and judges the
choice of backend); on a CPU machine every GPU test must skip with its reason and nothing
may fail, so the suite cannot rot where no GPU is lent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RANK_SUITE = Path(__file__).resolve().parents[1] / "ranks" / "gpu_suite.py"
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("n", [1, 2])
def test_gpu_suite(job, n):
    job.write("test_gpu.py", RANK_SUITE.read_text())
    result = job.run(n, "-rA", "--mpi-backend", "auto", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    cases = result.testcases()
    failed = [name for name, case in cases.items()
              if case.find("failure") is not None or case.find("error") is not None]
    assert not failed
    if torch.cuda.is_available():
        return
    skipped = {name: case.find("skipped").get("message", "") for name, case in cases.items()
               if case.find("skipped") is not None}
    for name in ("test_auto_chooses_by_ranks_per_gpu",
                 "test_nccl_collectives_give_the_right_values", "test_gloo_takes_cuda_tensors",
                 "test_mpi4py_backend_refuses_cuda_tensors_in_one_line"):
        assert "no CUDA device" in skipped[name], skipped[name]
    assert "Need at least 1 CUDA device" in skipped["test_skip_if_lt_one_gpu_runs"]
    assert "multicast" in skipped["test_requires_multicast_support_runs_only_with_multicast"]
    result.lines.fnmatch_lines(["*backend gloo, store *"])
    assert "test_multicast_and_efa_say_what_they_looked_at" not in skipped


def test_sticky_cuda_error_is_said_and_skips_the_ranks_later_tests(job):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: a device-side assert needs one")
    job.write("test_sticky.py", (RANK_SUITE.parent / "gpu_sticky.py").read_text())
    result = job.run(1, "-rA", "--mpi-backend", "gloo", timeout=300)
    assert result.returncode == 1, result.stdout[-3000:]
    cases = result.testcases()
    assert cases["test_1_device_side_assert"].find("failure") is not None
    skipped = cases["test_2_next_gpu_test"].find("skipped")
    assert skipped is not None and "CUDA context was poisoned by" in skipped.get("message", "")
    assert not list(cases["test_3_isolated_gpu_test"]), result.stdout[-3000:]  # passed
    result.lines.fnmatch_lines(["*CUDA context was poisoned by *test_1_device_side_assert*"
                                "(device-side assert triggered)*"])
