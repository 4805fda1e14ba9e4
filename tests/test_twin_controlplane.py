"""kube-system control-plane mirror pods carry the twin's real settings (issue 11 item 4)."""

from __future__ import annotations

import pytest

from checks.twin.lambda_twin import Twin
from kubetwin.api.resources import core
from kubetwin.cluster import Cluster, ClusterOptions, feature_gates, features_for
from kubetwin.controlplane import MIRROR_ANNOTATION
from kubetwin.errors import ConfigError
from kubetwin.nodes import NodeSpec


def _flag(cmd: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}=")]
    return value


def test_control_plane_pods_are_running_mirrors_with_real_settings(twin: Twin) -> None:
    pods, _ = twin.api.list(core("pods"), "kube-system", label_selector="tier=control-plane")
    by_component = {p["metadata"]["labels"]["component"]: p for p in pods}
    assert set(by_component) == {"kube-apiserver", "kube-scheduler", "kube-controller-manager", "etcd"}
    node = twin.node_names[0]
    for comp, pod in by_component.items():
        assert pod["metadata"]["name"] == f"{comp}-{node}"
        assert pod["metadata"]["annotations"][MIRROR_ANNOTATION]
        (owner,) = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("Node", node)
        assert pod["spec"]["nodeName"] == node and pod["spec"]["hostNetwork"] is True
        # The kubelet never runs a mirror pod: its status stays what the static pod reports.
        assert pod["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        assert pod["status"]["containerStatuses"][0]["ready"] is True
    cmd = by_component["kube-apiserver"]["spec"]["containers"][0]["command"]
    assert cmd[0] == "kube-apiserver"
    assert _flag(cmd, "secure-port") == str(twin.server.port if twin.server else 0)
    gates = dict(g.split("=") for g in _flag(cmd, "feature-gates").split(","))
    # What the twin's scheduler honours, nothing invented: the upstream extres test greps this.
    want = {k: str(v).lower() for k, v in feature_gates(twin.scheduler_settings.features).items()}
    assert gates == want and gates["DRAExtendedResource"] == "true"
    assert _flag(cmd, "runtime-config") == "resource.k8s.io/v1=true"
    assert by_component["kube-apiserver"]["spec"]["containers"][0]["image"] == (
        f"registry.k8s.io/kube-apiserver:{twin.server.version.git_version if twin.server else ''}")


def test_gates_follow_the_kubernetes_version_and_explicit_settings() -> None:
    # A default 1.35 cluster has the beta DRA gates off; Lambda CI's kubeadm sets two of them, and the twin then
    # schedules with them and shows exactly that on the kube-apiserver command line.
    opts = ClusterOptions(kube_version="1.35", server=False, feature_gates={"DRAExtendedResource": True})
    with Cluster(options=opts) as c:
        c.add_node(NodeSpec(name="n0", internal_ip="10.0.0.2", pod_cidr="10.244.0.0/24"))
        assert c.scheduler_settings.features.extended_resource is True
        assert c.scheduler_settings.features.partitionable_devices is False
        pods, _ = c.api.list(core("pods"), "kube-system", label_selector="component=kube-apiserver")
        gates = _flag(pods[0]["spec"]["containers"][0]["command"], "feature-gates")
        assert "DRAExtendedResource=true" in gates.split(",") and "DRAPartitionableDevices=false" in gates.split(",")
    with pytest.raises(ConfigError, match="unknown DRA feature gate 'NoSuchGate'"):
        features_for("1.36", {"NoSuchGate": True})
