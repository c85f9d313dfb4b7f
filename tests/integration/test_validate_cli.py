"""``mpidist validate`` on one node under real mpirun: the report, thresholds, bad input.
(The multi-node behaviour -- links, the slow node, the heatmap -- is in tests/cluster.)"""

from __future__ import annotations

import json
import sys

from ..mpijob import MPIResult, mpirun_command

QUICK = ["--sizes", "4K,64K", "--iters", "2", "--warmup", "1"]


def validate(job, n: int, *args: str) -> MPIResult:
    cmd = [*mpirun_command(n), sys.executable, "-m", "mpidist.cli", "validate", *args,
           "--", "--color=no"]
    return job.execute(cmd, timeout=300)


def test_one_node_report(job):
    result = validate(job, 2, *QUICK)
    assert result.returncode == 0
    report = json.loads((job.path / "mpidist-validate.json").read_text())
    assert report["verdict"] == "healthy"
    assert list(report["inventory"]["nodes"]) and report["inventory"]["findings"] == []
    rows = report["bandwidth"]
    assert {(r["backend"], r["collective"]) for r in rows} == {
        (b, c) for b in ("gloo", "mpi4py")
        for c in ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all")}
    assert {r["bytes"] for r in rows} == {4096, 65536}
    for row in rows:
        assert row["busbw_gbps"] > 0 and row["time_us"] > 0
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["links"]["outcome"] == "skipped"
    assert "one node: no node-to-node links" in checks["links"]["detail"]
    assert checks["correctness[nccl]"]["outcome"] == "skipped"
    assert "GPU-only check" in checks["correctness[nccl]"]["detail"]
    assert report["links"] is None and not (job.path / "mpidist-validate.png").exists()
    result.lines.fnmatch_lines(["*::test_inventory PASSED*", "*verdict: HEALTHY*",
                                "*busbw mpi4py  all_reduce*GB/s at 65536 B*"])


def test_expected_busbw_not_reached_fails_the_verdict(job):
    result = validate(job, 2, *QUICK, "--checks", "bandwidth",
                      "--expect-busbw", "all_reduce=1000")
    assert result.returncode == 1
    report = json.loads((job.path / "mpidist-validate.json").read_text())
    assert report["verdict"] == "unhealthy"
    failed = [c for c in report["checks"] if c["outcome"] == "failed"]
    assert {c["name"] for c in failed} == {"bandwidth[gloo-all_reduce]",
                                           "bandwidth[mpi4py-all_reduce]"}
    assert "expected >= 1000 GB/s" in failed[0]["detail"]
    result.lines.fnmatch_lines(["*verdict: UNHEALTHY*", "*FAIL bandwidth[[]gloo-all_reduce]*"])


def test_bad_input_is_one_line_from_rank_zero(job):
    result = validate(job, 2, "--sizes", "lots")
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert output.count("mpidist: error: bad size 'LOTS'") == 1, output
