"""Questions about many runs: flaky tests and where they fail, slow tests and stragglers,
hosts ranked by failures, one test's runs. Each answer is plain data (``--json``) with
a text form for people (``lines``).

A flaky test's verdict separates a bad node from a flaky test: when every run that
failed it names the same host among the failing ranks, the failures are *concentrated*
on that host (and the runs that had the host but passed, or did not have it, are
counted); otherwise they are *spread*.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from .store import History, marks

__all__ = ["flaky", "lines", "nodes", "slow", "test"]


def _runs(history: History, last: int) -> tuple[list[int], dict[int, list[str]]]:
    runs = history.last_runs("pytest", last)
    return [key for key, *_ in runs], {key: nodes for key, _, _, nodes in runs}


def flaky(history: History, last: int = 20) -> list[dict[str, Any]]:
    """Tests with both outcomes over the last ``last`` runs, most failures first."""
    keys, nodes_of = _runs(history, last)
    outcomes: dict[str, dict[int, str]] = {}
    for run, nodeid, outcome in history.query(
            f"SELECT run, nodeid, outcome FROM tests WHERE run IN ({marks(keys)})", keys):
        outcomes.setdefault(nodeid, {})[run] = outcome
    hosts: dict[tuple[str, int], set[str]] = {}
    for run, nodeid, host in history.query(
            f"SELECT run, nodeid, host FROM failures WHERE run IN ({marks(keys)})", keys):
        hosts.setdefault((nodeid, run), set()).add(host)
    out = []
    for nodeid, runs in outcomes.items():
        failed = sorted(r for r, o in runs.items() if o == "failed")
        passed = sorted(r for r, o in runs.items() if o == "passed")
        if not failed or not passed:
            continue
        per_host: dict[str, int] = {}
        for run in failed:
            for host in hosts.get((nodeid, run), ()):
                per_host[host] = per_host.get(host, 0) + 1
        common = [h for h, n in per_host.items() if n == len(failed)]
        entry: dict[str, Any] = {"nodeid": nodeid, "runs": len(runs), "failed": len(failed),
                                 "failures_by_host": dict(sorted(per_host.items()))}
        if len(common) == 1:
            host = common[0]
            with_host = [r for r in passed if host in nodes_of.get(r, [])]
            entry.update(verdict="concentrated", host=host, passed_with_host=len(with_host),
                         passed_without_host=len(passed) - len(with_host))
        else:
            entry.update(verdict="spread", host=None)
        out.append(entry)
    return sorted(out, key=lambda e: (-e["failed"], e["nodeid"]))


def slow(history: History, last: int = 20, top: int = 10) -> dict[str, Any]:
    """The slowest tests by median duration, and the hosts whose ranks were a test's
    stragglers (its slowest rank, at over 1.5 times the test's median rank)."""
    keys, _ = _runs(history, last)
    durations: dict[str, list[float]] = {}
    stragglers: dict[str, int] = {}
    for nodeid, duration, ranks in history.query(
            f"SELECT nodeid, duration, ranks FROM tests WHERE run IN ({marks(keys)}) AND "
            f"outcome != 'skipped'", keys):
        durations.setdefault(nodeid, []).append(float(duration))
        shape = json.loads(ranks or "{}")
        median, slowest = shape.get("median"), shape.get("slowest") or []
        if median is not None and slowest and slowest[0][2] > 1.5 * median + 0.05:
            stragglers[slowest[0][1]] = stragglers.get(slowest[0][1], 0) + 1
    ranked = sorted(durations.items(), key=lambda kv: -statistics.median(kv[1]))[:top]
    tests = [{"nodeid": n, "median_s": statistics.median(v), "runs": len(v)} for n, v in ranked]
    hosts = [{"host": h, "tests": n}
             for h, n in sorted(stragglers.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"tests": tests, "stragglers": hosts}


def nodes(history: History, last: int = 20) -> list[dict[str, Any]]:
    """Hosts ranked by the failures seen on them: failing (test, run) pairs, tests."""
    keys, nodes_of = _runs(history, last)
    seen: dict[str, dict[str, Any]] = {}
    for nodeid, host in history.query(
            f"SELECT nodeid, host FROM failures WHERE run IN ({marks(keys)})", keys):
        entry = seen.setdefault(host, {"host": host, "failures": 0, "tests": set()})
        entry["failures"] += 1
        entry["tests"].add(nodeid)
    for host in {h for hosts in nodes_of.values() for h in hosts} - set(seen):
        seen[host] = {"host": host, "failures": 0, "tests": set()}
    out = [{"host": e["host"], "failures": e["failures"], "tests": len(e["tests"]),
            "runs": sum(e["host"] in hosts for hosts in nodes_of.values())}
           for e in seen.values()]
    return sorted(out, key=lambda e: (-e["failures"], e["host"]))


def test(history: History, nodeid: str, last: int = 20) -> list[dict[str, Any]]:
    """``nodeid``'s runs, newest first: when, outcome, duration, where it failed."""
    rows = history.query(
        "SELECT runs.id, runs.run, runs.started, runs.world_size, tests.outcome, "
        "tests.duration FROM tests JOIN runs ON runs.id = tests.run WHERE tests.nodeid = ? "
        "ORDER BY runs.started DESC, runs.id DESC LIMIT ?", (nodeid, last))
    out = []
    for key, run, started, size, outcome, duration in rows:
        failed = [{"host": host, "ranks": json.loads(ranks), "cause": cause}
                  for host, ranks, cause in history.query(
                      "SELECT host, ranks, cause FROM failures WHERE run = ? AND nodeid = ?",
                      (key, nodeid))]
        out.append({"run": run, "started": started, "world_size": size, "outcome": outcome,
                    "duration_s": duration, "failed_on": failed})
    return out


def lines(kind: str, answer: Any) -> list[str]:
    """The text form of an answer of ``kind`` (flaky, slow, nodes, test)."""
    if kind == "flaky":
        if not answer:
            return ["no flaky test: none had both outcomes in these runs"]
        out = []
        for e in answer:
            where = ", ".join(f"{h} {n}" for h, n in e["failures_by_host"].items())
            if e["verdict"] == "concentrated":
                verdict = (f"concentrated on host {e['host']}: {e['failed']} of {e['failed']} "
                           f"failures there; passed in {e['passed_with_host']} runs with it, "
                           f"{e['passed_without_host']} without it")
            else:
                verdict = f"spread over {len(e['failures_by_host'])} hosts"
            out.append(f"{e['nodeid']}: failed in {e['failed']} of {e['runs']} runs "
                       f"({where or 'no host recorded'}) - {verdict}")
        return out
    if kind == "slow":
        out = [f"{e['median_s']:9.2f} s  {e['nodeid']}  (median of {e['runs']} runs)"
               for e in answer["tests"]]
        out += [f"straggler host {e['host']}: the slowest rank of {e['tests']} tests"
                for e in answer["stragglers"]] or ["no straggler host"]
        return out or ["no timed test"]
    if kind == "nodes":
        return [f"{e['host']}: {e['failures']} failures in {e['tests']} tests, "
                f"{e['runs']} runs" for e in answer] or ["no host recorded"]
    out = []
    for e in answer:
        where = "; ".join(f"{f['host']} ranks {','.join(map(str, f['ranks']))}: {f['cause']}"
                          for f in e["failed_on"])
        out.append(f"{e['run']}  {e['outcome']:8} {e['duration_s']:8.2f} s  "
                   f"{e['world_size']} ranks" + (f"  failed on {where}" if where else ""))
    return out or ["no run of this test recorded"]
