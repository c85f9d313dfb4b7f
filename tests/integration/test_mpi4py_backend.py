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
