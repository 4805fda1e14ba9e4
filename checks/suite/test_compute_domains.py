"""Single-node ComputeDomains / IMEX channels (roadmap items 9, 10; upstream CI1–CI2, CM1–CM5, CL1–CL2).

Run where compute domains are enabled (upstream enables them on the B200 types). Every check first reads what
the CD plugin found on the node — ``identified fabric clique`` (an NVLink clique: IMEX channels are injected) or
``no-clique fallback`` (no fabric domain: channel claims still succeed but inject no device node, reference
§11.5) — and then asserts what the real driver does in *that* case, so the same check is right on a clique node
and on a plain HGX box, and results.json records which one the node was.

Stronger than upstream: the controller's objects (finalizer, both ResourceClaimTemplates with their opaque
configs, the DaemonSet's node selector) are checked, the node label and all objects are gone after deletion,
and the channel is checked as a character device with the ``/proc/devices`` major, not just a name.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from checks.driver import computedomains as cd
from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios.driverconfig import DriverConfig
from checks.suite.context import CheckContext

Obj = dict[str, Any]

COMPUTE_DOMAINS = DriverConfig(compute_domains=True)
"""Compute domains on, defaults otherwise (what upstream's Lambda CI installs on *b200 types)."""
LEGACY_IP_MODE = DriverConfig.make({"IMEXDaemonsWithDNSNames": False, "ComputeDomainCliques": False},
                                   compute_domains=True)
"""IMEXDaemonsWithDNSNames off (IP mode; ComputeDomainCliques must go too, §3.3): daemons write CD status."""

pytestmark = [pytest.mark.compute_domains, pytest.mark.needs(compute_domains=True)]

LS_CHANNELS = f"ls -la {cd.CHANNEL_DIR}; sleep 3600"


def compute_domain(name: str, labels: dict[str, str], template: str, *, num_nodes: int = 1,
                   allocation_mode: str | None = None) -> Obj:
    channel: Obj = {"resourceClaimTemplate": {"name": template}}
    if allocation_mode:
        channel["allocationMode"] = allocation_mode
    return {"apiVersion": f"{cd.API_GROUP}/{cd.API_VERSION}", "kind": "ComputeDomain",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"numNodes": num_nodes, "channel": channel}}


def channel_pod(ctx: CheckContext, name: str, template: str) -> Obj:
    return M.pod(name, ctx.labels, [M.container(claims=["channel"], command=["bash", "-c", LS_CHANNELS])],
                 claims={"channel": ("template", template)})


def plugin_pods(ctx: CheckContext) -> list[Obj]:
    return [p for p in K.list_(ctx.cluster, "pods", names.NAMESPACE,
                               label_selector=f"{names.component_label()}={names.COMPONENT_KUBELET_PLUGIN}")
            if not p["metadata"].get("deletionTimestamp")]


def controller_pods(ctx: CheckContext) -> list[Obj]:
    return [p for p in K.list_(ctx.cluster, "pods", names.NAMESPACE,
                               label_selector=f"{names.component_label()}={names.COMPONENT_CONTROLLER}")
            if not p["metadata"].get("deletionTimestamp")]


def cd_plugin_log(ctx: CheckContext) -> str:
    """The compute-domains containers' logs of all plugin pods, once they have said what the fabric is."""
    out = []
    for p in plugin_pods(ctx):
        out.append(K.log_until(ctx.cluster, names.NAMESPACE, p["metadata"]["name"], names.CONTAINER_COMPUTE_DOMAINS,
                               lambda t: "fabric clique" in t or "no-clique fallback" in t,
                               timeout=ctx.timeout(60)))
    return "\n".join(out)


def clique_node(ctx: CheckContext) -> bool:
    """Whether the CD plugin found an NVLink clique (channels injected) rather than the no-clique fallback."""
    log = cd_plugin_log(ctx)
    clique = "identified fabric clique" in log
    ctx.record["fabric"] = "clique" if clique else "no-clique fallback"
    return clique


def wait_cd_slices(ctx: CheckContext) -> list[Obj]:
    """Wait until the CD plugin published ``channel-0`` (and ``daemon-0``) on every plugin node."""
    nodes = {p["spec"].get("nodeName") for p in plugin_pods(ctx)}
    source = W.source_for(ctx.cluster, "resourceslices", None, field_selector=f"spec.driver={names.CD_DRIVER}")
    state = W.wait_until(source, lambda s: nodes <= {(o.get("spec") or {}).get("nodeName") for o in s.values()},
                         timeout=ctx.timeout(60), what="compute-domain.nvidia.com ResourceSlices on every node")
    return list(state.values())


def wait_cd_status(ctx: CheckContext, name: str, predicate: Any, what: str, timeout: float = 30) -> Obj:
    source = W.source_for(ctx.cluster, "computedomains", ctx.namespace, field_selector=f"metadata.name={name}")
    return W.wait_for(source, lambda o: bool(predicate(o.get("status") or {})), timeout=ctx.timeout(timeout),
                      what=f"ComputeDomain {ctx.namespace}/{name}: {what}")


def channel_log(ctx: CheckContext, pod: str, last: str = "channel0") -> str:
    """The workload's ``ls -la`` output once it is complete (the ``last`` entry listed, or ls's error)."""
    return K.log_until(ctx.cluster, ctx.namespace, pod, None, lambda t: f"{last}\n" in t or "No such file" in t,
                       timeout=ctx.timeout(30))


def assert_channels(log: str, expected: list[int], clique: bool) -> None:
    """The workload's ``ls -la`` shows exactly the injected channels as char devices (clique node), or the
    directory is absent (no-clique fallback)."""
    if not clique:
        assert "No such file or directory" in log, f"no-clique node, yet the channel directory exists:\n{log}"
        return
    devices = [ln.split() for ln in log.splitlines() if ln.startswith("c") and " channel" in ln]
    found = {int(parts[-1].removeprefix("channel")): parts for parts in devices}
    for ch in expected:
        assert ch in found, f"channel{ch} missing from:\n{log[:2000]}"
        parts = found[ch]
        assert parts[0].startswith("crw-rw-rw-"), f"channel{ch} is not a 0666 char device: {parts}"
        assert parts[5] == f"{ch}", f"channel{ch} has minor {parts[5]}"


@pytest.mark.roadmap(9)
def test_controller_running(ctx: CheckContext) -> None:
    """B200 presubmit (roadmap 9): the compute-domain controller runs, logs its manager config, and the CD plugin
    publishes exactly ``channel-0`` and ``daemon-0`` per node (§11.4)."""
    pods = controller_pods(ctx)
    assert pods, "no compute-domain controller pod"
    for p in pods:
        W.wait_pod_ready(ctx.cluster, names.NAMESPACE, p["metadata"]["name"], timeout=ctx.timeout(60))
    slices = wait_cd_slices(ctx)
    for s in slices:
        devs = {d["name"]: d.get("attributes") or {} for d in (s.get("spec") or {}).get("devices") or []}
        assert set(devs) == {"channel-0", "daemon-0"}, devs
        assert devs["channel-0"]["type"] == {"string": "channel"} and devs["channel-0"]["id"] == {"int": 0}
        assert devs["daemon-0"]["type"] == {"string": "daemon"}
    ctx.record["controller_pods"] = len(pods)
    ctx.record["fabric_clique"] = clique_node(ctx)


@pytest.mark.roadmap(10)
def test_channel_injection_lifecycle(ctx: CheckContext) -> None:
    """CI1 + CM1 + CM4: a ComputeDomain (numNodes 1) → controller objects → the workload sees ``channel0`` (clique
    node) → CD ``Ready`` with this node; workload deleted → the daemon leaves (``Successfully removed daemon …
    from ComputeDomain <ns>/<name>``), ``nodes`` gone, ``NotReady``; CD deleted → DaemonSet, RCTs, node label
    gone."""
    clique = clique_node(ctx)
    wait_cd_slices(ctx)
    ctx.apply(compute_domain("imex-channel-injection", ctx.labels, "imex-channel-0"))
    dom = ctx.get("computedomains", "imex-channel-injection")
    uid = dom["metadata"]["uid"]
    rct = W.wait_for(W.source_for(ctx.cluster, "resourceclaimtemplates", ctx.namespace),
                     lambda o: o["metadata"]["name"] == "imex-channel-0", timeout=ctx.timeout(30),
                     what="the workload ResourceClaimTemplate")
    labels = rct["metadata"].get("labels") or {}
    assert labels.get(cd.CD_LABEL) == uid and labels.get(cd.TARGET_LABEL) == "Workload", labels
    (req,) = rct["spec"]["spec"]["devices"]["requests"]
    assert req["name"] == "channel" and req["exactly"]["deviceClassName"] == cd.CHANNEL_CLASS, req
    params = rct["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]
    assert params["kind"] == "ComputeDomainChannelConfig" and params["domainID"] == uid, params
    ds = W.wait_for(W.source_for(ctx.cluster, "daemonsets", names.NAMESPACE, label_selector=f"{cd.CD_LABEL}={uid}"),
                    lambda o: o["metadata"]["name"] == cd.daemon_object_name(uid), timeout=ctx.timeout(30),
                    what="the ComputeDomain's daemon DaemonSet")
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {cd.CD_LABEL: uid}, ds["spec"]["template"]["spec"]
    assert K.get(ctx.cluster, "resourceclaimtemplates", cd.daemon_object_name(uid), names.NAMESPACE)
    assert cd.FINALIZER in (ctx.get("computedomains", "imex-channel-injection")["metadata"].get("finalizers") or [])

    ctx.apply(channel_pod(ctx, "imex-channel-injection", "imex-channel-0"))
    pod = ctx.pod_ready("imex-channel-injection", timeout=100)
    node = pod["spec"]["nodeName"]
    assert_channels(channel_log(ctx, "imex-channel-injection"), [0], clique)
    assert (K.get(ctx.cluster, "nodes", node)["metadata"].get("labels") or {}).get(cd.CD_LABEL) == uid
    status = wait_cd_status(ctx, "imex-channel-injection",
                            lambda s: s.get("status") == "Ready" and any(n.get("name") == node
                                                                        for n in s.get("nodes") or []),
                            "Ready with this node listed")
    ctx.record["cd_status_while_running"] = status.get("status")
    daemons = K.list_(ctx.cluster, "pods", names.NAMESPACE, label_selector=f"{cd.CD_LABEL}={uid}")
    assert len(daemons) == 1 and daemons[0]["spec"]["nodeName"] == node, [d["metadata"]["name"] for d in daemons]

    daemon_log: list[str] = []
    follower = threading.Thread(target=lambda: daemon_log.append(K.log_until(
        ctx.cluster, names.NAMESPACE, daemons[0]["metadata"]["name"], cd.DAEMON_CONTAINER,
        lambda t: "Successfully removed" in t or (not clique and "Exiting" in t), timeout=ctx.timeout(60))),
        daemon=True)
    follower.start()
    ctx.delete("pods", "imex-channel-injection")
    wait_cd_status(ctx, "imex-channel-injection", lambda s: "nodes" not in s and s.get("status") == "NotReady",
                   "no nodes and NotReady after the workload left")
    follower.join(timeout=ctx.timeout(60))
    if clique:
        assert daemon_log and "Successfully removed daemon" in daemon_log[0] \
            and f"from ComputeDomain {ctx.namespace}/imex-channel-injection" in daemon_log[0], daemon_log

    ctx.delete("computedomains", "imex-channel-injection", timeout=60)
    ctx.gone("resourceclaimtemplates", "imex-channel-0")
    W.wait_deleted(ctx.cluster, "daemonsets", cd.daemon_object_name(uid), names.NAMESPACE, timeout=ctx.timeout(60))
    assert K.try_get(ctx.cluster, "resourceclaimtemplates", cd.daemon_object_name(uid), names.NAMESPACE) is None
    assert cd.CD_LABEL not in (K.get(ctx.cluster, "nodes", node)["metadata"].get("labels") or {})


@pytest.mark.roadmap(10)
def test_all_channels(ctx: CheckContext) -> None:
    """CI2 (never runs upstream: its version gate is always true): ``allocationMode: All`` injects channel0 …
    channel2047 on a clique node (bats asserts ``channel2047`` and ``channel222``)."""
    clique = clique_node(ctx)
    wait_cd_slices(ctx)
    ctx.apply(compute_domain("imex-channel-injection-all", ctx.labels, "tpl-imex-channels", allocation_mode="All"))
    W.wait_for(W.source_for(ctx.cluster, "resourceclaimtemplates", ctx.namespace),
               lambda o: o["metadata"]["name"] == "tpl-imex-channels", timeout=ctx.timeout(30),
               what="the workload ResourceClaimTemplate")
    ctx.apply(channel_pod(ctx, "imex-channel-injection-all", "tpl-imex-channels"))
    ctx.pod_ready("imex-channel-injection-all", timeout=80)
    log = channel_log(ctx, "imex-channel-injection-all", last="channel999")
    assert_channels(log, [0, 222, cd.MAX_CHANNELS - 1] if clique else [], clique)
    if clique:
        assert sum(1 for ln in log.splitlines() if ln.startswith("c")) == cd.MAX_CHANNELS
    ctx.delete("pods", "imex-channel-injection-all")
    ctx.delete("computedomains", "imex-channel-injection-all", timeout=60)


def test_unknown_field_rejected(ctx: CheckContext) -> None:
    """CM2: a channel claim whose opaque config has an unknown field fails to prepare permanently — the pod's
    ``FailedPrepareDynamicResources`` event and the plugin log carry the strict-decoding error."""
    wait_cd_slices(ctx)
    bad = {"apiVersion": f"{cd.API_GROUP}/{cd.API_VERSION}", "kind": "ComputeDomainChannelConfig",
           "domainID": "not-needed-for-test", "unexpectedField": "foo"}
    ctx.apply(M.claim("batssuite-rc-bad-opaque-config", ctx.labels, M.claim_spec(
        [M.request("chan", cd.CHANNEL_CLASS)],
        config=[{"requests": ["chan"], "opaque": {"driver": names.CD_DRIVER, "parameters": bad}}])))
    ctx.apply(M.pod("batssuite-pod-boc", ctx.labels, [M.container(claims=["chan"])],
                    claims={"chan": ("claim", "batssuite-rc-bad-opaque-config")}))
    ev = ctx.event("batssuite-pod-boc", "FailedPrepareDynamicResources", timeout=30)
    msg = str(ev.get("message") or "")
    assert "error preparing devices" in msg and 'strict decoding error: unknown field "unexpectedField"' in msg, msg
    logs = "\n".join(K.pod_log(ctx.cluster, names.NAMESPACE, p["metadata"]["name"], names.CONTAINER_COMPUTE_DOMAINS)
                     for p in plugin_pods(ctx))
    assert any("Permanent error" in ln and 'unknown field "unexpectedField"' in ln for ln in logs.splitlines()), \
        "no 'Permanent error' line with the strict-decoding text in the CD plugin log"
    ctx.delete("pods", "batssuite-pod-boc", grace_period_s=0)
    ctx.delete("resourceclaims", "batssuite-rc-bad-opaque-config")


@pytest.mark.driver(LEGACY_IP_MODE)
def test_legacy_ip_mode(ctx: CheckContext) -> None:
    """IMEXDaemonsWithDNSNames=false (never tested upstream, roadmap §8): IP mode — the daemon restarts IMEX on
    updates instead of rewriting /etc/hosts, writes itself into ``CD.status.nodes`` (no cliques), and the channel
    is injected as in DNS mode."""
    clique = clique_node(ctx)
    wait_cd_slices(ctx)
    ctx.apply(compute_domain("imex-ip-mode", ctx.labels, "imex-ip-mode-0"))
    W.wait_for(W.source_for(ctx.cluster, "resourceclaimtemplates", ctx.namespace),
               lambda o: o["metadata"]["name"] == "imex-ip-mode-0", timeout=ctx.timeout(30),
               what="the workload ResourceClaimTemplate")
    ctx.apply(channel_pod(ctx, "imex-ip-mode", "imex-ip-mode-0"))
    pod = ctx.pod_ready("imex-ip-mode", timeout=100)
    assert_channels(channel_log(ctx, "imex-ip-mode"), [0], clique)
    status = wait_cd_status(ctx, "imex-ip-mode", lambda s: s.get("status") == "Ready", "Ready")
    (entry,) = [n for n in status["status"].get("nodes") or [] if n.get("name") == pod["spec"]["nodeName"]]
    uid = ctx.get("computedomains", "imex-ip-mode")["metadata"]["uid"]
    assert not K.list_(ctx.cluster, "computedomaincliques", names.NAMESPACE, label_selector=f"{cd.CD_LABEL}={uid}")
    if clique:
        (daemon,) = K.list_(ctx.cluster, "pods", names.NAMESPACE, label_selector=f"{cd.CD_LABEL}={uid}")
        log = K.log_until(ctx.cluster, names.NAMESPACE, daemon["metadata"]["name"], cd.DAEMON_CONTAINER,
                          lambda t: "(re)start IMEX daemon" in t, timeout=ctx.timeout(30))
        assert "(re)start IMEX daemon" in log
        assert entry.get("ipAddress") == daemon["status"].get("podIP"), (entry, daemon["status"].get("podIP"))
    ctx.delete("pods", "imex-ip-mode")
    ctx.delete("computedomains", "imex-ip-mode", timeout=60)


def _levels() -> list[Any]:
    return [pytest.param(level, marks=pytest.mark.driver(DriverConfig(compute_domains=True, log_verbosity=level)),
                         id=f"v{level}") for level in (0, 2, 6)]


@pytest.mark.parametrize("level", _levels())
def test_log_verbosity(ctx: CheckContext, level: int) -> None:
    """CL1 + CL2: the startup block at every level (controller: ``Verbosity:``, ``"MPSSupport":false``,
    ``additionalNamespaces:``, ``controller manager config`` with ``maxNodesPerIMEXDomain``; CD plugin:
    ``Verbosity``, ``nodeName``, the fabric line, ``driver version validation``), and per level what must and
    must not appear once a ComputeDomain exists (reflector lines from 2, ``Listing and watching`` from 3,
    ``round_trippers.go`` and the cleanup line only at 6)."""
    wait_cd_slices(ctx)
    ctx.apply(compute_domain("cd-logging", ctx.labels, "cd-logging-0", num_nodes=0))
    wait_cd_status(ctx, "cd-logging", lambda s: s.get("status") == "Ready", "Ready (numNodes 0)")
    plugin = cd_plugin_log(ctx)
    for text in ("Verbosity", "nodeName", "driver version validation"):
        assert text in plugin, f"CD plugin log lacks {text!r}"
    (ctrl,) = controller_pods(ctx)[:1]
    must = ["Verbosity:", '"MPSSupport":false', "additionalNamespaces:", "controller manager config",
            "maxNodesPerIMEXDomain"]
    must_not: list[str] = []
    if level >= 2:
        must += ["Processing added or updated ComputeDomain", "reflector.go", "Caches populated"]
    else:
        must_not += ["Processing added or updated ComputeDomain", "reflector.go", "Caches populated"]
    if level >= 3:
        must.append("Listing and watching")
    else:
        must_not.append("Listing and watching")
    if level >= 6:
        must += ["Cleanup: perform for", "round_trippers.go", '"Response" verb="GET"']
    else:
        must_not.append("round_trippers.go")
    log = K.log_until(ctx.cluster, names.NAMESPACE, ctrl["metadata"]["name"], names.CONTAINER_CONTROLLER,
                      lambda t: all(m in t for m in must), timeout=ctx.timeout(30))
    missing = [m for m in must if m not in log]
    present = [m for m in must_not if m in log]
    assert not missing and not present, f"level {level}: missing {missing}, unexpected {present}"
    with contextlib.suppress(Exception):
        ctx.delete("computedomains", "cd-logging", timeout=60)
