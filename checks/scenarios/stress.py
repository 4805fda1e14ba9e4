"""Stress timing: N pods × M iterations on one shared claim, timed from watch events.

Each iteration creates one ResourceClaim and N pods that all reference it, waits (watch-based) until all
are Ready while :class:`checks.kube.wait.PodTimeline` records every pod's milestones, checks that every pod
saw the same GPU UUID (the sharing the claim promises), then deletes pods and claim and waits until they are
gone. Latencies: created→scheduled, scheduled→running, running→ready and created→ready (total).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios.readers import smi_uuids
from checks.scenarios.workspace import Workspace

Obj = dict[str, Any]

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
    recorder_relists: int = 0
    """Times the recorder's watch expired (410) and relisted: milestones in that gap were seen late."""
    samples_folded_late: int = 0
    """Samples the recorder's stream had not delivered by the end and that came from the final LIST."""


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


@dataclass
class SharedClaimIteration:
    """One iteration of the shared-claim scenario, once every pod is Ready."""

    claim: Obj
    """The ResourceClaim as read after the pods were Ready (allocation, ``reservedFor``)."""
    pods: list[Obj]
    """The Ready pods, by name."""
    samples: list[W.PodTimelineSample]
    """One watch-timed sample per pod of this iteration (matched by uid)."""
    recorder: W.RecorderStats
    """How the recording went (relists, late folds)."""


def shared_claim_iteration(ws: Workspace, *, claim: str, pods: Sequence[str], labels: dict[str, str],
                           selector: str, timeout_s: float, grace_s: int = 1,
                           restart_policy: str | None = None) -> SharedClaimIteration:
    """Create one claim and ``pods`` pods referencing it, timed from watch events; wait until all are Ready.

    The recorder watches before anything is created, so every milestone is a watch event's time.
    """
    spec = M.claim_spec([M.request("gpu", M.GPU_CLASS)])
    with W.record_pods(ws.cluster, ws.namespace, selector) as timeline:
        ws.apply(M.claim(claim, labels, spec))
        ws.apply(*[M.pod(n, labels, [M.container(claims=["gpu"])], claims={"gpu": ("claim", claim)},
                         restart_policy=restart_policy, grace_s=grace_s) for n in pods])
        ready = W.wait_pods_ready(ws.cluster, ws.namespace, selector, count=len(pods),
                                  timeout=ws.timeout(timeout_s))
    uids = {p["metadata"]["uid"] for p in ready}
    samples = [s for s in timeline.samples() if s.uid in uids]
    return SharedClaimIteration(ws.get("resourceclaims", claim), ready, samples,
                                timeline.recorder or W.RecorderStats())


def run_stress(ws: Workspace, *, pods: int, iterations: int, timeout_s: float) -> StressRun:
    """Run the iterations; every pod timed, every pod's UUID read from its log."""
    out = StressRun(iterations=iterations, pods=pods)
    t_first: datetime | None = None
    for it in range(1, iterations + 1):
        labels = {**ws.labels, "dra-lab.io/iteration": str(it)}
        claim = f"shared-{it}"
        names = [f"stress-{it}-{i:03d}" for i in range(pods)]
        done = shared_claim_iteration(ws, claim=claim, pods=names, labels=labels,
                                      selector=f"dra-lab.io/iteration={it}", timeout_s=timeout_s)
        out.recorder_relists += done.recorder.relists
        out.samples_folded_late += done.recorder.folded_late
        seen: set[str] = set()
        for s in done.samples:
            # Ready can precede the first output line: the log is followed until nvidia-smi's line is there.
            uuids = smi_uuids(ws.logs(s.name, timeout=timeout_s))
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
        ws.delete_all("pods", names, timeout=timeout_s)
        ws.delete_all("resourceclaims", [claim], timeout=timeout_s)
    return out


def stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """p50/p90/p99/max/count per latency column."""
    table: dict[str, dict[str, float | int | None]] = {}
    for col, _a, _b in PHASES:
        vals = [float(r[col]) for r in rows if r.get(col) is not None]
        table[col] = {"count": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90),
                      "p99": percentile(vals, 99), "max": max(vals) if vals else None}
    return table


__all__ = ["PHASES", "SharedClaimIteration", "StressRun", "percentile", "run_stress", "shared_claim_iteration", "stats"]
