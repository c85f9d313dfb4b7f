"""Collection under MPI: every rank holds rank 0's tests, in rank 0's order.

Ranks run tests in lockstep, so a rank that collected a different list would
deadlock the first collective it disagrees on. Each rank hashes its ordered
node ids; equal hashes (one allgather of 20 bytes) mean equal lists. Only on a
mismatch are the lists moved to rank 0, which names the ranks that differ and
the first differing node id (``describe_mismatch``, pure). Rank 0 decides the
selection (``-k``, ``--lf``, ordering plugins, ``--mpi-resume``); the other
ranks adopt its cache state before collecting and its order after.
Collection errors on any rank are reported once, by rank 0.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Generator, Sequence

import pytest

from ..bootstrap import settings
from ..bootstrap.agree import raise_together
from ..bootstrap.settings import setting
from ..placement.sizes import sizes_of
from ..plugins.writers import adopt, rank0_state
from ..report.failures import Labels, RankedFailure
from ..runner.markers import apply_markers

if TYPE_CHECKING:
    from _pytest.reports import CollectReport

    from ..runner.group import Group

__all__ = ["CollectionAgreement", "describe_mismatch", "fingerprint", "first_difference"]


def fingerprint(nodeids: Sequence[str]) -> str:
    """A digest of the ordered node ids (hex)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for nodeid in nodeids:
        digest.update(nodeid.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def first_difference(
    a: Sequence[str], b: Sequence[str]
) -> tuple[int, str | None, str | None]:
    """Index of the first differing position and each side's id there (None past the end)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i, x, y
    n = min(len(a), len(b))
    return n, (a[n] if n < len(a) else None), (b[n] if n < len(b) else None)


def describe_mismatch(lists: Sequence[Sequence[str]], world: Labels) -> str:
    """One line naming the ranks whose collection differs from rank 0's, and where."""
    reference = lists[0]
    groups: dict[tuple[str, ...], list[int]] = {}
    for rank, ids in enumerate(lists):
        if list(ids) != list(reference):
            groups.setdefault(tuple(ids), []).append(rank)
    parts = []
    for ids, ranks in groups.items():
        index, ours, theirs = first_difference(reference, ids)
        parts.append(
            f"{world.describe_ranks(ranks)} collected {len(ids)} tests, rank 0 "
            f"collected {len(reference)}; first difference at position {index}: "
            f"rank 0 has {ours or '<end>'}, they have {theirs or '<end>'}"
        )
    return (
        "ranks collected different tests (every rank must collect the same tests "
        "in the same order; look for rank-dependent parametrization or "
        "collection hooks): " + "; ".join(parts)
    )


class CollectionAgreement:
    """The plugin object that makes every rank collect, select and order alike."""

    def __init__(self, config: pytest.Config, group: Group, default_timeout: float) -> None:
        self.config = config
        self.group = group
        self.default_timeout = default_timeout
        self._raw: list[pytest.Item] = []
        self._errors: list[CollectReport] = []
        self.hypothesis_seed = 0  # rank 0's, once adopted

    def adopt_rank0_cache_state(self) -> None:
        """Collective: ranks > 0 take rank 0's --lf/--nf/--sw state, the seeds its
        ordering plugins drew (pytest-randomly, pytest-random-order: each process drew
        its own, and the tests' random numbers must agree) and hypothesis's seed.

        Each rank's cache plugins loaded their own .pytest_cache (on other
        nodes: another filesystem). Selection must follow rank 0's, and --lf
        filters during collection, so this happens before it.
        """
        pm = self.config.pluginmanager
        lf, nf, sw = (pm.get_plugin(n) for n in ("lfplugin", "nfplugin", "stepwiseplugin"))
        state = None
        if self.group.is_root:
            state = (getattr(lf, "lastfailed", None), getattr(nf, "cached_nodeids", None),
                     getattr(sw, "cached_info", None), rank0_state(self.config))
        lastfailed, nodeids, stepwise, shared = self.group.comm.bcast(state, root=0)
        self.hypothesis_seed = int(shared["hypothesis_seed"])
        if self.group.is_root:
            return
        adopt(self.config, shared)
        if lf is not None and lastfailed is not None:
            lf.lastfailed = lastfailed
            if hasattr(lf, "_last_failed_paths"):  # cached from lastfailed under --lf
                lf._last_failed_paths = lf.get_last_failed_paths()
        if nf is not None and nodeids is not None:
            nf.cached_nodeids = nodeids
        if sw is not None and stepwise is not None:
            sw.cached_info = stepwise

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        self._raw = list(items)
        apply_markers(items, self.group.size, self.default_timeout)
        result = yield
        # after every other plugin: the testing layer's TORCH_SIZE, deselection
        sizes_of(items, self.group.size, setting(config, settings.SERIAL) == "spread")
        return result

    def pytest_collectreport(self, report: CollectReport) -> None:
        if report.failed:
            self._errors.append(report)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, Any, Any]:
        comm = self.group.comm
        error: Exception | None = None
        result = None
        try:
            result = yield
        except Exception as exc:  # e.g. "file or directory not found" on some ranks
            error = exc
        raise_together(comm, error, pytest.UsageError)
        self._share_collect_errors(session)
        if session.testsfailed and not self.config.option.continue_on_collection_errors:
            return result  # every rank stops: "N errors during collection"
        ids = [item.nodeid for item in self._raw]
        if len(set(comm.allgather(fingerprint(ids)))) > 1:
            lists = comm.gather(ids, root=0)
            message = describe_mismatch(lists, self.group) if lists is not None else None
            raise pytest.UsageError(comm.bcast(message, root=0))
        index = {id(item): i for i, item in enumerate(self._raw)}
        order = [index[id(item)] for item in session.items] if self.group.is_root else None
        order = comm.bcast(order, root=0)
        if not self.group.is_root:
            session.items[:] = [self._raw[i] for i in order]
            session.testscollected = len(session.items)
        return result

    def _share_collect_errors(self, session: pytest.Session) -> None:
        """Rank 0 reports other ranks' collection errors; all adopt its count."""
        comm, config = self.group.comm, self.config
        mine = [config.hook.pytest_report_to_serializable(config=config, report=r)
                for r in self._errors] if not self.group.is_root else []
        gathered = comm.gather(mine, root=0)
        if self.group.is_root:
            assert gathered is not None
            seen = {r.nodeid for r in self._errors}
            for rank, reports in enumerate(gathered):
                for data in reports:
                    report = config.hook.pytest_report_from_serializable(
                        config=config, data=data)
                    if report.nodeid in seen:
                        continue
                    seen.add(report.nodeid)
                    report.longrepr = RankedFailure(
                        [(self.group.describe(rank), report.longrepr)])
                    session.ihook.pytest_collectreport(report=report)
        session.testsfailed = comm.bcast(session.testsfailed, root=0)
