"""mpidist vs pytest-mpi vs torch's MultiProcessTestCase on one suite.

The suite: 40 tests, each a gloo ``all_reduce`` of 1024 floats, at 4 ranks.

* mpidist: ``mpirun -n 4 python -m pytest --with-mpi`` (persistent ranks,
  gather + merge + one report, watchdog and rank 0's flight log on), and the
  same with the ``--mpi-journal`` that ``mpidist run`` keeps (fsynced);
* pytest-mpi: the same command in its own venv (persistent ranks, no
  aggregation; a conftest starts the gloo group once, as mpidist does);
* MultiProcessTestCase: torch's way, 4 fresh processes per test (a few tests
  are enough to get its per-test cost).

Runs are interleaved and repeated; medians are printed with ratios. The
per-test cost of the persistent-rank runners is reported two ways: wall / 40
(start-up included) and the marginal cost, (wall of 40 tests - wall of 1
test) / 39, which is what each further test of a long suite costs.
Usage: python benchmarks/bench_vs_peers.py [--rounds 3] [--mptc-tests 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import GLOO_CONFTEST, PYTEST_INI, median, mpirun, peers_python, precompile, timed

N_TESTS = 40
RANKS = 4

BODY = "\n".join(
    f"def test_all_reduce_{i}():\n"
    f"    t = torch.ones(1024)\n"
    f"    dist.all_reduce(t)\n"
    f"    assert t[0].item() == dist.get_world_size()\n"
    for i in range(N_TESTS)
)
SUITE = "import torch\nimport torch.distributed as dist\n\n\n" + BODY

MPTC = '''
import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase
from torch.testing._internal.common_utils import run_tests


class AllReduce(MultiProcessTestCase):
    @property
    def world_size(self):
        return {ranks}

    def setUp(self):
        super().setUp()
        self._spawn_processes()

{tests}
'''

MPTC_TEST = '''
    def test_all_reduce_{i}(self):
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", store=store, rank=self.rank,
                                world_size=self.world_size)
        t = torch.ones(1024)
        dist.all_reduce(t)
        assert t[0].item() == self.world_size
        dist.destroy_process_group()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mptc-tests", type=int, default=3)
    args = parser.parse_args()
    peers = peers_python()
    precompile()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours, theirs, mptc = root / "mpidist", root / "pytest_mpi", root / "mptc"
        for path in (ours, theirs, mptc):
            path.mkdir()
            (path / "pytest.ini").write_text(PYTEST_INI)
        (ours / "test_suite.py").write_text(SUITE)
        (theirs / "test_suite.py").write_text(SUITE)
        one = SUITE.split("def test_all_reduce_1()")[0]
        (ours / "one").mkdir()
        (ours / "one" / "test_one.py").write_text(one)
        (theirs / "one").mkdir()
        (theirs / "one" / "test_one.py").write_text(one)
        (theirs / "one" / "conftest.py").write_text(GLOO_CONFTEST)
        (theirs / "conftest.py").write_text(GLOO_CONFTEST)
        (mptc / "test_mptc.py").write_text(MPTC.format(
            ranks=RANKS,
            tests="".join(MPTC_TEST.format(i=i) for i in range(args.mptc_tests))))

        cmd_ours = [*mpirun(RANKS), sys.executable, "-m", "pytest", "--with-mpi"]
        cmd_theirs = [*mpirun(RANKS), peers, "-m", "pytest", "--with-mpi"]
        times: dict[str, list[float]] = {"mpidist": [], "pytest-mpi": [], "mptc": [],
                                         "mpidist-1": [], "pytest-mpi-1": [],
                                         "mpidist+journal": []}
        for round_ in range(args.rounds):
            times["mpidist"].append(timed([*cmd_ours, "test_suite.py"], ours))
            times["mpidist+journal"].append(timed(
                [*cmd_ours, "test_suite.py", f"--mpi-journal={root / 'journal.jsonl'}"], ours))
            times["pytest-mpi"].append(timed([*cmd_theirs, "test_suite.py"], theirs))
            times["mpidist-1"].append(timed(cmd_ours, ours / "one"))
            times["pytest-mpi-1"].append(timed(cmd_theirs, theirs / "one"))
            if round_ == 0:  # minutes per run: once is enough to see the order
                times["mptc"].append(timed([peers, "-m", "pytest"], mptc))
            print(f"round {round_ + 1}: " + ", ".join(
                f"{k} {v[-1]:.2f}s" for k, v in times.items() if v), flush=True)

    med = {k: median(v) for k, v in times.items()}
    ours_s, theirs_s = med["mpidist"], med["pytest-mpi"]
    marg_ours = (ours_s - med["mpidist-1"]) / (N_TESTS - 1)
    marg_theirs = (theirs_s - med["pytest-mpi-1"]) / (N_TESTS - 1)
    per_mptc = med["mptc"] / args.mptc_tests
    print(f"\n{N_TESTS} gloo all_reduce tests, {RANKS} ranks, median of {args.rounds} rounds")
    print(f"{'runner':<24}{'wall s':>9}{'1-test s':>10}{'s/test':>9}{'marginal ms/test':>18}")
    print(f"{'mpidist':<24}{ours_s:>9.2f}{med['mpidist-1']:>10.2f}{ours_s / N_TESTS:>9.3f}"
          f"{marg_ours * 1e3:>18.1f}")
    print(f"{'mpidist + journal':<24}{med['mpidist+journal']:>9.2f}{'':>10}"
          f"{med['mpidist+journal'] / N_TESTS:>9.3f}")
    print(f"{'pytest-mpi':<24}{theirs_s:>9.2f}{med['pytest-mpi-1']:>10.2f}"
          f"{theirs_s / N_TESTS:>9.3f}{marg_theirs * 1e3:>18.1f}")
    print(f"{'MultiProcessTestCase':<24}{'':>9}{'':>10}{per_mptc:>9.3f}"
          f"{per_mptc * 1e3:>18.1f}   ({args.mptc_tests} tests, {med['mptc']:.1f}s)")
    print(f"\nmpidist / pytest-mpi, the whole job (start-up, bootstrap, 40 tests, exit): "
          f"{ours_s / theirs_s:.2f}x  (target <= 1.1x)")
    print(f"mpidist / pytest-mpi, the test loop (marginal per test): "
          f"{marg_ours / marg_theirs:.2f}x")
    print(f"mpidist with watchdog + journal / pytest-mpi: "
          f"{med['mpidist+journal'] / theirs_s:.2f}x  (target <= 1.15x)")
    print(f"MultiProcessTestCase / mpidist per test: {per_mptc / (ours_s / N_TESTS):.0f}x "
          f"(start-up included), {per_mptc / marg_ours:.0f}x (marginal)  (target >= 100x)")


if __name__ == "__main__":
    main()
