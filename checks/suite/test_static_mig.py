"""Static MIG without the GPU Operator (roadmap item 7; upstream test_gpu_mig.bats SM1–SM3).

MIG devices are made with the node's own ``nvidia-smi`` from a privileged pod (:mod:`checks.suite.node_mig`),
then the kubelet plugin is restarted (it reads MIG state at start, as the real one enumerates NVML) and its slice
is judged. Every check tears its MIG devices down again and restarts the plugin, so later checks see full GPUs.
Stronger than upstream: the MIG UUID a workload prints is the ``uuid`` attribute of the device its claim got,
and the parent GPU line is the MIG device's ``parentUUID``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from checks.catalog import load_instance
from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.scenarios.driverconfig import PLUGIN_SELECTOR
from checks.suite.context import CheckContext
from checks.suite.node_mig import NodeSmi, unsupported

Obj = dict[str, Any]

pytestmark = [pytest.mark.mig, pytest.mark.fastfeedback, pytest.mark.needs(mig=True), pytest.mark.roadmap(7)]

MIG_KEYS = {"addressingMode", "architecture", "brand", "cudaComputeCapability", "cudaDriverVersion",
            "driverVersion", "parentUUID", "productName", "profile", "resource.kubernetes.io/pciBusID",
            "resource.kubernetes.io/pcieRoot", "type", "uuid"}
"""SM2: DM2's 12 keys plus ``uuid`` (upstream-e2e-tests.md §1.11); ``numaNode`` joins only where sysfs has one."""


def gpu_node(ctx: CheckContext) -> str:
    nodes = sorted({d["_node"] for d in ctx.gpu_devices() if d.get("_node")})
    assert nodes, "no node publishes gpu.nvidia.com devices"
    return str(nodes[0])


def restart_plugin(ctx: CheckContext, ready: Callable[[list[Obj]], bool], what: str) -> list[Obj]:
    """Delete the kubelet-plugin pods (the DaemonSet starts new ones that read MIG state afresh) and wait until the
    GPU slices satisfy ``ready``; returns their devices."""
    for p in K.list_(ctx.cluster, "pods", names.NAMESPACE, label_selector=PLUGIN_SELECTOR):
        K.delete(ctx.cluster, "pods", p["metadata"]["name"], names.NAMESPACE)
    source = W.source_for(ctx.cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}")

    def devices(state: W.State) -> list[Obj]:
        return [d for o in state.values() for d in (o.get("spec") or {}).get("devices") or []]

    state = W.wait_until(source, lambda s: ready(devices(s)), timeout=ctx.timeout(120), what=what)
    W.wait_pods_ready(ctx.cluster, names.NAMESPACE, PLUGIN_SELECTOR, count=1, timeout=ctx.timeout(60))
    return devices(state)


def attr(dev: Obj, key: str) -> Any:
    val = (dev.get("attributes") or {}).get(key) or {}
    return next(iter(val.values()), None)


def mig_devices(devices: list[Obj]) -> list[Obj]:
    return [d for d in devices if attr(d, "type") == "mig"]


@contextlib.contextmanager
def static_mig(ctx: CheckContext) -> Iterator[tuple[NodeSmi, list[Obj]]]:
    """A 1g MIG device on GPU 0 of the first GPU node, the plugin restarted on it; torn down afterwards."""
    inst = load_instance(ctx.settings.instance)
    reason = unsupported(inst)
    if reason:
        pytest.skip(reason)
    smi = NodeSmi(ctx, gpu_node(ctx), inst).start()
    try:
        profile = smi.create_1g()
        ctx.record["profile"] = profile
        devices = restart_plugin(ctx, lambda ds: any(str(attr(d, "uuid") or "").startswith("MIG-")
                                                     for d in mig_devices(ds)),
                                 "a static MIG device in the restarted plugin's slice")
        yield smi, devices
    finally:
        smi.teardown()
        restart_plugin(ctx, lambda ds: not mig_devices(ds) and any(attr(d, "type") == "gpu" for d in ds),
                       "full GPUs again after the MIG teardown")


def test_static_mig_allocate(ctx: CheckContext) -> None:
    """SM1 ``StaticMIG: allocate (1 cnt)``: a workload on class ``mig.nvidia.com`` prints a ``MIG-`` line — the
    uuid of the device its claim got — under its parent's ``GPU-`` line (the device's ``parentUUID``)."""
    with static_mig(ctx) as (_smi, devices):
        ctx.apply(M.claim_template("rct-anymig", ctx.labels, M.claim_spec([M.request("mig", "mig.nvidia.com")])),
                  M.pod("pod-anymig", ctx.labels, [M.container(claims=["mig"])],
                        claims={"mig": ("template", "rct-anymig")}))
        pod = ctx.pod_ready("pod-anymig")
        log = K.log_until(ctx.cluster, ctx.namespace, "pod-anymig", None, lambda t: "UUID: MIG-" in t,
                          timeout=ctx.timeout(30))
        (claim,) = ctx.pod_claims(pod)
        (device,) = [r["device"] for r in R.allocation_results(claim)]
        (dev,) = [d for d in devices if d["name"] == device]
        assert f"(UUID: {attr(dev, 'uuid')})" in log, log
        assert f"(UUID: {attr(dev, 'parentUUID')})" in log, log
        ctx.delete("pods", "pod-anymig")


def test_static_mig_slice_attributes(ctx: CheckContext) -> None:
    """SM2: the static MIG device carries exactly the 13 attribute keys (no counters: it is not a DynamicMIG
    partition)."""
    with static_mig(ctx) as (_smi, devices):
        (dev,) = mig_devices(devices)[:1]
        keys = set(dev.get("attributes") or {}) - {"resource.kubernetes.io/numaNode"}
        assert keys == MIG_KEYS, f"missing {sorted(MIG_KEYS - keys)}, unexpected {sorted(keys - MIG_KEYS)}"
        assert not dev.get("consumesCounters"), dev
        ctx.record["device"] = dev["name"]


def test_static_mig_excludes_parent_gpu(ctx: CheckContext) -> None:
    """SM3 (upstream issue #719): once GPU 0 has a MIG device the parent GPU is no longer announced — the slice
    has a ``MIG-`` device and the same number of devices as before."""
    before = ctx.gpu_devices()
    assert not mig_devices(before), "MIG devices published before any were created"
    with static_mig(ctx) as (_smi, devices):
        assert mig_devices(devices)
        assert len(devices) == len(before), f"{len(before)} devices before, {len(devices)} with the MIG device"
        parent = attr(mig_devices(devices)[0], "parentUUID")
        assert all(attr(d, "uuid") != parent for d in devices), "the parent GPU is still announced"
