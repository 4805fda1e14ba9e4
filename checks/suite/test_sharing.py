"""GPU sharing: TimeSlicing and MPS (upstream test_gpu_sharing.bats SH1–SH2) and their gates and validation.

Upstream installs both gates for the whole file and never checks what happens without them, nor that a
bad interval is refused. Here the expected failure texts come from :mod:`checks.driver.configs` — the driver's
own rule texts and Prepare error chain (nvidia-dra-driver.md §5.2, §5.4) — and must appear in the pod's
``FailedPrepareDynamicResources`` event while the pod stays in ContainerCreating.

Real-driver note: the webhook (off by default) would reject a bad interval at admission instead; these checks
run with the default ``webhook.enabled=false``, so validation happens at Prepare.
"""

from __future__ import annotations

from typing import Any

import pytest

from checks.driver import configs as CFG
from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.scenarios.driverconfig import DEFAULT, MPS, TIMESLICING, DriverConfig
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.gpu_sharing, pytest.mark.fastfeedback]

Obj = dict[str, Any]


def _two_container_pod(ctx: CheckContext, pod: str, template: str, config: Obj) -> list[Obj]:
    return ctx.apply(
        M.claim_template(template, ctx.labels, M.claim_spec([M.request("gpu")], config=[config])),
        M.pod(pod, ctx.labels, [M.container("ctr0", claims=["shared-gpu"]), M.container("ctr1", claims=["shared-gpu"])],
              claims={"shared-gpu": ("template", template)}, grace_s=5))


def expected_prepare_failure(parameters: Obj, cfg: DriverConfig) -> str:
    """The inner Prepare error the GPU plugin reports for ``parameters`` under ``cfg``'s gates (§5.4 item 2)."""
    gates = {g: cfg.gate(g) for g in ("TimeSlicingSettings", "MPSSupport")}
    try:
        CFG.normalize_and_validate(CFG.decode(parameters), gates)
    except CFG.OpaqueConfigError as exc:
        return str(exc)
    raise AssertionError(f"{parameters} is valid under {cfg.key}; nothing to expect")


def _assert_prepare_fails(ctx: CheckContext, pod_name: str, parameters: Obj, cfg: DriverConfig) -> str:
    """The pod stays in ContainerCreating and its FailedPrepareDynamicResources event carries the full chain."""
    inner = expected_prepare_failure(parameters, cfg)
    ev = ctx.event(pod_name, "FailedPrepareDynamicResources", timeout=60)
    pod = ctx.get("pods", pod_name)
    (claim,) = ctx.pod_claims(pod)
    meta = claim["metadata"]
    want = CFG.prepare_error(ctx.namespace, meta["name"], meta["uid"], inner)
    message = str(ev.get("message") or "")
    assert want in message, f"event message {message!r} lacks {want!r}"
    status = pod.get("status") or {}
    assert status.get("phase") == "Pending" and W.condition_status(pod, "Ready") != "True", status
    waiting = [((cs.get("state") or {}).get("waiting") or {}).get("reason")
               for cs in status.get("containerStatuses") or []]
    assert all(w == "ContainerCreating" for w in waiting), waiting
    return message


TS_SHORT = M.gpu_config(strategy=CFG.STRATEGY_TIME_SLICING, interval="Short")


@pytest.mark.driver(TIMESLICING)
def test_timeslicing_two_containers_share(ctx: CheckContext) -> None:
    """SH1 ``GPUs: TimeSlicing — 2 containers share GPU with Short interval``: both containers see the one
    allocated GPU (compared with the claim's device, not only with each other)."""
    _two_container_pod(ctx, "pod-timeslicing", "rct-timeslicing-gpu", TS_SHORT)
    pod = ctx.pod_ready("pod-timeslicing")
    outs = [R.gpu_uuids(ctx.logs("pod-timeslicing", c)) for c in ("ctr0", "ctr1")]
    assert R.same_uuid(outs), outs
    (claim,) = ctx.pod_claims(pod)
    (res,) = R.allocation_results(claim)
    dev = R.find_device(ctx.gpu_devices(), res)
    assert dev is not None and R.attr(dev, "uuid") == outs[0][0]


@pytest.mark.driver(DEFAULT)
def test_timeslicing_without_gate_fails_prepare(ctx: CheckContext) -> None:
    """Without ``TimeSlicingSettings`` the claim is allocated but Prepare refuses it with the driver's text."""
    _two_container_pod(ctx, "pod-timeslicing", "rct-timeslicing-gpu", TS_SHORT)
    ctx.record["event"] = _assert_prepare_fails(ctx, "pod-timeslicing", TS_SHORT["opaque"]["parameters"], DEFAULT)


@pytest.mark.driver(TIMESLICING)
def test_invalid_interval_rejected_at_prepare(ctx: CheckContext) -> None:
    """An unknown interval passes the API (opaque parameters are not validated there) and fails at Prepare
    with ``unknown time-slice interval: …, supported time-slice intervals: Default, Short, Medium, Long``."""
    bad = M.gpu_config(strategy=CFG.STRATEGY_TIME_SLICING, interval="VeryShort")
    _two_container_pod(ctx, "pod-bad-interval", "rct-bad-interval", bad)
    message = _assert_prepare_fails(ctx, "pod-bad-interval", bad["opaque"]["parameters"], TIMESLICING)
    assert "unknown time-slice interval: VeryShort" in message
    ctx.record["event"] = message


MPS_CONFIG = M.gpu_config(strategy=CFG.STRATEGY_MPS,
                          mps={"defaultActiveThreadPercentage": 50, "defaultPinnedDeviceMemoryLimit": "10Gi"})


def _mps_daemons(ctx: CheckContext) -> list[Obj]:
    return [d for d in K.list_(ctx.cluster, "deployments", names.NAMESPACE)
            if d["metadata"]["name"].startswith("mps-control-daemon-")]


@pytest.mark.driver(MPS)
def test_mps_two_containers_share(ctx: CheckContext) -> None:
    """SH2 ``GPUs: MPS — 2 containers share GPU with MPS config``: both containers see the claim's GPU, the
    driver runs one ``mps-control-daemon-<claimUID>-…`` Deployment for the claim (§12.5; upstream accepted
    any Deployment with that substring anywhere), and it goes away when the pod does."""
    _two_container_pod(ctx, "pod-mps", "rct-mps-gpu", MPS_CONFIG)
    pod = ctx.pod_ready("pod-mps")
    outs = [R.gpu_uuids(ctx.logs("pod-mps", c)) for c in ("ctr0", "ctr1")]
    assert R.same_uuid(outs), outs
    (claim,) = ctx.pod_claims(pod)
    uid = claim["metadata"]["uid"]
    mine = [d for d in _mps_daemons(ctx) if d["metadata"]["name"].startswith(f"mps-control-daemon-{uid}-")]
    assert len(mine) == 1, [d["metadata"]["name"] for d in _mps_daemons(ctx)]
    assert ((mine[0].get("status") or {}).get("readyReplicas") or 0) >= 1, mine[0].get("status")
    ctx.delete("pods", "pod-mps")
    W.wait_deleted(ctx.cluster, "deployments", mine[0]["metadata"]["name"], names.NAMESPACE,
                   timeout=ctx.timeout(60))


@pytest.mark.driver(DEFAULT)
def test_mps_without_gate_fails_prepare(ctx: CheckContext) -> None:
    """Without ``MPSSupport`` an MPS claim fails Prepare with the driver's gate text."""
    _two_container_pod(ctx, "pod-mps", "rct-mps-gpu", MPS_CONFIG)
    ctx.record["event"] = _assert_prepare_fails(ctx, "pod-mps", MPS_CONFIG["opaque"]["parameters"], DEFAULT)
