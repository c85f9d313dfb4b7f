"""The ``mpidist`` command: a registry of subcommands.

``mpidist info`` (under mpirun/srun) bootstraps the world exactly as the
pytest plugin does and prints, from rank 0, one line per rank: host, local
rank, node, and the MASTER_ADDR every rank will use -- the first thing to run
on a new cluster. ``mpidist run`` supervises a suite; ``mpidist validate``
runs the validation suite (``mpidist.validation``) and exits with its verdict;
``mpidist history`` answers questions about earlier runs (``mpidist.history``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import MpidistError, UsageError

__all__ = ["COMMANDS", "Command", "main", "register"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument setup and body."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: takes the rest of the command line verbatim (``run`` passes launcher flags on)
    raw: Callable[[list[str]], int] | None = None


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> None:
    """Add a subcommand; names are unique."""
    if command.name in COMMANDS:
        raise ValueError(f"subcommand {command.name!r} is already registered")
    COMMANDS[command.name] = command


def _info_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="none",
                        help="also start this process group (default: none)")


def _info(args: argparse.Namespace) -> int:
    from . import runtime

    world = runtime.init(args.backend)
    rows = runtime.current().comm.gather(
        (world.rank, world.hostname, world.local_rank, world.local_size,
         world.node_rank, _device()), root=0)
    if world.rank == 0:
        assert rows is not None
        print(f"mpidist: {world.size} ranks on {world.num_nodes} node(s); "
              f"MASTER_ADDR={world.master_addr} MASTER_PORT={world.master_port} "
              f"backend={runtime.current().backend or 'none'}")
        print(f"{'rank':>5} {'host':<24} {'local':>5} {'of':>3} {'node':>5}  device")
        for rank, host, local, local_size, node, device in rows:
            print(f"{rank:>5} {host:<24} {local:>5} {local_size:>3} {node:>5}  {device}")
    runtime.shutdown()
    return 0


def _device() -> str:
    """The device this rank's default group uses: ``cuda:0 (NVIDIA H100 ...)`` or ``cpu``."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        index = torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


register(Command("info", "bootstrap the world and print every rank's place in it",
                 _info_args, _info))


def _run_raw(argv: list[str]) -> int:
    from .supervisor.relaunch import parse_run_args, supervise

    return supervise(parse_run_args(argv))


register(Command(
    "run", "[--launcher CMD] [--max-restarts N] [--journal PATH] [launcher args] -- "
    "[pytest args]: run a suite; resume after a test kills the job",
    lambda parser: None, lambda args: 2, raw=_run_raw))


CHECKS = ("inventory", "correctness", "bandwidth", "links")
#: where a run from this directory keeps its history (pytest's default cache directory)
HISTORY_FILE = ".pytest_cache/mpidist/history.sqlite"


def _history_file(given: str | None) -> str:
    """The history file a command uses: the flag, else $MPIDIST_HISTORY, else the
    default under this directory; ``off`` stays ``off``."""
    import os

    path = given or os.environ.get("MPIDIST_HISTORY") or HISTORY_FILE
    return path if path.lower() == "off" else os.path.abspath(path)


def _validate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", default="mpidist-validate.json", help="JSON with every number")
    parser.add_argument("--heatmap", default="mpidist-validate.png",
                        help="node x node bandwidth heatmap (PNG)")
    parser.add_argument("--sizes", default="4K,256K,4M",
                        help="bandwidth sweep sizes, e.g. 8,1K,1M,256M (default 4K,256K,4M)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per size")
    parser.add_argument("--iters", type=int, default=5, help="timed calls per size")
    parser.add_argument("--expect-busbw", default="",
                        help="fail below these busbw (GB/s) at the largest size, e.g. "
                        "all_reduce=90,all_gather=40")
    parser.add_argument("--expect-p2p", type=float, default=None,
                        help="flag node-to-node links below this bandwidth (GB/s)")
    parser.add_argument("--p2p-bytes", default="1M", help="ping-pong message size (default 1M)")
    parser.add_argument("--checks", default=",".join(CHECKS),
                        help=f"which checks, comma-separated (default {','.join(CHECKS)})")
    parser.add_argument("--history", default=None,
                        help="the history file: each node's and link's figures are judged "
                        f"against their earlier runs, and this run's added (default: "
                        f"$MPIDIST_HISTORY, else {HISTORY_FILE}; off: none)")
    parser.add_argument("--history-fraction", default="0.8",
                        help="name a link below this fraction of its own median (default 0.8)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")


def _validate(args: argparse.Namespace) -> int:
    """Run the validation suite in this rank; rank 0 prints the verdict."""
    import os

    import pytest

    from .validation.config import parse_expect, parse_fraction, parse_sizes

    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(checks) - set(CHECKS))
    try:
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(CHECKS)}")
        parse_sizes(args.sizes)
        parse_sizes(args.p2p_bytes)
        parse_expect(args.expect_busbw)
        parse_fraction(args.history_fraction)
        if args.iters < 1 or args.warmup < 0:
            raise ValueError("--iters must be >= 1 and --warmup >= 0")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    os.environ.update({
        "MPIDIST_VALIDATE_JSON": os.path.abspath(args.json),
        "MPIDIST_VALIDATE_HEATMAP": os.path.abspath(args.heatmap),
        "MPIDIST_VALIDATE_SIZES": args.sizes, "MPIDIST_VALIDATE_WARMUP": str(args.warmup),
        "MPIDIST_VALIDATE_ITERS": str(args.iters),
        "MPIDIST_VALIDATE_EXPECT_BUSBW": args.expect_busbw,
        "MPIDIST_VALIDATE_EXPECT_P2P": "" if args.expect_p2p is None else str(args.expect_p2p),
        "MPIDIST_VALIDATE_P2P_BYTES": args.p2p_bytes,
        "MPIDIST_VALIDATE_HISTORY_FRACTION": args.history_fraction,
        "MPIDIST_HISTORY": _history_file(args.history),
    })
    from . import validation

    here = os.path.dirname(validation.__file__)
    selected = [f"mpidist.validation.test_{check}" for check in CHECKS if check in checks]
    return int(pytest.main(["-c", os.path.join(here, "pytest.ini"), "--rootdir", here,
                            "--with-mpi", "-v", "--pyargs", *selected, *args.pytest_args]))


register(Command("validate", "check the cluster: inventory, collectives, bandwidth, links; "
                 "name the bad node (run under mpirun/srun)", _validate_args, _validate))

QUESTIONS = ("flaky", "slow", "nodes", "test")


def _history_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="flaky | slow | nodes | test NODEID")
    parser.add_argument("nodeid", nargs="?", help="the test, for `test`")
    parser.add_argument("--file", default=None, help=f"the history file (default: "
                        f"$MPIDIST_HISTORY, else {HISTORY_FILE})")
    parser.add_argument("--last", type=int, default=20, help="runs to look at (default 20)")
    parser.add_argument("--json", action="store_true", help="JSON, for machines")


def _history(args: argparse.Namespace) -> int:
    """Answer a question about the runs in the history file."""
    import json
    from pathlib import Path

    from .history import queries
    from .history.store import History

    if args.question not in QUESTIONS:
        raise UsageError(f"unknown history question {args.question!r}: choose from "
                         f"{', '.join(QUESTIONS)}")
    if (args.question == "test") != (args.nodeid is not None):
        raise UsageError("`test` takes a NODEID, and only `test` does")
    path = Path(_history_file(args.file))
    if not path.is_file():
        raise UsageError(f"no history file at {path}: run a suite under --with-mpi first, "
                         "or name one with --file")
    history = History(path)
    try:
        answer = (queries.test(history, args.nodeid, args.last) if args.question == "test"
                  else getattr(queries, args.question)(history, args.last))
    finally:
        history.close()
    print(json.dumps(answer, indent=2) if args.json
          else "\n".join(queries.lines(args.question, answer)))
    return 0


register(Command("history", "flaky | slow | nodes | test NODEID: what the history file says "
                 "about earlier runs", _history_args, _history))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mpidist`` console script."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="mpidist", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mpidist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.configure(sub.add_parser(command.name, help=command.help))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].raw is not None:
        raw = COMMANDS[argv[0]].raw
        assert raw is not None
        return raw(argv[1:])
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except MpidistError as exc:
        from .bootstrap import settings

        task = settings.launcher_task()
        if task is None or task[1] == 0:  # every rank has the error; one prints it
            print(f"mpidist: error: {exc}", file=sys.stderr, flush=True)
        else:
            # Let task 0 exit first: Open MPI 5 and Hydra end the job, and drop its
            # output, as soon as any task exits non-zero (no MPI here to wait on).
            time.sleep(1.0)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
