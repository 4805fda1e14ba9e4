"""MPS sharing on an H100 twin with the driver installed by the real helm (reference §12.5, §6.2; SH2).

The GPU plugin starts the claim's ``mps-control-daemon-<claimUID>-<5 hex>`` Deployment through the API, the
twin's controllers and kubelet run its pod from the driver image, Prepare returns once it is Ready, the
workload containers get ``CUDA_MPS_PIPE_DIRECTORY``, and deleting the workload deletes the Deployment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from checks.driver import names
from checks.driver.configs import OpaqueConfigError
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.wait import source_for, wait_deleted, wait_for
from checks.twin.lambda_twin import Twin, TwinOptions
from checks.twin.nvidia.binaries.mps import Backoff, MpsDaemons, daemon_id
from tests.test_twin_e2e_helm import KUBELET, NS, install

MANIFEST = """
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: rct-mps}
spec:
  spec:
    devices:
      requests: [{name: gpu, exactly: {deviceClassName: gpu.nvidia.com}}]
      config:
      - opaque:
          driver: gpu.nvidia.com
          parameters:
            apiVersion: resource.nvidia.com/v1beta1
            kind: GpuConfig
            sharing: {strategy: MPS, mpsConfig: {defaultActiveThreadPercentage: 50,
                                                  defaultPinnedDeviceMemoryLimit: 10Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pod-mps}
spec:
  restartPolicy: Never
  resourceClaims: [{name: shared, resourceClaimTemplateName: rct-mps}]
  containers:
  - name: ctr0
    image: ubuntu:24.04
    command: [bash, -c, 'echo "pipe=$CUDA_MPS_PIPE_DIRECTORY"; nvidia-smi -L']
    resources: {claims: [{name: shared}]}
  - name: ctr1
    image: ubuntu:24.04
    command: [bash, -c, "trap 'exit 0' TERM; sleep 9999 & wait"]
    resources: {claims: [{name: shared}]}
"""


@pytest.fixture(scope="module")
def mps_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Twin, ClusterClient]]:
    run_dir = tmp_path_factory.mktemp("e2e-mps")
    twin = Twin("gpu_1x_h100_sxm5", run_dir=run_dir / "twin", options=TwinOptions(kubelet=KUBELET)).start()
    try:
        with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=run_dir / "kube") as cluster:
            install(cluster, {"MPSSupport": True})
            yield twin, cluster
    finally:
        twin.stop()


def _get(cluster: ClusterClient, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def _ctr0_done(pod: dict[str, Any]) -> Any:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == "ctr0":
            return (cs.get("state") or {}).get("terminated")
    return None


def test_mps_claim_runs_daemon_deployment_and_sets_pipe_directory(mps_twin: tuple[Twin, ClusterClient]) -> None:
    _twin, cluster = mps_twin
    cluster.kubectl("apply", "-n", "default", "-f", "-", input_text=MANIFEST)
    pod = wait_for(source_for(cluster, "pods", "default", field_selector="metadata.name=pod-mps"),
                   _ctr0_done, timeout=60, what="pod-mps container ctr0 terminated")
    assert _ctr0_done(pod)["exitCode"] == 0
    lines = cluster.kubectl("logs", "-n", "default", "pod-mps", "-c", "ctr0").stdout.splitlines()
    assert lines[0] == "pipe=/tmp/nvidia-mps" and lines[1].startswith("GPU 0: "), lines
    uuid = lines[1].split("(UUID: ")[1].rstrip(")")
    (status,) = pod["status"]["resourceClaimStatuses"]
    claim_uid = _get(cluster, "resourceclaim", "-n", "default", status["resourceClaimName"])["metadata"]["uid"]
    name = f"mps-control-daemon-{claim_uid}-{hashlib.sha256(uuid.encode()).hexdigest()[:5]}"
    dep = _get(cluster, "deployment", "-n", NS, name)
    assert dep["metadata"]["labels"] == {"app": name} and dep["spec"]["selector"]["matchLabels"] == {"app": name}
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["nodeName"] == cluster.kubectl("get", "nodes", "-o", "name").stdout.strip().split("/")[1]
    assert pod_spec["hostPID"] is True
    (ctr,) = pod_spec["containers"]
    assert ctr["name"] == "mps-control-daemon" and ctr["securityContext"]["privileged"] is True
    assert ctr["image"].startswith(names.IMAGE_REPOSITORY + ":")
    assert "nvidia-cuda-mps-control -d" in ctr["args"][0]
    assert "set_default_active_thread_percentage 50" in ctr["args"][0]
    env = {e["name"]: e["value"] for e in ctr["env"]}
    assert env["CUDA_VISIBLE_DEVICES"] == uuid and "MPSSupport=true," in env["FEATURE_GATES"]
    assert dep["status"]["readyReplicas"] == 1
    daemon_pods = _get(cluster, "pods", "-n", NS, "-l", f"app={name}")["items"]
    assert len(daemon_pods) == 1 and daemon_pods[0]["status"]["containerStatuses"][0]["ready"] is True
    # Prepare succeeded on the first try: the plugin waited for the daemon instead of failing the pod.
    events = _get(cluster, "events", "-n", "default")["items"]
    assert not [e for e in events if e["reason"] == "FailedPrepareDynamicResources"], events
    cluster.kubectl("delete", "-n", "default", "pod", "pod-mps", "--wait=false")
    wait_deleted(cluster, "deployments", name, NS, timeout=30)


def test_daemon_that_never_gets_ready_fails_with_the_real_text(mps_twin: tuple[Twin, ClusterClient]) -> None:
    twin, _cluster = mps_twin
    client = twin.api_client()
    try:
        # Pinned to a node that does not exist: its pod never runs, so the Deployment never has a ready replica.
        daemons = MpsDaemons(api_client=client, namespace=NS, node="no-such-node",
                             image=f"{names.IMAGE_REPOSITORY}:v0.5.0-dev", gates={"MPSSupport": True},
                             backoff=Backoff(duration_s=0.2, steps=2))
        from checks.driver.configs import MpsConfig

        uid, uuids = "00000000-0000-0000-0000-000000000001", ("GPU-x",)
        name = daemons.start(uid, uuids, MpsConfig())
        assert name == f"mps-control-daemon-{daemon_id(uid, uuids)}"
        assert daemons.start(uid, uuids, MpsConfig()) == name  # already started: no second create
        with pytest.raises(OpaqueConfigError) as info:
            daemons.assert_ready(name)
        assert str(info.value) == "MPS control daemon is not yet ready: waiting for MPS control daemon to come online"
        daemons.stop(uid, uuids)
    finally:
        client.close()


def test_backoff_and_daemon_id_follow_the_plugin() -> None:
    assert Backoff().delays() == [1.0, 2.0, 4.0]
    assert Backoff(duration_s=4, steps=5).delays() == [4, 8, 10.0, 10.0]
    want = hashlib.sha256(b"GPU-a,GPU-b").hexdigest()[:5]
    assert daemon_id("uid", ["GPU-a", "GPU-b"]) == f"uid-{want}"
