"""Driver metrics read through ``pods/proxy`` (roadmap item 13; upstream robustness R1).

Upstream R1 execs ``curl`` inside the ``gpus`` container (an image detail) and greps one name; item 13 is not
tested upstream at all. Here every scrape goes through the API server's ``pods/proxy`` to the container port
(no exec; the chart declares neither a metrics port nor a Service, §2) and is parsed with
``prometheus_client``'s parser:

* plugin (R1, stronger): ``nvidia_dra_prepared_devices{device_type="gpu"}`` follows a claim through
  prepare (+1) and unprepare (back), ``nvidia_dra_requests_total`` is present from the start (pre-created,
  §9.2 — R1 treated it as optional) and counts the prepare and the unprepare;
* controller (item 13): client-go REST metrics present; ``nvidia_dra_compute_domain_info`` **absent** until a
  ComputeDomain exists (registered lazily, §9.2 — the roadmap assumed it always present), then present with
  the ComputeDomain counted, and the count going back down when it is deleted.
"""

from __future__ import annotations

from typing import Any

import pytest

from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.suite import driverio as D
from checks.suite.context import CheckContext
from checks.suite.test_basics import COMPUTE_DOMAINS

pytestmark = [pytest.mark.fastfeedback]
Obj = dict[str, Any]


def _plugin_metrics(ctx: CheckContext, pod: str) -> str:
    return D.proxy_get(ctx.cluster, names.NAMESPACE, pod, names.GPU_PLUGIN_METRICS_PORT, names.METRICS_PATH)


def _prepared(text: str, node: str) -> float:
    v = D.value(text, names.METRIC_PREPARED_DEVICES, node=node, driver=names.GPU_DRIVER, device_type="gpu")
    assert v is not None, f"{names.METRIC_PREPARED_DEVICES}{{device_type=gpu,node={node}}} missing"
    return v


def _requests(text: str, op: str) -> float:
    v = D.value(text, names.METRIC_REQUESTS_TOTAL, driver=names.GPU_DRIVER, operation=op)
    assert v is not None, f"{names.METRIC_REQUESTS_TOTAL}{{operation={op}}} missing (pre-created at start, §9.2)"
    return v


def _until(ctx: CheckContext, read: Any, ok: Any, what: str, timeout: float = 30) -> str:
    return str(D.scrape_until(read, ok, timeout=ctx.timeout(timeout), what=what))


@pytest.mark.gpu_robustness
def test_plugin_metrics_follow_prepare_unprepare(ctx: CheckContext) -> None:
    """R1, stronger: prepared-devices gauge +1 while a pod holds a full GPU, back after it is gone; the request
    counters (present from the start) count one prepare and one unprepare."""
    pod = D.plugin_pod(ctx.cluster)
    pname, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    base = _plugin_metrics(ctx, pname)
    assert names.METRIC_PREPARED_DEVICES in D.families(base) or "nvidia_dra_prepared_devices" in base
    g0, p0, u0 = _prepared(base, node), _requests(base, "prepare"), _requests(base, "unprepare")
    ctx.apply(M.claim("rc-metrics", ctx.labels, M.claim_spec([M.request("gpu")])),
              M.pod("pod-metrics", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("claim", "rc-metrics")}, grace_s=5))
    ctx.pod_ready("pod-metrics")
    during = _plugin_metrics(ctx, pname)
    assert _prepared(during, node) == g0 + 1, during
    assert _requests(during, "prepare") >= p0 + 1
    ctx.delete("pods", "pod-metrics")
    ctx.delete("resourceclaims", "rc-metrics")
    after = _until(ctx, lambda: _plugin_metrics(ctx, pname),
                   lambda t: _prepared(t, node) == g0 and _requests(t, "unprepare") >= u0 + 1,
                   "prepared-devices gauge back and one unprepare counted")
    assert _prepared(after, node) == g0
    ctx.record["prepared_devices"] = {"before": g0, "during": g0 + 1, "after": _prepared(after, node)}


def _controller_metrics(ctx: CheckContext, pod: str) -> str:
    return D.proxy_get(ctx.cluster, names.NAMESPACE, pod, names.CONTROLLER_METRICS_PORT, names.METRICS_PATH)


def _leader_pod(ctx: CheckContext) -> str:
    """The controller pod that runs the loop: the Lease holder (leader election on)."""
    lease = W.wait_for(W.source_for(ctx.cluster, "leases", names.NAMESPACE,
                                    field_selector=f"metadata.name={names.LEASE_NAME}"),
                       lambda o: bool((o.get("spec") or {}).get("holderIdentity")), timeout=ctx.timeout(60),
                       what="controller Lease held")
    holder = str(lease["spec"]["holderIdentity"])
    pods = [str(p["metadata"]["name"]) for p in D.driver_pods(ctx.cluster, D.CONTROLLER_SELECTOR)]
    match = [p for p in pods if holder.startswith(p + "-")]
    assert match, f"holder {holder} is none of {pods}"
    return match[0]


def _compute_domain(name: str, labels: dict[str, str]) -> Obj:
    return {"apiVersion": f"{names.CRD_GROUP}/v1beta1", "kind": "ComputeDomain",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"numNodes": 0, "channel": {"resourceClaimTemplate": {"name": f"{name}-channel"}}}}


def _cd_count(text: str) -> float:
    return sum(s.value for s in D.samples(text) if s.name == names.METRIC_CD_INFO)


@pytest.mark.compute_domains
@pytest.mark.driver(COMPUTE_DOMAINS)
@pytest.mark.roadmap(13)
def test_controller_metrics_and_compute_domain_info(ctx: CheckContext) -> None:
    """Item 13: client-go REST metrics on the leader's ``:8080/metrics``; the ComputeDomain info gauge absent
    with no ComputeDomain, present (counting it) once one exists, and back down after it is deleted."""
    W.wait_pods_ready(ctx.cluster, names.NAMESPACE, D.CONTROLLER_SELECTOR, count=2, timeout=ctx.timeout(60))
    leader = _leader_pod(ctx)
    existing = K.list_(ctx.cluster, "computedomains")
    text = _controller_metrics(ctx, leader)
    fams = D.families(text)
    assert "rest_client_requests" in fams, sorted(fams)
    assert any(s.name == "rest_client_requests_total" and s.labels.get("method") and s.labels.get("code")
               for s in D.samples(text)), "no rest_client_requests_total{code,method} sample"
    if not existing:
        assert names.METRIC_CD_INFO not in fams, f"{names.METRIC_CD_INFO} present before any ComputeDomain"
    ctx.apply(_compute_domain("cd-metrics", ctx.labels))
    with_cd = _until(ctx, lambda: _controller_metrics(ctx, leader),
                     lambda t: _cd_count(t) >= len(existing) + 1, f"{names.METRIC_CD_INFO} counting the new CD",
                     timeout=60)
    assert names.METRIC_CD_INFO in D.families(with_cd)
    statuses = {s.labels.get("status") for s in D.samples(with_cd) if s.name == names.METRIC_CD_INFO}
    assert statuses <= {"Ready", "NotReady"}, statuses
    K.delete(ctx.cluster, "computedomains", "cd-metrics", ctx.namespace)  # no typed-client kind: no wait here
    _until(ctx, lambda: _controller_metrics(ctx, leader), lambda t: _cd_count(t) == len(existing),
           f"{names.METRIC_CD_INFO} back to {len(existing)}", timeout=60)
