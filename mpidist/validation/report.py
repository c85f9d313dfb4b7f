"""What rank 0 writes at the end: the JSON with every number, the heatmap, the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["heatmap", "summary", "write_json"]


def write_json(path: str, results: dict[str, Any]) -> None:
    """Every number, NaN written as null (JSON has no NaN)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(clean(results), indent=2) + "\n")


def heatmap(path: str, links: dict[str, Any], suspects: list[dict[str, str]]) -> str:
    """Draw the node x node bandwidth matrix (GB/s), suspects in red; returns a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no heatmap: matplotlib is not installed (pip install 'mpidist[validate]')"
    names: list[str] = links["nodes"]
    matrix = [[math.nan if v is None else v for v in row] for row in links["bandwidth_gbps"]]
    n = len(names)
    size = max(4.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0)
    fig.colorbar(image, ax=ax, label="point-to-point bandwidth (GB/s)")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    bad_nodes = {s["name"] for s in suspects if s["kind"] == "node"}
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        if label.get_text() in bad_nodes:
            label.set_color("red")
            label.set_fontweight("bold")
    finite = [v for row in matrix for v in row if math.isfinite(v)]
    top = max(finite) if finite else 1.0
    if n <= 24:
        for a in range(n):
            for b in range(n):
                if math.isfinite(matrix[a][b]):
                    ax.text(b, a, f"{matrix[a][b]:.2f}", ha="center", va="center",
                            color="white" if matrix[a][b] < 0.6 * top else "black",
                            fontsize=8)
    verdict = ", ".join(s["name"] for s in suspects) or "no suspect"
    ax.set_title(f"mpidist validate: {verdict}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"heatmap: {path}"


def summary(results: dict[str, Any]) -> list[str]:
    """The lines rank 0 prints at the end: each check, the suspects, the files."""
    lines = [f"verdict: {results['verdict'].upper()}"]
    for check in results["checks"]:
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[check["outcome"]]
        detail = f" -- {check['detail']}" if check["detail"] and mark != "PASS" else ""
        lines.append(f"  {mark} {check['name']}{detail}")
    largest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in results["bandwidth"]:
        key = (row["backend"], row["collective"])
        if key not in largest or row["bytes"] >= largest[key]["bytes"]:
            largest[key] = row
    for (backend, collective), row in largest.items():
        lines.append(f"  busbw {backend:<7} {collective:<15} {row['busbw_gbps']:8.3f} GB/s "
                     f"at {row['bytes']} B ({row['time_us']:.1f} us)")
    links = results.get("links")
    if links:
        scores = ", ".join(f"{node} {gbps:.2f}" for node, gbps in
                           links["node_scores_gbps"].items())
        lines.append(f"  links (median GB/s per node): {scores}")
    for suspect in results["suspects"]:
        lines.append(f"  suspect {suspect['kind']} {suspect['name']}: {suspect['why']}")
    for below in results.get("history", {}).get("below", []):
        lines.append(f"  below its own history: {below['kind']} {below['name']}: {below['why']}")
    for finding in results.get("inventory", {}).get("findings", []):
        lines.append(f"  finding: {finding}")
    lines.extend(f"  {note}" for note in results["files"])
    return lines
