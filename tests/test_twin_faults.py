"""The twin's fault switch (kubetwin.api.faults) and how the lab's client lives with each fault.

Spec parsing and the deterministic rates are checked on their own; the rest runs against the session twin
through real HTTP: the official client and the lab's waits see exactly what the switch injects, and each
fault is turned off again at the end of its test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from checks.kube import helm
from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.client import ClusterClient, ClusterTarget
from checks.twin.lambda_twin import Twin
from kubetwin.api.faults import FaultRule, Faults, parse
from kubetwin.errors import ConfigError


def test_spec_parsing_and_errors() -> None:
    rules = parse("5xx:0.1, 429:0.5:2,drop-watch,410:0.3,slow:0.2:0.05")
    assert [(r.name, r.rate, r.arg) for r in rules] == [("5xx", 0.1, 0.0), ("429", 0.5, 2.0),
                                                       ("drop-watch", 1.0, 0.0), ("410", 0.3, 0.0),
                                                       ("slow", 0.2, 0.05)]
    for bad in ("boom", "5xx:2", "429:x", "slow:0.5:-1", "5xx:0.1:1:2"):
        with pytest.raises(ConfigError):
            parse(bad)
    assert parse("") == []


def test_rates_are_even_and_repeatable() -> None:
    rule = FaultRule("5xx", 0.25)
    hits = [rule.strikes() for _ in range(12)]
    assert hits == [True, False, False, False] * 3 and rule.hits == 3


@pytest.fixture
def faulty(twin: Twin) -> Iterator[tuple[Faults, ClusterClient]]:
    assert twin.server is not None
    faults = twin.server.faults
    with ClusterClient(ClusterTarget(Path(twin.kubeconfig))) as cluster:
        try:
            yield faults, cluster
        finally:
            faults.configure("")


def test_5xx_names_itself_and_reads_are_retried(faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure("5xx:0.5")
    for _ in range(4):  # every second request fails; the lab's reads retry through it
        assert K.get(cluster, "namespaces", "default")["metadata"]["name"] == "default"
    assert faults.counts()["5xx"] >= 2
    faults.configure("5xx:1")
    with pytest.raises(ApiException) as err:
        K.create(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never"}}, "default")
    assert err.value.status == 503 and "injected fault: 5xx" in str(err.value.body)


def test_429_with_retry_after_is_retried_for_writes_too(faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure("429:0.5:1")
    made = K.create(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-429"}},
                    "default")
    try:
        assert made["metadata"]["name"] == "after-429" and faults.counts()["429"] >= 1
    finally:
        faults.configure("")
        K.delete(cluster, "configmaps", "after-429", "default")


class CreatesAfterFirstList:
    """The real list-watch, which creates the awaited object right after its first LIST (so only a watch —
    dropped or expired by the faults — can deliver it)."""

    def __init__(self, cluster: ClusterClient) -> None:
        self.cluster = cluster
        self.inner = W.source_for(cluster, "configmaps", "default", field_selector="metadata.name=late")
        self.description = self.inner.description
        self.lists = 0

    def list(self) -> tuple[list[dict[str, object]], str]:
        out = self.inner.list()
        self.lists += 1
        if self.lists == 1:
            K.create(self.cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}, "default")
        return out

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[W.WatchStreamEvent]:
        return self.inner.watch(resource_version, timeout_s)


@pytest.mark.parametrize("fault", ["drop-watch", "410"])
def test_waits_survive_dropped_and_expired_watches(fault: str, faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure(f"{fault}:1")
    source = CreatesAfterFirstList(cluster)
    opts = W.WaitOptions()
    try:
        W.wait_until(source, bool, timeout=30, what="configmap late", options=opts)
        hits = faults.counts()
    finally:
        faults.configure("")
        K.delete(cluster, "configmaps", "late", "default")
    assert hits[fault] >= 1, hits
    assert opts.stats.lists >= 2  # the dropped/expired watches were followed by relists


def test_plugin_crash_is_a_generic_container_crash() -> None:
    import checks.twin.nvidia.binaries  # noqa: F401  (registers dra-lab's alias)

    assert [(r.name, r.target) for r in parse("plugin-crash")] == [("crash", "gpus")]
    for bad in ("crash", "crash:"):
        with pytest.raises(ConfigError):
            parse(bad)


def _waiting(pod: dict[str, Any]) -> str:
    return "".join(((cs.get("state") or {}).get("waiting") or {}).get("reason") or ""
                   for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def test_crash_loops_the_named_container_with_a_log_line(faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure("crash:crasher")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher", "labels": {"app": "crasher"}},
           "spec": {"containers": [{"name": "crasher", "image": "busybox:1.36", "command": ["sleep", "600"]}],
                    "terminationGracePeriodSeconds": 0}}
    K.create(cluster, pod, "default")
    try:
        got = W.wait_for(W.source_for(cluster, "pods", "default", field_selector="metadata.name=crasher"),
                         lambda p: _waiting(p) == "CrashLoopBackOff", timeout=30, what="crasher crash-looping")
        status = got["status"]["containerStatuses"][0]
        assert status["lastState"]["terminated"]["exitCode"] == 1
        log = str(cluster.core.read_namespaced_pod_log("crasher", "default", container="crasher", previous=True))
        assert "injected fault: crash:crasher (container crasher" in log
        assert faults.counts()["crash"] >= 1
        # what a plugin rollout timeout appends: the container's state and the line it died with
        trouble = helm.plugin_pod_trouble(cluster, "default", "app=crasher")
        assert "plugin crasher/crasher:" in trouble and "last log: injected fault: crash:crasher" in trouble
    finally:
        faults.configure("")
        K.delete(cluster, "pods", "crasher", "default")


def test_node_notready_stops_the_heartbeat_as_the_lifecycle_controller_says(
        twin: Twin, faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    node = twin.node_names[0]
    nodes = W.source_for(cluster, "nodes", field_selector=f"metadata.name={node}")
    faults.configure("node-notready")
    try:
        got = W.wait_for(nodes, lambda n: W.condition_status(n, "Ready") == "Unknown", timeout=20,
                         what=f"node {node} Ready Unknown")
        ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert {(t["key"], t["effect"]) for t in got["spec"]["taints"]} == {
            ("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")}
        # what a plugin rollout timeout appends
        assert (f"node {node} NotReady (Ready=Unknown NodeStatusUnknown: Kubelet stopped posting node status.)"
                in helm.not_ready_nodes(cluster))
    finally:
        faults.configure("")
    # as in a real cluster, the kubelet posts Ready first and the controller then removes the taints
    W.wait_for(nodes, lambda n: W.condition_status(n, "Ready") == "True" and not n["spec"].get("taints"),
               timeout=20, what=f"node {node} Ready again, untainted")
