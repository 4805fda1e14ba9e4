"""Twin node reboot (roadmap item 14): the annotation request, a new boot id, containers killed and started again
on the same node disk, and the NodeDisruptor that drives it through the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.disruptors import TwinReboot, boot_id, disruptor_for
from checks.twin.lambda_twin import Twin
from kubetwin.cluster import REBOOT_ANNOTATION


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Twin, ClusterClient]]:
    run_dir = tmp_path_factory.mktemp("reboot")
    t = Twin("gpu_1x_a10", run_dir=run_dir / "twin").start()
    try:
        with ClusterClient(ClusterTarget(t.kubeconfig), run_dir=run_dir / "kube") as c:
            yield t, c
    finally:
        t.stop()


def test_reboot_restarts_containers_on_the_same_disk(twin: tuple[Twin, ClusterClient]) -> None:
    t, c = twin
    node = t.node_names[0]
    marker = t.kubelets[node].host_root / "var" / "lib" / "kubelet" / "plugins" / "disk-survives"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("x")
    K.create(c, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "default"},
                 "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}})
    pod = W.wait_pod_ready(c, "default", "sleeper", timeout=30)
    before = pod["status"]["containerStatuses"][0]["containerID"]
    assert isinstance(disruptor_for(c, node), TwinReboot)
    record = TwinReboot(c).reboot(node, timeout=30)
    assert record.new_boot_id not in ("", record.old_boot_id) and record.new_boot_id == boot_id(c, node)
    W.wait_for(W.source_for(c, "pods", "default", field_selector="metadata.name=sleeper"),
               lambda p: W.pod_is_ready(p) and p["status"]["containerStatuses"][0]["containerID"] != before,
               timeout=30, what="the pod running again in a new container")
    assert marker.read_text() == "x"
    assert REBOOT_ANNOTATION in (K.get(c, "nodes", node)["metadata"].get("annotations") or {})
