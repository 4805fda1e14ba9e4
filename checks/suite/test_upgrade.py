"""Helm upgrade and downgrade with running workloads (roadmap item 1; upstream test_gpu_updowngrade.bats UG1,
UG3).

Install the last-stable chart (``--last-stable-chart``/``--last-stable-version``, env
``TEST_CHART_LASTSTABLE_REPO``/``_VERSION``; default the published ``0.4.0``), run a shared-claim workload,
upgrade to the chart under test, then downgrade back — and after each transition:

* the running pods kept running: same pod UID, same container ``startedAt``, no restart, still Ready;
* their claim stayed allocated to the same device and reserved for the same pods;
* the plugin pods run the new release's image and the node's slices are published again with the same devices;
* the old workload can be deleted (its claim is unprepared by the *other* release's plugin — through the
  checkpoint it left on the node) and a new claim allocates and runs.

Upstream UG1 checks only the last two, never downgrades (no GPU-plugin downgrade test exists upstream), and
measures nothing. Here each helm transition's duration and the longest time a node had no Ready plugin pod are
recorded (results.json ``timings``). On a real cluster the last-stable chart comes from its OCI registry (the
check declares ``needs(internet)``); a twin offers both versions of our chart offline.

UG3's corrupted-checkpoint check is here too: it edits the plugin's checkpoint through a privileged pod with
the node's plugin state dir (as upstream's clean-state-dirs script reaches it) and puts the file back after.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from checks.driver import logs, names
from checks.kube import helm
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.scenarios.driverconfig import DEFAULT, PLUGIN_SELECTOR, RELEASE
from checks.scenarios.readers import gpu_uuids
from checks.suite import driverio as D
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.upgrade, pytest.mark.driver(DEFAULT), pytest.mark.roadmap(1)]
Obj = dict[str, Any]
WORKLOAD_PODS = ("pod-a", "pod-b")


def _snapshot(ctx: CheckContext, claim: str) -> dict[str, Any]:
    """What must not change across a transition: per pod uid/startedAt/restarts; the claim's allocation."""
    pods = {}
    for name in WORKLOAD_PODS:
        pod = ctx.get("pods", name)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        pods[name] = {"uid": pod["metadata"]["uid"],
                      "started": [((cs.get("state") or {}).get("running") or {}).get("startedAt") for cs in statuses],
                      "restarts": [cs.get("restartCount") for cs in statuses]}
    rc = ctx.get("resourceclaims", claim)
    return {"pods": pods, "results": R.allocation_results(rc), "reserved": sorted(R.reserved_uids(rc))}


def _workload(ctx: CheckContext, claim: str) -> dict[str, Any]:
    ctx.apply(M.claim(claim, ctx.labels, M.claim_spec([M.request("gpu")])))
    for name in WORKLOAD_PODS:
        ctx.apply(M.pod(name, ctx.labels, [M.container(claims=["gpu"])], claims={"gpu": ("claim", claim)},
                        grace_s=5))
    for name in WORKLOAD_PODS:
        ctx.pod_ready(name, timeout=120)
    uuids = [gpu_uuids(ctx.logs(n)) for n in WORKLOAD_PODS]
    assert R.same_uuid(uuids), uuids
    return _snapshot(ctx, claim)


def _devices(ctx: CheckContext) -> set[tuple[str, str]]:
    return {(str(d["_pool"]), str(d["name"])) for d in ctx.gpu_devices()}


def _plugin_images(ctx: CheckContext) -> set[str]:
    pods = K.list_(ctx.cluster, "pods", names.NAMESPACE, label_selector=PLUGIN_SELECTOR)
    return {c["image"] for p in pods if not p["metadata"].get("deletionTimestamp")
            for c in p["spec"]["containers"] if c["name"] == names.CONTAINER_GPUS}


def _transition(ctx: CheckContext, suite: Any, name: str, chart: str, version: str | None,
                expect_version: str | None) -> dict[str, float]:
    """One helm transition under a running shared-claim workload, verified and timed."""
    claim = f"rc-{name}"
    before = _workload(ctx, claim)
    devices = _devices(ctx)
    started = time.monotonic()
    with D.PluginReadiness(ctx.cluster) as readiness:
        helm_s = D.install(suite, DEFAULT, chart=chart, version=version, wait_plugin=False)
        status = helm.release_status(ctx.cluster, RELEASE, names.NAMESPACE)
        assert status is not None and status.status == "deployed", status
        if expect_version:
            assert status.chart == f"{names.CHART_NAME}-{expect_version}", status.chart
        tag = ctx.settings.image_tag or f"v{status.app_version}"
        image = f"{names.IMAGE_REPOSITORY}:{tag}"
        helm.wait_plugin_ready(ctx.cluster, RELEASE, names.NAMESPACE, timeout=ctx.timeout(240))
        W.wait_until(W.source_for(ctx.cluster, "pods", names.NAMESPACE, label_selector=PLUGIN_SELECTOR),
                     lambda st: {c["image"] for p in st.values() if not p["metadata"].get("deletionTimestamp")
                                 for c in p["spec"]["containers"] if c["name"] == names.CONTAINER_GPUS} == {image}
                     and all(W.pod_is_ready(p) for p in st.values()),
                     timeout=ctx.timeout(240), what=f"plugin pods running {image}")
        W.wait_until(W.source_for(ctx.cluster, "resourceslices", None,
                                  field_selector=f"spec.driver={names.GPU_DRIVER}"),
                     lambda st: {(str(s["spec"]["pool"]["name"]), str(d["name"])) for s in st.values()
                                 for d in s["spec"].get("devices") or []} == devices,
                     timeout=ctx.timeout(120), what="the same devices published again after the transition")
        transition_s = time.monotonic() - started
    assert _plugin_images(ctx) == {image}
    after = _snapshot(ctx, claim)
    assert after == before, f"{name}: running workload or its claim changed: before {before}, after {after}"
    for pod in WORKLOAD_PODS:
        assert W.pod_is_ready(ctx.get("pods", pod)), f"{pod} not Ready after the {name}"
    # The old workload goes away: its claim is unprepared by the other release's plugin (checkpoint on the node).
    for pod in WORKLOAD_PODS:
        ctx.delete("pods", pod, timeout=60)
    ctx.delete("resourceclaims", claim, timeout=60)
    fresh = f"pod-after-{name}"
    ctx.apply(M.claim_template(f"rct-{name}", ctx.labels, M.claim_spec([M.request("gpu")])),
              M.pod(fresh, ctx.labels, [M.container(claims=["gpu"])], claims={"gpu": ("template", f"rct-{name}")},
                    grace_s=5))
    ctx.pod_ready(fresh, timeout=120)
    assert len(gpu_uuids(ctx.logs(fresh))) == 1
    ctx.delete("pods", fresh, timeout=60)
    return {f"{name}_helm_s": round(helm_s, 2), f"{name}_transition_s": round(transition_s, 2),
            f"{name}_plugin_not_ready_max_s": round(readiness.longest_gap_s, 2)}


@pytest.mark.needs(internet=True)
def test_upgrade_and_downgrade_keep_workloads(ctx: CheckContext, suite: Any) -> None:
    """Last-stable → chart under test → last-stable, each under a running shared-claim workload (see module)."""
    s = ctx.settings
    timings: dict[str, float] = {}
    helm.uninstall(ctx.cluster, RELEASE, names.NAMESPACE, adopt=s.adopt)
    W.wait_deleted(ctx.cluster, "pods", None, names.NAMESPACE, label_selector=PLUGIN_SELECTOR,
                   timeout=ctx.timeout(120))
    timings["install_last_stable_helm_s"] = round(
        D.install(suite, DEFAULT, chart=s.last_stable_chart, version=s.last_stable_version), 2)
    status = helm.release_status(ctx.cluster, RELEASE, names.NAMESPACE)
    assert status is not None and status.chart == f"{names.CHART_NAME}-{s.last_stable_version}", status
    W.wait_until(W.source_for(ctx.cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}"),
                 lambda st: any(s_["spec"].get("devices") for s_ in st.values()), timeout=ctx.timeout(120),
                 what="slices of the last-stable release")
    timings.update(_transition(ctx, suite, "upgrade", s.chart, s.chart_version, s.chart_version))
    new = helm.release_status(ctx.cluster, RELEASE, names.NAMESPACE)
    assert new is not None and new.chart != f"{names.CHART_NAME}-{s.last_stable_version}", \
        f"the chart under test is the last-stable release ({new}): nothing was upgraded"
    timings.update(_transition(ctx, suite, "downgrade", s.last_stable_chart, s.last_stable_version,
                               s.last_stable_version))
    ctx.record["timings"] = timings
    ctx.record["versions"] = {"last_stable": s.last_stable_version, "under_test": new.chart}


STATE_POD = "plugin-state"
CORRUPT = ('cp /state/checkpoint.json /state/checkpoint.json.dra-lab-bak && '
           'sed -i \'s/"v2":{"checksum":[0-9]*/"v2":{"checksum":0,"dummy":"this-should-show-in-diff"/\' '
           '/state/checkpoint.json && grep -q this-should-show-in-diff /state/checkpoint.json && echo corrupted')
RESTORE = 'mv /state/checkpoint.json.dra-lab-bak /state/checkpoint.json && echo restored'


def _state_pod(ctx: CheckContext, name: str, node: str, script: str) -> str:
    """Run ``script`` in a privileged pod on ``node`` with the GPU plugin's state dir at ``/state`` (what
    upstream's clean-state-dirs script does); returns its output once it succeeded."""
    plugin_dir = f"{names.PLUGINS_DIR}/{names.GPU_DRIVER}"
    pod = M.pod(name, ctx.labels, [{"name": "state", "image": M.COMMON_IMAGE, "command": ["sh", "-c", script],
                                    "securityContext": {"privileged": True},
                                    "volumeMounts": [{"name": "state", "mountPath": "/state"}]}],
                restart_policy="Never", grace_s=1)
    pod["spec"].update({"nodeName": node, "tolerations": [{"operator": "Exists"}],
                        "volumes": [{"name": "state", "hostPath": {"path": plugin_dir}}]})
    ctx.apply(pod)
    done = ctx.pod_phase(name, ("Succeeded", "Failed"), timeout=120)
    out = K.pod_log(ctx.cluster, ctx.namespace, name)
    assert done["status"]["phase"] == "Succeeded", f"{name}: {out}"
    return out


def test_corrupted_checkpoint_logs_diff(ctx: CheckContext) -> None:
    """UG3, with the cleanup upstream leaves to a wipe: corrupt the GPU plugin's checkpoint on its node (zero the
    v2 checksum, add ``"dummy"``), replace the plugin pod; the new plugin logs ``checkpoint failed checksum
    verification; unified diff (on-disk vs re-marshaled by current binary)`` with ``dummy`` in the diff and does
    not start (the real plugin refuses a corrupt checkpoint). Then the original file is put back and the
    plugin comes back Ready with its slices."""
    old = D.plugin_pod(ctx.cluster)
    node = str(old["spec"]["nodeName"])
    devices = _devices(ctx)
    assert "corrupted" in _state_pod(ctx, STATE_POD, node, CORRUPT)
    restored = False
    try:
        started = time.monotonic()
        K.delete(ctx.cluster, "pods", old["metadata"]["name"], names.NAMESPACE)
        log = D.container_terminated_with(ctx.cluster, logs.CHECKSUM_DIFF, timeout=ctx.timeout(120))
        detect_s = time.monotonic() - started
        assert "this-should-show-in-diff" in log, log[-2000:]
        assert "--- on-disk" in log and "+++ re-marshaled" in log, log[-2000:]
        assert "on-disk" in log
        _state_pod(ctx, f"{STATE_POD}-restore", node, RESTORE)
        restored = True
    finally:
        if not restored:
            _state_pod(ctx, f"{STATE_POD}-restore", node, RESTORE)
    for p in K.list_(ctx.cluster, "pods", names.NAMESPACE, label_selector=PLUGIN_SELECTOR):
        if p["spec"].get("nodeName") == node:
            K.delete(ctx.cluster, "pods", p["metadata"]["name"], names.NAMESPACE)
    helm.wait_plugin_ready(ctx.cluster, RELEASE, names.NAMESPACE, timeout=ctx.timeout(180))
    W.wait_until(W.source_for(ctx.cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}"),
                 lambda st: {(str(s["spec"]["pool"]["name"]), str(d["name"])) for s in st.values()
                             for d in s["spec"].get("devices") or []} == devices,
                 timeout=ctx.timeout(120), what="slices published again after the checkpoint was restored")
    ctx.record["timings"] = {"corrupt_checkpoint_detected_s": round(detect_s, 2)}
