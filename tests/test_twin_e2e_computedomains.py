"""ComputeDomains on twins (reference nvidia-dra-driver.md §11): the clique path on a B200 twin and the no-clique
fallback on a twin without an IMEX fabric, plus the fabric facts and the container's channel view."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.catalog import load_instance
from checks.driver import computedomains as cd
from checks.driver.values import DriverValues
from checks.kube import objects as K
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.helm import InstallOptions, upgrade_install
from checks.kube.wait import source_for, wait_for
from checks.twin.lambda_twin import Twin, TwinOptions
from checks.twin.nvidia import chart_path
from checks.twin.nvidia.channels import ImexChannels, install_channels
from checks.twin.nvidia.fabric import ZERO_UUID, instance_fabric
from kubetwin.kubelet.kubelet import KubeletConfig
from kubetwin.kubelet.seam import PreparedDevice

NS = "dra-driver-nvidia-gpu"

MANIFEST = """
apiVersion: resource.nvidia.com/v1beta1
kind: ComputeDomain
metadata: {name: imex-channel-injection, namespace: default}
spec:
  numNodes: 1
  channel: {resourceClaimTemplate: {name: imex-channel-0}}
---
apiVersion: v1
kind: Pod
metadata: {name: imex-channel-injection, namespace: default}
spec:
  containers:
  - name: ctr
    image: ubuntu:22.04
    command: ["bash", "-c", "ls -la /dev/nvidia-caps-imex-channels; sleep 3600"]
    resources: {claims: [{name: imex-channel-0}]}
  resourceClaims:
  - {name: imex-channel-0, resourceClaimTemplateName: imex-channel-0}
"""


def test_fabric_per_instance() -> None:
    b200 = instance_fabric(load_instance("gpu_1x_b200_sxm6"))
    assert b200.clique_id.endswith(".1") and b200.cluster_uuid != ZERO_UUID
    h100x8 = instance_fabric(load_instance("gpu_8x_h100_sxm5"))
    assert h100x8.state == "completed" and h100x8.cluster_uuid == ZERO_UUID and h100x8.clique_id == ""
    assert instance_fabric(load_instance("gpu_1x_a10")).state == "not-supported"
    assert instance_fabric(load_instance("gpu_1x_b200_sxm6"), imex=False).clique_id == ""


def test_channel_view_lists_like_ls(tmp_path: Path) -> None:
    dev = PreparedDevice(("channel",), "n", "channel-0", view=ImexChannels(242, (0, 1, 10, 2)))
    install_channels(tmp_path, [dev])
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def sh(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, check=False)

    long = sh("ls -la /dev/nvidia-caps-imex-channels").stdout.splitlines()
    assert long[0] == "total 0" and long[1].endswith(" .") and long[2].endswith(" ..")
    assert [ln.split()[-1] for ln in long[3:]] == ["channel0", "channel1", "channel10", "channel2"]
    assert long[3].startswith("crw-rw-rw- 1 root root 242, 0 ")
    assert sh("ls /dev/nvidia-caps-imex-channels").stdout.split() == ["channel0", "channel1", "channel10",
                                                                        "channel2"]
    assert sh("ls /dev/nvidia-caps-imex-channels/channel3").returncode == 2
    assert sh(f"ls {tmp_path}").returncode == 0  # anything else: the real ls


@pytest.fixture(scope="module", params=[True, False], ids=["clique", "no-clique"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterClient,
                                                                                                        bool]]:
    run_dir = tmp_path_factory.mktemp("e2e-cd")
    kcfg = KubeletConfig(backoff_initial_s=0.2, backoff_max_s=1.0, dra_wipe_delay_s=1.0)
    twin = Twin("gpu_1x_b200_sxm6", run_dir=run_dir / "twin",
                options=TwinOptions(kubelet=kcfg, imex=bool(request.param))).start()
    try:
        with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=run_dir / "kube") as c:
            upgrade_install(c, "dra-driver-nvidia-gpu", str(chart_path()), NS, DriverValues(log_verbosity=6)
                            .to_values(), InstallOptions(wait_timeout_s=60))
            yield c, bool(request.param)
    finally:
        twin.stop()


def get(c: ClusterClient, *args: str) -> Any:
    return yaml.safe_load(c.kubectl("get", *args, "-o", "yaml").stdout)


def test_channel_claim_lifecycle(cluster: tuple[ClusterClient, bool], tmp_path: Path) -> None:
    c, clique = cluster
    (tmp_path / "m.yaml").write_text(MANIFEST)
    c.kubectl("apply", "-f", str(tmp_path / "m.yaml"))
    c.kubectl("wait", "--for=condition=Ready", "pod/imex-channel-injection", "--timeout=60s")
    log = K.log_until(c, "default", "imex-channel-injection", None,
                      lambda t: "channel0\n" in t or "No such file" in t, timeout=30)
    uid = get(c, "computedomain", "imex-channel-injection")["metadata"]["uid"]
    if clique:
        assert " channel0" in log and "crw-rw-rw-" in log, log
    else:  # §11.5: the claim succeeds, no channel node is injected
        assert "channel0" not in log
    (plugin,) = get(c, "pods", "-n", NS, "-l", "dra-driver-nvidia-gpu-component=kubelet-plugin")["items"]
    metrics = c.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{plugin['metadata']['name']}:8081/proxy/"
                        "metrics").stdout
    assert re.search(r'nvidia_dra_prepared_devices\{device_type="channel",driver="compute-domain.nvidia.com",'
                     r'node="[^"]+"\} 1\.0', metrics), metrics
    assert re.search(r'nvidia_dra_requests_total\{driver="compute-domain.nvidia.com",operation="prepare"\} '
                     r'[1-9]', metrics), metrics
    cdo = wait_for(source_for(c, "computedomains", "default"),
                   lambda o: (o.get("status") or {}).get("status") == "Ready", timeout=30, what="CD Ready")
    (node,) = cdo["status"]["nodes"]
    assert (node["cliqueID"] != "") == clique and (node["index"] == -1) == (not clique), node
    (daemon,) = get(c, "pods", "-n", NS, "-l", f"{cd.CD_LABEL}={uid}")["items"]
    dlog = c.kubectl("logs", "-n", NS, daemon["metadata"]["name"]).stdout
    assert (cd.NO_CLIQUE_DAEMON in dlog) == (not clique), dlog
    assert daemon["metadata"]["labels"][cd.CLIQUE_LABEL] == node["cliqueID"]
    c.kubectl("delete", "pod", "imex-channel-injection")
    wait_for(source_for(c, "computedomains", "default"),
             lambda o: "nodes" not in (o.get("status") or {}) and o["status"]["status"] == "NotReady",
             timeout=30, what="CD NotReady without nodes")
    c.kubectl("delete", "computedomain", "imex-channel-injection", "--timeout=30s")
    assert not get(c, "daemonsets,resourceclaimtemplates", "-A", "-l", f"{cd.CD_LABEL}={uid}")["items"]
