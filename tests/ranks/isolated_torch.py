"""A torch ``MultiProcessTestCase`` whose tests count on a process per rank per test:
state left by one test, a failure, a skip, a crash of a rank that is not the
first, an expected abort (``special_return_code_checks``). Under ``--mpi-isolate``
each test's torch child is forked; ``tests/integration/test_isolation.py`` checks
mpidist's outcomes against torch's runner's."""

import functools
import os
import signal
import unittest

import torch
import torch.distributed as dist
from torch.testing._internal.common_distributed import MultiProcessTestCase
from torch.testing._internal.common_utils import run_tests

LEFT = []


def wrapped(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        return fn(*args, **kwargs)
    return inner


class ForkedChildTest(MultiProcessTestCase):
    @property
    def world_size(self):
        return 2

    def setUp(self):
        super().setUp()
        self.special_return_code_checks = {
            self.test_6_expected_abort.__wrapped__: -signal.SIGABRT,
        }
        self._spawn_processes()

    def _group(self):
        store = dist.FileStore(self.file_name, self.world_size)
        dist.init_process_group("gloo", store=store, rank=self.rank,
                                world_size=self.world_size)

    def test_1_leaves_state(self):
        self._group()
        LEFT.append(self.rank)
        t = torch.ones(1)
        dist.all_reduce(t)
        self.assertEqual(t.item(), 2)

    def test_2_fresh_process(self):
        self.assertEqual(LEFT, [])

    def test_3_fails(self):
        self.assertEqual(self.rank, 0)

    def test_4_skips(self):
        raise unittest.SkipTest("not today")

    def test_5_second_rank_crashes(self):
        if self.rank == 1:  # torch's runner reads the first process's exit code only
            os.kill(os.getpid(), signal.SIGSEGV)

    @wrapped
    def test_6_expected_abort(self):
        os.kill(os.getpid(), signal.SIGABRT)

    def test_7_after(self):
        self._group()
        t = torch.ones(1)
        dist.all_reduce(t)
        self.assertEqual(t.item(), 2)


if __name__ == "__main__":
    run_tests()
