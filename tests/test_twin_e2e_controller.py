"""compute-domain-controller leader election on a twin (reference nvidia-dra-driver.md §8, bats LE1-LE2).

Two replicas installed by the real helm elect one leader through the Lease ``dra-driver-nvidia-gpu-controller``
in ``dra-driver-nvidia-gpu``; deleting the leader pod hands the Lease to another pod. Durations are shortened
through the chart's ``controller.leaderElection.*`` values so the test is quick.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from checks.driver.values import DriverValues
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.helm import InstallOptions, upgrade_install
from checks.kube.wait import source_for, wait_for
from checks.twin.lambda_twin import Twin, TwinOptions
from checks.twin.nvidia import chart_path
from checks.twin.nvidia.binaries.controller import go_duration
from kubetwin.kubelet.kubelet import KubeletConfig

NS = "dra-driver-nvidia-gpu"
LEASE = "dra-driver-nvidia-gpu-controller"
SELECTOR = "dra-driver-nvidia-gpu-component=controller"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterClient]:
    run_dir = tmp_path_factory.mktemp("e2e-ctrl")
    kcfg = KubeletConfig(backoff_initial_s=0.2, backoff_max_s=1.0, dra_wipe_delay_s=1.0)
    twin = Twin("gpu_1x_a10", run_dir=run_dir / "twin", options=TwinOptions(kubelet=kcfg)).start()
    try:
        with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=run_dir / "kube") as c:
            yield c
    finally:
        twin.stop()


def lease(cluster: ClusterClient) -> dict[str, Any]:
    return dict(yaml.safe_load(cluster.kubectl("get", "lease", "-n", NS, LEASE, "-o", "yaml").stdout))


def controller_pods(cluster: ClusterClient) -> list[str]:
    out = yaml.safe_load(cluster.kubectl("get", "pods", "-n", NS, "-l", SELECTOR, "-o", "yaml").stdout)
    return sorted(p["metadata"]["name"] for p in out["items"] if not p["metadata"].get("deletionTimestamp"))


def holder_pod(holder: str, pods: list[str]) -> str | None:
    """The pod whose name + ``-<uuid>`` is the holder identity (§8)."""
    for p in pods:
        if re.fullmatch(re.escape(p) + r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", holder):
            return p
    return None


def test_go_durations() -> None:
    assert go_duration("15s") == 15 and go_duration("1m30s") == 90 and go_duration("500ms") == 0.5
    with pytest.raises(ValueError, match='time: invalid duration "15"'):
        go_duration("15")


def test_two_replicas_one_leader_and_failover(cluster: ClusterClient) -> None:
    values = DriverValues(controller_replicas=2, leader_election=True, extra={"controller": {"leaderElection": {
        "leaseDuration": "3s", "renewDeadline": "2s", "retryPeriod": "200ms"}}}).to_values()
    upgrade_install(cluster, "dra-driver-nvidia-gpu", str(chart_path()), NS, values,
                    InstallOptions(wait_timeout_s=60))
    src = source_for(cluster, "leases", NS)
    wait_for(src, lambda o: o["metadata"]["name"] == LEASE and bool(o["spec"].get("holderIdentity")),
             timeout=30, what="the controller Lease held")
    wait_for(source_for(cluster, "pods", NS, label_selector=SELECTOR),
             lambda p: p["status"].get("phase") == "Running" and len(controller_pods(cluster)) == 2,
             timeout=30, what="two controller pods running")
    pods = controller_pods(cluster)
    spec = lease(cluster)["spec"]
    leader = holder_pod(spec["holderIdentity"], pods)
    assert leader is not None, (spec, pods)
    assert spec["leaseDurationSeconds"] == 3

    logs = {p: cluster.kubectl("logs", "-n", NS, p).stdout for p in pods}
    became = [p for p, text in logs.items() if '"Became leader, starting controller"' in text]
    assert became == [leader]
    assert f'"Successfully acquired lease" lock="{NS}/{LEASE}"' in logs[leader]
    (other,) = [p for p in pods if p != leader]
    assert '"New leader elected" leader="' + spec["holderIdentity"] + '"' in logs[other]
    assert '"Leader election enabled"' in logs[other] or "Leader election enabled" in logs[other]

    cluster.kubectl("delete", "pod", "-n", NS, leader, "--wait=false")
    new = wait_for(src, lambda o: o["metadata"]["name"] == LEASE and bool(o["spec"].get("holderIdentity"))
                   and not o["spec"]["holderIdentity"].startswith(leader + "-"),
                   timeout=30, what="another pod taking over the Lease")
    assert holder_pod(new["spec"]["holderIdentity"], controller_pods(cluster)) not in (None, leader)
    assert new["spec"]["leaseTransitions"] >= 1
