"""The one table of settings mpidist reads, and the one precedence rule.

Precedence, highest first: command-line option > ini key > ``MPIDIST_*``
environment variable > default. Every setting is declared here once, so
``--help``, the README and the code cannot disagree about names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, TypeVar

from .launchers import LAUNCHERS

if TYPE_CHECKING:
    import pytest

__all__ = ["LAUNCHER_SIZE_VARS", "SETTINGS", "Setting", "env_value", "is_set", "launcher_task",
           "setting"]

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: its pytest option, ini key, environment variable and default."""

    name: str
    option: str
    ini: str
    envvar: str
    default: T
    parse: Callable[[str], T]
    help: str


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be > 0, got {text}")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {text!r}")


BACKEND = Setting(
    "backend", "--mpi-backend", "mpi_backend", "MPIDIST_BACKEND", "auto", str,
    "torch.distributed backend for the default process group: "
    "auto (nccl when every rank has a GPU of its own, else gloo), gloo, nccl, ucc, mpi "
    "(torch's, else mpi4py), "
    "mpi4py (mpidist's MPI process group), or none.",
)
LOG_DIR = Setting(
    "log_dir", "--mpi-log-dir", "mpi_log_dir", "MPIDIST_LOG_DIR", "", str,
    "Directory for per-rank logs (rank-N.log): stdout/stderr of ranks > 0 and "
    "each rank's own results.",
)
RANK_OUTPUT = Setting(
    "rank_output", "--mpi-rank-output", "mpi_rank_output", "MPIDIST_RANK_OUTPUT",
    False, _flag,
    "Show the output of ranks > 0 on the terminal, each line prefixed [rank N].",
)
STORE_TIMEOUT = Setting(
    "store_timeout", "--mpi-store-timeout", "mpi_store_timeout",
    "MPIDIST_STORE_TIMEOUT", 300.0, _positive_float,
    "Seconds to wait for rank 0's TCPStore and the process group to come up.",
)
IFNAME = Setting(
    "ifname", "--mpi-ifname", "mpi_ifname", "MPIDIST_IFNAME", "", str,
    "Network interface whose address rank 0 publishes as MASTER_ADDR "
    "(default: GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME, else the interface "
    "that routes to the other nodes).",
)

TIMEOUT = Setting(
    "timeout", "--mpi-timeout", "mpi_timeout", "MPIDIST_TIMEOUT", 300.0, _positive_float,
    "Seconds a test may take on every rank; then the watchdog reports where each "
    "rank is and ends the job (per test: mpi(timeout=) or pytest-timeout's marker; "
    "unset: pytest-timeout's --timeout, PYTEST_TIMEOUT or ini timeout, if given).",
)
PEER_GRACE = Setting(
    "peer_grace", "--mpi-peer-grace", "mpi_peer_grace", "MPIDIST_PEER_GRACE", 10.0,
    _positive_float,
    "Seconds the other ranks get to finish a test after one rank failed it, before "
    "the job is ended as hung (a raise before a collective).",
)

JOURNAL = Setting(
    "journal", "--mpi-journal", "mpi_journal", "MPIDIST_JOURNAL", "", str,
    "Rank 0 appends every finished test's merged reports to this file (fsynced); "
    "mpidist run uses it to resume after a crash.",
)
RESUME = Setting(
    "resume", "--mpi-resume", "mpi_resume", "MPIDIST_RESUME", "", str,
    "Skip (deselect) the tests this journal already records as finished.",
)

SHARED_DIR = Setting(
    "shared_dir", "--mpi-shared-dir", "mpi_shared_dir", "MPIDIST_SHARED_DIR", "", str,
    "A directory every node sees, for MultiProcessTestCase's self.file_name (FileStore "
    "rendezvous) when a test's ranks span nodes (default: the temp dir, one node).",
)

KEEPER = Setting(
    "keeper", "--mpi-keeper", "mpi_keeper", "MPIDIST_KEEPER", True, _flag,
    "on: each rank's launched process keeps a small parent that holds the launcher off "
    "until rank 0 has reported a dead rank (off: the launcher may kill the job first).",
)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return lowered
    return parse


PACK = Setting(
    "pack", "--mpi-pack", "mpi_pack", "MPIDIST_PACK", "on", _choice("on", "off"),
    "on: tests sized to k ranks (mpi(ranks=k), parallel(nprocs=k), a torch class's "
    "world_size) run side by side on disjoint groups of k ranks; off: one at a time on "
    "ranks 0..k-1, the others sitting out.",
)
SERIAL = Setting(
    "serial", "--mpi-serial", "mpi_serial", "MPIDIST_SERIAL", "all", _choice("all", "spread"),
    "all: an unmarked test runs on every rank (pytest-mpi); spread: once, on one rank, "
    "load-balanced over every rank and node (with --mpi-pack=off: on rank 0).",
)



def _isolate(text: str) -> str:
    lowered = text.strip().lower()
    lowered = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off",
               "no": "off"}.get(lowered, lowered)
    return _choice("on", "marked", "off")(lowered)


ISOLATE = Setting(
    "isolate", "--mpi-isolate", "mpi_isolate", "MPIDIST_ISOLATE", "marked", _isolate,
    "on (the bare flag): every test runs in a fresh process forked from a warm template "
    "each rank made before MPI_Init, so a crash or hang costs that test only; marked: "
    "only tests marked mpi(isolate=True); off: none (no template).",
)

RANK_TEXTS = Setting(
    "rank_texts", "--mpi-rank-texts", "mpi_rank_texts", "MPIDIST_RANK_TEXTS", "junit", str,
    "Where each rank's own text of a failure goes when the report groups ranks whose "
    "texts differ (numbers, addresses, hosts): junit (the test's system-err in the JUnit "
    "file; without one, a directory the summary names) or a directory.",
)

ALL_STACKS = Setting(
    "all_stacks", "--mpi-all-stacks", "mpi_all_stacks", "MPIDIST_ALL_STACKS", False, _flag,
    "Hang reports show mpidist's own threads' stacks too (the watchdog's, the channel's).",
)

HISTORY = Setting(
    "history", "--mpi-history", "mpi_history", "MPIDIST_HISTORY", "", str,
    "The history file (SQLite) rank 0 adds each run's results to, for `mpidist history` "
    "and for placing the longest tests first; `off`: none. Default: "
    "mpidist/history.sqlite under pytest's cache directory.",
)

SETTINGS: tuple[Setting[object], ...] = (  # type: ignore[assignment]
    BACKEND, LOG_DIR, RANK_OUTPUT, STORE_TIMEOUT, IFNAME, TIMEOUT, PEER_GRACE, JOURNAL,
    RESUME, SHARED_DIR, KEEPER, PACK, SERIAL, ISOLATE, RANK_TEXTS, ALL_STACKS, HISTORY,
)


#: (size variable, rank variable) that launchers set for each task they start.
LAUNCHER_SIZE_VARS = tuple(dict.fromkeys((launcher.size_var, launcher.rank_var)
                                         for launcher in LAUNCHERS.values()))


def launcher_task(environ: Mapping[str, str] | None = None) -> tuple[str, int, int] | None:
    """``(variable, task, tasks)`` from the launcher's own variables, if any says > 1 task.

    Used to catch an MPI that does not match the launcher (each task then
    sees a world of one and would print a report of its own).
    """
    environ = os.environ if environ is None else environ
    for size_var, rank_var in LAUNCHER_SIZE_VARS:
        try:
            size = int(environ.get(size_var, "1"))
            rank = int(environ.get(rank_var, "0"))
        except ValueError:
            continue
        if size > 1:
            return size_var, rank, size
    return None


def env_value(setting: Setting[T], environ: Mapping[str, str] | None = None) -> T:
    """Return the setting from its environment variable, else its default.

    Raises:
        ValueError: the variable is set to something the setting cannot parse;
            the message names the variable.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(setting.envvar)
    if raw is None or raw == "":
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ValueError(f"{setting.envvar}={raw!r}: {exc}") from None


def setting(config: pytest.Config, item: Setting[Any], namespace: Any = None) -> Any:
    """Resolve a setting for a pytest run: option > ini > ``MPIDIST_*`` env > default.

    ``namespace`` is the parsed options (``config.option``, or the early
    ``known_args_namespace`` before the full parse).

    Raises:
        pytest.UsageError: a value does not parse; the message names its source.
    """
    import pytest

    namespace = config.option if namespace is None else namespace
    value = getattr(namespace, f"mpi_{item.name}", None)
    source = item.option
    if value is None:
        value, source = config.getini(item.ini), f"ini {item.ini}"
    try:
        if value is None or value == "" or value == []:
            return env_value(item)
        return value if isinstance(value, bool) else item.parse(str(value))
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None


def is_set(config: pytest.Config, item: Setting[Any]) -> bool:
    """Whether the user gave ``item`` at all (option, ini or environment), as opposed
    to its default: another plugin's setting of the same thing may then stand in."""
    if getattr(config.option, f"mpi_{item.name}", None) is not None:
        return True
    if config.getini(item.ini) not in (None, "", []):
        return True
    return bool(os.environ.get(item.envvar))
