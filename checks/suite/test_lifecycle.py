"""Claim lifecycle: allocation follows the pod, devices come back (upstream robustness R2, R3, R8).

Stronger than upstream: R2 counted every claim in ``default``; R3 captured both UUIDs but never compared
them; R8 compared slice device counts (which never change on allocation). Here the claim's own status is
read (allocation and ``reservedFor`` cleared), the re-acquired GPU must be the same device with the same
UUID, and "nothing leaked" is proven by allocating *every* GPU at the end (``allocationMode: All``).
"""

from __future__ import annotations

import pytest

from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.fastfeedback, pytest.mark.gpu_robustness]

CHURN_CYCLES = 10
"""Create/delete cycles of R8 (the upstream number)."""


def _deallocated(claim: dict[str, object]) -> bool:
    status = claim.get("status") or {}
    assert isinstance(status, dict)
    return not status.get("allocation") and not status.get("reservedFor")


def test_claim_lifecycle_and_reacquire(ctx: CheckContext) -> None:
    """R2 + R3: a standalone claim is allocated and reserved for the pod while it runs; deleting the pod
    clears ``reservedFor`` and the allocation (resourceclaim controller, kubernetes-dra.md §5); a new pod on
    the same claim gets the same device and prints the same UUID (first-fit on an idle node is stable)."""
    ctx.apply(M.claim("rc-lifecycle", ctx.labels, M.claim_spec([M.request("gpu")])))
    pod_spec = M.pod("pod-full-gpu", ctx.labels, [M.container(claims=["gpu"])],
                     claims={"gpu": ("claim", "rc-lifecycle")}, grace_s=5)
    first = ctx.apply(pod_spec)[0]
    ctx.pod_ready("pod-full-gpu")
    claim = ctx.get("resourceclaims", "rc-lifecycle")
    (res1,) = R.allocation_results(claim)
    assert R.reserved_uids(claim) == {first["metadata"]["uid"]}
    uuid1 = R.gpu_uuids(ctx.logs("pod-full-gpu"))
    ctx.delete("pods", "pod-full-gpu")
    source = W.source_for(ctx.cluster, "resourceclaims", ctx.namespace, field_selector="metadata.name=rc-lifecycle")
    W.wait_for(source, _deallocated, timeout=ctx.timeout(60),
               what=f"claim {ctx.namespace}/rc-lifecycle deallocated after its only pod was deleted")
    second = ctx.apply(M.pod("pod-full-gpu", ctx.labels, [M.container(claims=["gpu"])],
                             claims={"gpu": ("claim", "rc-lifecycle")}, grace_s=5))[0]
    ctx.pod_ready("pod-full-gpu")
    claim = ctx.get("resourceclaims", "rc-lifecycle")
    (res2,) = R.allocation_results(claim)
    assert R.reserved_uids(claim) == {second["metadata"]["uid"]}
    assert (res2["pool"], res2["device"]) == (res1["pool"], res1["device"])
    uuid2 = R.gpu_uuids(ctx.logs("pod-full-gpu"))
    assert len(uuid1) == 1 and uuid1 == uuid2, f"before {uuid1}, after {uuid2}"
    ctx.record.update(device=res1["device"], uuid=uuid1[0])


def test_generated_claim_removed_with_pod(ctx: CheckContext) -> None:
    """R2 (template form): the claim generated for a pod is allocated while the pod runs and is deleted
    with the pod (owner reference + resourceclaim controller), leaving no claim in the namespace."""
    ctx.apply(M.claim_template("rct-single-gpu-full", ctx.labels, M.claim_spec([M.request("gpu")])),
              M.pod("pod-full-gpu", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("template", "rct-single-gpu-full")}, grace_s=5))
    pod = ctx.pod_ready("pod-full-gpu")
    (claim,) = ctx.pod_claims(pod)
    assert R.allocation_results(claim), "generated claim not allocated"
    owners = [(o.get("kind"), o.get("uid")) for o in claim["metadata"].get("ownerReferences") or []]
    assert ("Pod", pod["metadata"]["uid"]) in owners, owners
    ctx.delete("pods", "pod-full-gpu")
    ctx.gone("resourceclaims", claim["metadata"]["name"])
    assert ctx.claims() == []


def test_rapid_create_delete_leaks_nothing(ctx: CheckContext) -> None:
    """R8 ``rapid claim create/delete does not leak resources``: 10 cycles of template claim + pod, then no
    claim is left and a pod asking for *all* GPUs gets every published GPU (upstream compared slice counts,
    which do not change when devices leak)."""
    ctx.apply(M.claim_template("rct-single-gpu-full", ctx.labels, M.claim_spec([M.request("gpu")])))
    seen: set[str] = set()
    for i in range(CHURN_CYCLES):
        ctx.apply(M.pod("pod-churn", ctx.labels, [M.container(claims=["gpu"])],
                        claims={"gpu": ("template", "rct-single-gpu-full")}, grace_s=5))
        ctx.pod_ready("pod-churn")
        uuids = R.gpu_uuids(ctx.logs("pod-churn"))
        assert len(uuids) == 1, f"cycle {i}: {uuids}"
        seen.add(uuids[0])
        ctx.delete("pods", "pod-churn")
    source = W.source_for(ctx.cluster, "resourceclaims", ctx.namespace)
    W.wait_until(source, lambda state: not state, timeout=ctx.timeout(60),
                 what=f"no ResourceClaim left in {ctx.namespace} after {CHURN_CYCLES} cycles")
    all_gpus = {str(R.attr(d, "uuid")) for d in ctx.gpu_devices() if R.device_type(d) == "gpu"}
    ctx.apply(M.claim("rc-all", ctx.labels, M.claim_spec([M.request("gpu", all_devices=True)])),
              M.pod("pod-all", ctx.labels, [M.container(claims=["gpu"])], claims={"gpu": ("claim", "rc-all")},
                    grace_s=5))
    ctx.pod_ready("pod-all")
    claim = ctx.get("resourceclaims", "rc-all")
    assert len(R.allocation_results(claim)) == len(all_gpus)
    assert set(R.gpu_uuids(ctx.logs("pod-all"))) == all_gpus
    ctx.record.update(cycles=CHURN_CYCLES, distinct_uuids_seen=len(seen), gpus=len(all_gpus))
