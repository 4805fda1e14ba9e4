"""Stress timing: N pods × M iterations on one shared claim, timed from watch events.

Each iteration creates one ResourceClaim and N pods that all reference it, waits (watch-based) until all
are Ready while :class:`checks.kube.wait.PodTimeline` records every pod's milestones, checks that every pod
saw the same GPU UUID (the sharing the claim promises), then deletes pods and claim and waits until they are
gone. Latencies: created→scheduled, scheduled→running, running→ready and created→ready (total).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from checks.kube import objects as O
from checks.kube import wait as W
from checks.lab.clusterops import Workspace, delete_and_wait
from checks.suite import manifests as M
from checks.suite.context import smi_uuids

PHASES: tuple[tuple[str, str, str], ...] = (
    ("created_to_scheduled", "created", "scheduled"),
    ("scheduled_to_running", "scheduled", "running"),
    ("running_to_ready", "running", "ready"),
    ("total", "created", "ready"),
)
"""(column, from milestone, to milestone) of every latency reported."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values. Nearest rank keeps it a real sample."""
    xs = sorted(values)
    if not xs:
        return None
    rank = max(1, math.ceil(q / 100 * len(xs)))
    return xs[min(rank, len(xs)) - 1]


@dataclass
class StressRun:
    """Everything measured."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    """One row per pod: iteration, name, uuid, milestone offsets and latencies (seconds)."""
    iterations: int = 0
    """Iterations done."""
    pods: int = 0
    """Pods per iteration."""
    uuid_problems: list[str] = field(default_factory=list)
    """Iterations where pods did not all see exactly one and the same UUID."""


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def run_stress(ws: Workspace, *, pods: int, iterations: int, timeout_s: float) -> StressRun:
    """Run the iterations; every pod timed, every pod's UUID read from its log."""
    out = StressRun(iterations=iterations, pods=pods)
    spec = M.claim_spec([M.request("gpu", M.GPU_CLASS)])
    t_first: datetime | None = None
    for it in range(1, iterations + 1):
        labels = {**ws.labels, "dra-lab.io/iteration": str(it)}
        claim = f"shared-{it}"
        ws.add(M.claim(claim, labels, spec))
        names = [f"stress-{it}-{i:03d}" for i in range(pods)]
        selector = f"dra-lab.io/iteration={it}"
        # Watch first, then create: every milestone is the time a watch event showed it (ms resolution).
        with W.record_pods(ws.cluster, ws.namespace, selector) as timeline:
            for n in names:
                ws.add(M.pod(n, labels, [M.container(claims=["gpu"])], claims={"gpu": ("claim", claim)},
                             grace_s=1))
            W.wait_pods_ready(ws.cluster, ws.namespace, selector, count=pods, timeout=timeout_s)
        seen: set[str] = set()
        for s in timeline.samples():
            # Ready can precede the first output line: follow the log until nvidia-smi's line is there.
            log = O.log_until(ws.cluster, ws.namespace, s.name, None, lambda t: "\n" in t, timeout=timeout_s)
            uuids = smi_uuids(log)
            seen.update(uuids)
            if len(uuids) != 1:
                out.uuid_problems.append(f"iteration {it}: pod {s.name} saw {len(uuids)} UUIDs")
            if t_first is None and s.created is not None:
                t_first = s.created
            row: dict[str, Any] = {"iteration": it, "pod": s.name, "uuid": uuids[0] if uuids else ""}
            for m in ("created", "scheduled", "running", "ready"):
                row[m] = _secs(t_first, getattr(s, m))
            for col, a, b in PHASES:
                row[col] = _secs(getattr(s, a), getattr(s, b))
            out.rows.append(row)
        if len(seen) != 1:
            out.uuid_problems.append(f"iteration {it}: {len(seen)} distinct UUIDs across {pods} pods")
        delete_and_wait(ws.cluster, ws.namespace, "pods", names, timeout_s=timeout_s)
        delete_and_wait(ws.cluster, ws.namespace, "resourceclaims", [claim], timeout_s=timeout_s)
    return out


def stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """p50/p90/p99/max/count per latency column."""
    table: dict[str, dict[str, float | int | None]] = {}
    for col, _a, _b in PHASES:
        vals = [float(r[col]) for r in rows if r.get(col) is not None]
        table[col] = {"count": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90),
                      "p99": percentile(vals, 99), "max": max(vals) if vals else None}
    return table


def earlier_runs(run_dir: Path) -> list[dict[str, Any]]:
    """results.json of earlier stress runs of the same instance (siblings of ``run_dir``), oldest first."""
    found = []
    for path in sorted(run_dir.parent.glob("*/results.json")):
        if path.parent.resolve() == run_dir.resolve():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("latency"), dict):
            data.setdefault("run_id", path.parent.name)
            found.append(data)
    return found


__all__ = ["PHASES", "StressRun", "earlier_runs", "percentile", "run_stress", "stats"]
