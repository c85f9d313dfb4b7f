"""The mpi4py process group under real mpirun: every collective and dtype against gloo."""

from __future__ import annotations

from pathlib import Path

import pytest

RANK_SUITE = Path(__file__).resolve().parents[1] / "ranks" / "collectives_vs_gloo.py"


@pytest.mark.parametrize("n", [2, 4])
def test_every_collective_and_dtype_matches_gloo(job, n):
    job.write("test_collectives.py", RANK_SUITE.read_text())
    result = job.run(n, "-q", "-p", "no:randomly", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    cases = result.testcases()
    assert len(cases) > 60
    bad = [name for name, case in cases.items()
           if any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))]
    assert not bad
    result.lines.fnmatch_lines(["* passed in *"])


def test_mpi_backend_falls_back_to_mpi4py_and_says_so(job):
    job.write("test_x.py", '''
import torch
import torch.distributed as dist

def test_default_group_is_mpi4py():
    assert dist.get_backend() == "mpi4py"
    t = torch.ones(3) * (dist.get_rank() + 1)
    dist.all_reduce(t)
    assert t.tolist() == [3.0, 3.0, 3.0]
    parts = [torch.zeros(1) for _ in range(2)]
    dist.all_gather(parts, torch.ones(1) * dist.get_rank())
    assert [p.item() for p in parts] == [0.0, 1.0]
''')
    result = job.run(2, "--mpi-backend", "mpi")
    assert result.returncode == 0
    result.lines.fnmatch_lines([
        "mpidist: 2 ranks on 1 node(s) (*), backend mpi4py (this torch build has no MPI "
        "backend: mpidist's MPI process group)*",
        "* 1 passed in *",
    ])


def test_torch_mpi_backend_name_is_served_on_a_torch_without_mpi(job):
    """Code written for torch's MPI backend (``init_process_group("mpi")``, as torch's
    own MPI-backend tests do) runs on stock torch under --with-mpi."""
    torch = pytest.importorskip("torch")
    job.write("test_x.py", '''
import os

import torch
import torch.distributed as dist


def test_backend_mpi():
    assert dist.is_mpi_available()
    dist.destroy_process_group()  # mpidist's gloo group: this test makes its own
    dist.init_process_group("mpi")  # torch's MPI backend: rank and size come from MPI
    try:
        assert dist.get_backend() == "mpi"
        assert (dist.get_rank(), dist.get_world_size()) == (int(os.environ["RANK"]), 4)
        t = torch.ones(2) * (dist.get_rank() + 1)
        dist.all_reduce(t)
        assert t.tolist() == [10.0, 10.0]
        pair = dist.new_group([1, 3])  # made by its members
        if dist.get_rank() in (1, 3):
            u = torch.ones(1) * dist.get_rank()
            dist.all_reduce(u, group=pair)
            assert u.item() == 4.0
            assert dist.get_backend(pair) == "mpi"
        dist.barrier()
    finally:
        dist.destroy_process_group()
''')
    result = job.run(4, "-p", "no:randomly")
    if torch.distributed.is_mpi_available():  # a source build with MPI: torch's own
        assert result.returncode in (0, 1)
        return
    assert result.returncode == 0, result.stdout[-3000:]
    result.lines.fnmatch_lines(["* 1 passed in *"])
