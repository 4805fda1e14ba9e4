"""Node reboot recovery (roadmap item 14, driver issue #951) — disruptive, opt-in with ``--disruptive``.

A workload holds a prepared GPU claim; the node is rebooted (twin: its reboot hook; Lambda: the Cloud API's
instance restart, key from ``LAMBDA_API_KEY``). After the node is back with a new boot id: the kubelet plugin runs
again and re-registers (its slices are republished for the node), the workload that was running comes back (its
claim prepared again, whatever the plugin's checkpoint from before the reboot says), and a new claim allocates and
prepares. The recovery times go into results.json.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.disruptors import disruptor_for
from checks.scenarios import manifests as M
from checks.scenarios.driverconfig import PLUGIN_SELECTOR
from checks.suite.context import CheckContext

Obj = dict[str, Any]

pytestmark = [pytest.mark.gpu_robustness, pytest.mark.disruptive, pytest.mark.needs(disruptive=True),
              pytest.mark.roadmap(14)]


def container_ids(pod: Obj) -> set[str]:
    return {str(cs.get("containerID")) for cs in (pod.get("status") or {}).get("containerStatuses") or []
            if cs.get("containerID")}


def _running_plugin(ctx: CheckContext, node: str, after_boot: str, old_ids: set[str]) -> Obj:
    """The plugin pod on ``node`` once its gpus container runs again after the reboot (a new container, not the
    status from before the reboot)."""
    def ok(p: Obj) -> bool:
        if p["metadata"].get("deletionTimestamp") or (p.get("spec") or {}).get("nodeName") != node:
            return False
        return any(cs.get("name") == names.CONTAINER_GPUS and (cs.get("state") or {}).get("running")
                   and cs.get("containerID") not in old_ids
                   for cs in (p.get("status") or {}).get("containerStatuses") or [])
    return W.wait_for(W.source_for(ctx.cluster, "pods", names.NAMESPACE, label_selector=PLUGIN_SELECTOR), ok,
                      timeout=ctx.timeout(600), what=f"the kubelet plugin running on {node} after boot {after_boot}")


def test_node_reboot_recovery(ctx: CheckContext) -> None:
    """#951: after a reboot the driver recovers — plugin back, slices republished, the running workload's claim
    prepared again, a new claim allocates."""
    ctx.apply(M.claim_template("rct-reboot", ctx.labels, M.claim_spec([M.request("gpu")])),
              M.pod("pod-before", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("template", "rct-reboot")}))
    pod = ctx.pod_ready("pod-before")
    node = str(pod["spec"]["nodeName"])
    (claim,) = ctx.pod_claims(pod)
    devices_before = [r["device"] for r in (claim["status"]["allocation"]["devices"]["results"])]

    old_ids = container_ids(pod) | {i for p in K.list_(ctx.cluster, "pods", names.NAMESPACE,
                                                        label_selector=PLUGIN_SELECTOR) for i in container_ids(p)}
    record = disruptor_for(ctx.cluster, node).reboot(node, timeout=ctx.timeout(900))
    ctx.record.update({"how": record.how, "node_back_s": round(record.back_after_s, 2)})

    plugin = _running_plugin(ctx, node, record.new_boot_id, old_ids)
    ctx.record["plugin_running_s"] = round(time.monotonic() - record.requested_at, 2)
    source = W.source_for(ctx.cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}")
    W.wait_until(source, lambda s: any((o.get("spec") or {}).get("nodeName") == node and (o.get("spec") or {})
                                       .get("devices") for o in s.values()),
                 timeout=ctx.timeout(300), what=f"gpu.nvidia.com slices of {node} after the reboot")
    ctx.record["slices_s"] = round(time.monotonic() - record.requested_at, 2)

    # The workload that ran before: the kubelet restarts it and prepares its claim again.
    again = W.wait_for(W.source_for(ctx.cluster, "pods", ctx.namespace, field_selector="metadata.name=pod-before"),
                       lambda p: W.pod_is_ready(p) and not container_ids(p) & old_ids, timeout=ctx.timeout(300),
                       what="the workload from before the reboot Ready in a new container")
    statuses = (again.get("status") or {}).get("containerStatuses") or []
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    ctx.record.update({"workload_ready_s": round(time.monotonic() - record.requested_at, 2),
                       "workload_restarts": restarts, "plugin_pod": plugin["metadata"]["name"]})
    (claim_after,) = ctx.pod_claims(again)
    assert [r["device"] for r in claim_after["status"]["allocation"]["devices"]["results"]] == devices_before
    logs = K.pod_log(ctx.cluster, names.NAMESPACE, plugin["metadata"]["name"], names.CONTAINER_GPUS)
    ctx.record["plugin_log_after_reboot"] = [ln for ln in logs.splitlines() if "checkpoint" in ln.lower()][:5]

    # A new claim allocates and prepares once the old workload is gone.
    ctx.delete("pods", "pod-before")
    ctx.apply(M.pod("pod-after", ctx.labels, [M.container(claims=["gpu"])],
                    claims={"gpu": ("template", "rct-reboot")}))
    ctx.pod_ready("pod-after", timeout=120)
    ctx.record["recovered_s"] = round(time.monotonic() - record.requested_at, 2)
