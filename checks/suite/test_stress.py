"""Stress: N pods share one ResourceClaim, M iterations (upstream test_gpu_stress.bats ST1).

Stronger than upstream (which checked only ``stress-pod-1``'s log): every pod must print the claim's one UUID,
``reservedFor`` must list exactly the N pods, and each pod's created→scheduled→running→ready times are taken
from watch events (:class:`checks.kube.wait.PodTimeline`) into ``results.json`` — with exactly N×M samples.
No fixed delay between iterations: the next starts once the previous claim is gone.
"""

from __future__ import annotations

from typing import Any

import pytest

from checks.kube import wait as W
from checks.scenarios import readers as R
from checks.scenarios import stress
from checks.suite.context import CheckContext
from checks.suite.plugin import Suite

pytestmark = [pytest.mark.stress, pytest.mark.fastfeedback, pytest.mark.roadmap(2)]


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def test_shared_claim_many_pods(ctx: CheckContext, suite: Suite) -> None:
    """ST1 ``GPUs: shared RC across N pods, M repetitions``."""
    n, m = suite.settings.stress_pods, suite.settings.stress_iterations
    samples: list[W.PodTimelineSample] = []
    uuids_per_iteration: list[str] = []
    for it in range(m):
        labels = {**ctx.labels, "test": "stress-shared", "iteration": str(it)}
        names = [f"stress-pod-{i}" for i in range(1, n + 1)]
        done = stress.shared_claim_iteration(ctx, claim="rc-shared-gpu", pods=names, labels=labels,
                                             selector=f"test=stress-shared,iteration={it}", timeout_s=180,
                                             grace_s=5, restart_policy="Never")
        pods, claim = done.pods, done.claim
        assert len(pods) == n and all((p.get("status") or {}).get("phase") == "Running" for p in pods)
        assert R.reserved_uids(claim) == {p["metadata"]["uid"] for p in pods}
        (res,) = R.allocation_results(claim)
        dev = R.find_device(ctx.gpu_devices(), res)
        assert dev is not None
        outs = [R.gpu_uuids(ctx.logs(p["metadata"]["name"])) for p in pods]
        bad = {p["metadata"]["name"]: o for p, o in zip(pods, outs, strict=True) if o != [R.attr(dev, "uuid")]}
        assert not bad, f"iteration {it}: pods did not see {R.attr(dev, 'uuid')}: {bad}"
        uuids_per_iteration.append(str(R.attr(dev, "uuid")))
        samples += done.samples
        ctx.delete_all("pods", names, timeout=90)
        ctx.delete_all("resourceclaims", ["rc-shared-gpu"], timeout=90)
    timings: list[dict[str, Any]] = [
        {"pod": s.name, "uid": s.uid, "scheduled_s": s.to_scheduled_s, "running_s": s.to_running_s,
         "ready_s": s.to_ready_s} for s in samples]
    ctx.record["timings"] = timings
    ctx.record["pods"], ctx.record["iterations"], ctx.record["uuids"] = n, m, uuids_per_iteration
    assert len(samples) == n * m, f"{len(samples)} timeline samples for {n}×{m} pods"
    incomplete = [t["pod"] for t in timings if None in (t["scheduled_s"], t["running_s"], t["ready_s"])]
    assert not incomplete, f"milestones missing for {incomplete}"
    ctx.record["summary"] = {k: _stats([float(t[k]) for t in timings]) for k in ("scheduled_s", "running_s", "ready_s")}
