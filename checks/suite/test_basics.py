"""Portable basics (roadmap item 12; upstream test_basics.bats B4–B7, B9): the GPU-Operator-independent half.

Marked ``portable`` so a run can select exactly what needs no GPU Operator (``-m portable``); the parts of the
bats file that do need it (B2 no-plugin-pods-before-install, B3 operator installed, B8 image spec) are not
checks here — they test the bats environment, not the driver. Stronger than upstream: B5's jq check was never
enforced (jq exits 0 on ``false``) — here the release, its chart version, app version and the labels and image
tags rendered from them must agree; B7 waited for two components — here every pod of the release must be Ready;
B9 read the dump without knowing when it was written — here the ``Wrote: /tmp/goroutine-stacks.dump`` log
line is awaited first.
"""

from __future__ import annotations

from typing import Any

import pytest

from checks.driver import logs, names
from checks.kube import helm
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios.driverconfig import PLUGIN_SELECTOR, RELEASE, DriverConfig
from checks.suite import driverio as D
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.fastfeedback, pytest.mark.portable, pytest.mark.roadmap(12)]

COMPUTE_DOMAINS = DriverConfig(compute_domains=True, controller_replicas=2, leader_election=True)
"""Compute domains on (shared with the leader-election and controller-metrics checks: one install)."""


def _release(ctx: CheckContext) -> helm.ReleaseStatus:
    status = helm.release_status(ctx.cluster, RELEASE, names.NAMESPACE)
    assert status is not None, f"no helm release {RELEASE} in {names.NAMESPACE}"
    return status


def test_release_and_versions(ctx: CheckContext) -> None:
    """B4/B5: one deployed release; its chart is ``dra-driver-nvidia-gpu-<version>``; every object carries that
    version in ``helm.sh/chart`` and the app version in ``app.kubernetes.io/version``; the plugin image tag is
    ``v<appVersion>`` unless the run overrode ``image.tag`` (§1.2, §1.4)."""
    status = _release(ctx)
    assert status.status == "deployed", status
    prefix = f"{names.CHART_NAME}-"
    assert status.chart.startswith(prefix), status.chart
    chart_version = status.chart[len(prefix):]
    assert status.app_version, "release has no app version"
    if ctx.settings.chart_version:
        assert chart_version == ctx.settings.chart_version, (chart_version, ctx.settings.chart_version)
    ds = K.get(ctx.cluster, "daemonsets", names.kubelet_plugin_daemonset(), names.NAMESPACE)
    labels = ds["metadata"].get("labels") or {}
    assert labels.get("helm.sh/chart") == status.chart, labels
    assert labels.get("app.kubernetes.io/version") == status.app_version, labels
    assert labels.get("app.kubernetes.io/instance") == RELEASE, labels
    images = {c["image"] for c in ds["spec"]["template"]["spec"]["containers"]}
    tag = ctx.settings.image_tag or f"v{status.app_version}"
    assert images == {f"{names.IMAGE_REPOSITORY}:{tag}"}, images
    ctx.record.update({"chart": status.chart, "app_version": status.app_version, "revision": status.revision})


def test_crds_present(ctx: CheckContext) -> None:
    """B6, and the second CRD B6 forgets: both CRDs of the chart's ``crds/`` exist, are Established and serve
    ``resource.nvidia.com/v1beta1`` (§1.12)."""
    for crd_name, kind in ((names.CRD_COMPUTE_DOMAINS, "ComputeDomain"),
                           (names.CRD_COMPUTE_DOMAIN_CLIQUES, "ComputeDomainClique")):
        crd = K.get(ctx.cluster, "customresourcedefinitions", crd_name)
        spec = crd["spec"]
        assert spec["group"] == names.CRD_GROUP and spec["names"]["kind"] == kind, spec["names"]
        assert spec["scope"] == "Namespaced"
        served = [v["name"] for v in spec["versions"] if v.get("served")]
        assert "v1beta1" in served, served
        assert W.condition_status(crd, "Established") == "True", crd.get("status")


def _all_release_pods_ready(ctx: CheckContext) -> list[dict[str, Any]]:
    """Every pod of the release Ready (waited for: the suite's install waits for the plugin only)."""
    state = W.wait_until(
        W.source_for(ctx.cluster, "pods", names.NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"),
        lambda st: bool(st) and all(W.pod_is_ready(p) for p in st.values()), timeout=ctx.timeout(120),
        what=f"every pod of release {RELEASE} Ready")
    return list(state.values())


def test_driver_pods_ready(ctx: CheckContext) -> None:
    """B7, for every pod of the release (B7 waits for two components only): all Ready, no container
    restarted."""
    pods = _all_release_pods_ready(ctx)
    restarts = {f"{p['metadata']['name']}/{cs['name']}": cs.get("restartCount")
                for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or []
                if cs.get("restartCount")}
    assert not restarts, f"driver containers restarted: {restarts}"


def _dump(ctx: CheckContext, pod: str, container: str) -> str:
    """SIGUSR2 to the container's PID 1, wait for the ``Wrote:`` line, read the dump (§10)."""
    before = K.pod_log(ctx.cluster, names.NAMESPACE, pod, container).count(f"Wrote: {names.GOROUTINE_DUMP}")
    D.exec_in(ctx.cluster, names.NAMESPACE, pod, container, ["kill", "-s", "SIGUSR2", "1"])
    K.log_until(ctx.cluster, names.NAMESPACE, pod, container,
                lambda text: text.count(f"Wrote: {names.GOROUTINE_DUMP}") > before, timeout=ctx.timeout(30))
    return D.exec_in(ctx.cluster, names.NAMESPACE, pod, container, ["cat", names.GOROUTINE_DUMP])


def test_sigusr2_dump_gpus(ctx: CheckContext) -> None:
    """B9 for ``gpus``: the dump names ``main.RunPlugin`` and ends in a goroutine listing."""
    pod = D.plugin_pod(ctx.cluster)["metadata"]["name"]
    text = _dump(ctx, pod, names.CONTAINER_GPUS)
    assert names.GOROUTINE_DUMP_MARKER in text, text[:2000]
    assert text.startswith("goroutine "), text[:200]
    assert logs.dump_written(names.GOROUTINE_DUMP).text == f"Wrote: {names.GOROUTINE_DUMP}"


@pytest.mark.compute_domains
@pytest.mark.driver(COMPUTE_DOMAINS)
def test_sigusr2_dump_compute_domains(ctx: CheckContext) -> None:
    """B9 for ``compute-domains`` (compute domains enabled, as the roadmap enables them on every GPU type for the
    controller): the CD plugin's dump names ``main.RunPlugin`` too; every pod of the release is Ready."""
    _all_release_pods_ready(ctx)
    pods = D.driver_pods(ctx.cluster, PLUGIN_SELECTOR)
    pod = sorted(pods, key=lambda p: p["metadata"]["name"])[0]["metadata"]["name"]
    text = _dump(ctx, pod, names.CONTAINER_COMPUTE_DOMAINS)
    assert names.GOROUTINE_DUMP_MARKER in text, text[:2000]
