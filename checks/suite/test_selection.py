"""Device selection with CEL (upstream robustness R5/R6, Go e2e E6) and prioritized lists (firstAvailable).

Upstream R6 only checks ``Pending`` after a fixed ``sleep 5``; here the no-match pod must carry
``PodScheduled=False/Unschedulable`` with the scheduler's ``cannot allocate all claims`` (kubernetes-dra.md
§4.2), a matching ``FailedScheduling`` event, and its claim must stay unallocated.
"""

from __future__ import annotations

import pytest

from checks.driver import names
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.suite.context import CheckContext
from checks.suite.plugin import Suite

pytestmark = [pytest.mark.fastfeedback, pytest.mark.gpu_robustness]

PRODUCT = f"device.attributes['{names.GPU_DRIVER}'].productName"


def test_cel_selector_matches_product(ctx: CheckContext, suite: Suite) -> None:
    """R5 (stronger): a CEL selector on ``productName`` == the instance's GPU model allocates a device whose
    attribute really is that model, and the pod sees that device's UUID (upstream: architecture, any GPU-)."""
    model = suite.instance.gpu.model
    ctx.apply(M.claim_template("rct-cel-match", ctx.labels,
                               M.claim_spec([M.request("gpu", selectors=[f"{PRODUCT} == '{model}'"])])),
              M.pod("pod-cel-match", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("template", "rct-cel-match")}))
    pod = ctx.pod_ready("pod-cel-match")
    (claim,) = ctx.pod_claims(pod)
    (res,) = R.allocation_results(claim)
    dev = R.find_device(ctx.gpu_devices(), res)
    assert dev is not None and R.attr(dev, "productName") == model
    assert R.gpu_uuids(ctx.logs("pod-cel-match")) == [R.attr(dev, "uuid")]


def test_cel_selector_no_match_is_unschedulable(ctx: CheckContext) -> None:
    """R6 / E6 ``GPUs: CEL selector rejects non-matching productName``: Pending with the scheduler's reason,
    the same text in a FailedScheduling event, and no allocation on the claim."""
    ctx.apply(M.claim("rc-cel-nomatch", ctx.labels,
                      M.claim_spec([M.request("gpu", selectors=[f"{PRODUCT} == 'NONEXISTENT-GPU-XYZ'"])])),
              M.pod("pod-cel-nomatch", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("claim", "rc-cel-nomatch")}))
    pod = ctx.pod_unschedulable("pod-cel-nomatch")
    assert not R.unschedulable_problems(pod), R.unschedulable_problems(pod)
    ev = ctx.event("pod-cel-nomatch", "FailedScheduling")
    assert R.UNSCHEDULABLE_TEXT in str(ev.get("message")), ev.get("message")
    claim = ctx.get("resourceclaims", "rc-cel-nomatch")
    assert not (claim.get("status") or {}).get("allocation"), claim.get("status")
    assert not R.reserved_uids(claim)


def test_first_available_falls_back(ctx: CheckContext) -> None:
    """Prioritized list (kubernetes-dra.md §3.8): the first subrequest matches nothing, so the second is
    used — the result names ``gpu/any`` and the pod gets that device."""
    spec = {"devices": {"requests": [{"name": "gpu", "firstAvailable": [
        {"name": "none", "deviceClassName": M.GPU_CLASS,
         "selectors": [{"cel": {"expression": f"{PRODUCT} == 'NONEXISTENT-GPU-XYZ'"}}]},
        {"name": "any", "deviceClassName": M.GPU_CLASS},
    ]}]}}
    ctx.apply(M.claim("rc-first-available", ctx.labels, spec),
              M.pod("pod-first-available", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("claim", "rc-first-available")}))
    ctx.pod_ready("pod-first-available")
    claim = ctx.get("resourceclaims", "rc-first-available")
    (res,) = R.allocation_results(claim)
    assert res.get("request") == "gpu/any", res
    dev = R.find_device(ctx.gpu_devices(), res)
    assert dev is not None
    assert R.gpu_uuids(ctx.logs("pod-first-available")) == [R.attr(dev, "uuid")]
