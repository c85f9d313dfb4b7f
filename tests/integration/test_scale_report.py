"""A report that reads as one page at any scale, under real mpirun (8 ranks here;
benchmarks/bench_scale.py counts the lines at 16-256): failures that differ by rank
only in their numbers are one group with the values summarised, each rank's own text
kept (JUnit system-err, or --mpi-rank-texts=DIR); hang reports group ranks by where
they are and leave mpidist's own threads out."""

from __future__ import annotations

import xml.etree.ElementTree as ET

SUITE = '''
import time

from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def test_passes():
    COMM.Barrier()


def test_fails_everywhere():
    print(f"rank {RANK} was here")
    assert RANK < 0, f"rank {RANK} sees a value of {RANK * 7} in {COMM!r}"


def test_fails_on_rank_3():
    assert RANK != 3, "rank 3 disagrees"
'''


def section(stdout: str, test: str) -> list[str]:
    """The lines of ``test``'s section in FAILURES."""
    text = stdout.split(f"_ {test} _", 1)[1]
    for end in ("\n____", "\n=========="):
        text = text.split(end, 1)[0]
    return text.splitlines()[1:]


def test_a_failure_on_every_rank_is_one_group_and_every_text_is_kept(job):
    job.write("test_scale.py", SUITE)
    result = job.run(8, "--mpi-backend", "none", timeout=180)
    assert result.returncode == 1, result.stdout
    lines = section(result.stdout, "test_fails_everywhere")
    assert lines[0].startswith("[ranks 0-7/8 (host ")
    assert len(lines) <= 25, "\n".join(lines)
    assert ("E       AssertionError: rank {0-7} sees a value of {0, 7, 14, … 49} in "
            "<mpi4py.MPI.Intracomm object at {8 addresses}>") in lines
    assert "rank 0 was here" in "\n".join(lines) and "rank 5 was here" not in result.stdout
    one = section(result.stdout, "test_fails_on_rank_3")
    assert one[0].startswith("[rank 3/8 (host ")
    assert "E       AssertionError: rank 3 disagrees" in one
    result.lines.fnmatch_lines(["mpidist: 1 failure report(s) grouped ranks whose texts "
                                "differ; each rank's own text is in the JUnit file*"])
    case = result.testcases()["test_fails_everywhere"]
    kept = case.find("system-err").text
    for rank in range(1, 8):
        assert f"[rank {rank}/8 (host " in kept
        assert f"AssertionError: rank {rank} sees a value of {rank * 7} in" in kept
        assert f"rank {rank} was here" in kept
    assert "rank 0 sees" not in kept  # shown in the report, not repeated


def test_the_ranks_texts_can_go_to_a_directory(job):
    job.write("test_scale.py", SUITE)
    texts = job.path / "texts"
    result = job.run(4, "--mpi-backend", "none", f"--mpi-rank-texts={texts}", "-k",
                     "everywhere", timeout=120)
    assert result.returncode == 1
    folder = texts / "test_scale.py_test_fails_everywhere"
    names = sorted(p.name for p in folder.iterdir())
    host = names[0].split("_host_")[1].split("_")[0].removesuffix(".txt")
    assert names == sorted([f"rank_{r}_4_host_{host}.txt" for r in (1, 2, 3)]
                           + [f"rank_{r}_4_host_{host}_Captured_stdout_call.txt"
                              for r in (1, 2, 3)]), names  # rank 0's is in the report
    assert "rank 2 sees a value of 14" in (folder / f"rank_2_4_host_{host}.txt").read_text()
    assert ET.parse(result.junit_path).getroot().find(".//system-err") is None


HANG = '''
import time

from mpi4py import MPI

COMM = MPI.COMM_WORLD


def test_hangs_on_rank_5():
    if COMM.Get_rank() == 5:
        time.sleep(120)
    COMM.Barrier()
'''


def test_a_hang_names_the_stuck_ranks_as_ranges_in_a_few_lines(job):
    job.write("test_hang.py", HANG)
    result = job.run(8, "--mpi-backend", "none", "--mpi-timeout=6", timeout=180)
    assert result.returncode == 1
    lines = section(result.stdout, "test_hangs_on_rank_5")
    head = lines[:next(i for i, line in enumerate(lines) if "--- Python stacks" in line)]
    assert len(head) <= 40, "\n".join(head)
    result.lines.fnmatch_lines([
        "  ranks 0-4,6-7/8 (host *) in test_hangs_on_rank_5 at test_hang.py:*: COMM.Barrier()",
        "  rank 5/8 (host *) in test_hangs_on_rank_5 at test_hang.py:*: time.sleep(120)"])
    assert "Thread mpidist-" not in result.stdout  # mpidist's own threads left out
