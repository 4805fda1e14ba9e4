"""The driver installed on a running twin with the real helm, the way the suite installs it on a cluster.

One H100 twin per module. The tests run in file order and build on each other like an operator's session:
install → slices as reference nvidia-dra-driver.md §4.6 (a) → upgrade to DynamicMIG (pods roll, §4.6 (b)
split slices) → back → a forbidden gate combination (real error, exit 1, CrashLoopBackOff, §3.3) → uninstall
(the kubelet wipes the driver's slices once the plugin is gone, kubernetes-dra.md §1.5).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.driver import names
from checks.driver.slices import publish
from checks.driver.values import DriverValues
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.helm import InstallOptions, uninstall, upgrade_install
from checks.kube.wait import source_for, wait_for, wait_until
from checks.twin.lambda_twin import Twin, TwinOptions
from checks.twin.nvidia import chart_path
from checks.twin.nvidia.binaries import node_gpus
from checks.twin.nvidia.binaries.metrics import endpoint as metrics_endpoint
from kubetwin.kubelet.kubelet import KubeletConfig

NS = "dra-driver-nvidia-gpu"
"""The namespace the suite installs into (reference §1.5)."""
RELEASE = "dra-driver-nvidia-gpu"
PLUGIN_SELECTOR = f"{names.COMPONENT_LABEL}={names.COMPONENT_KUBELET_PLUGIN}"
KUBELET = KubeletConfig(backoff_initial_s=0.2, backoff_max_s=1.0, prepare_backoff_initial_s=0.1,
                        prepare_backoff_max_s=1.0, dra_wipe_delay_s=1.0)


@pytest.fixture(scope="module")
def h100(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Twin, ClusterClient]]:
    run_dir = tmp_path_factory.mktemp("e2e-helm")
    twin = Twin("gpu_1x_h100_sxm5", run_dir=run_dir / "twin", options=TwinOptions(kubelet=KUBELET)).start()
    try:
        with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=run_dir / "kube") as cluster:
            yield twin, cluster
    finally:
        twin.stop()


def install(cluster: ClusterClient, gates: dict[str, bool], *, wait: bool = True) -> None:
    values = DriverValues(feature_gates=gates, compute_domains_enabled=False).to_values()
    upgrade_install(cluster, RELEASE, str(chart_path()), NS, values,
                    InstallOptions(wait_timeout_s=60, wait_for_plugin=wait))


def slices(cluster: ClusterClient) -> list[dict[str, Any]]:
    """``kubectl get resourceslices -o yaml`` of the GPU driver, in name order (= index order, §4.1)."""
    items = yaml.safe_load(cluster.kubectl("get", "resourceslices", "-o", "yaml").stdout)["items"]
    return sorted((s for s in items if s["spec"]["driver"] == names.GPU_DRIVER), key=lambda s: s["metadata"]["name"])


def wait_slices(cluster: ClusterClient, count: int, what: str, pred: Any = None) -> list[dict[str, Any]]:
    """Wait (watch-based) until the GPU driver's slices number ``count`` (and satisfy ``pred``)."""
    src = source_for(cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}")

    def done(state: Mapping[str, dict[str, Any]]) -> bool:
        items = sorted(state.values(), key=lambda x: str(x["metadata"]["name"]))
        return len(items) == count and (pred is None or bool(pred(items)))

    wait_until(src, done, timeout=30, what=what)
    return slices(cluster)


def plugin_pods(cluster: ClusterClient) -> list[dict[str, Any]]:
    out = yaml.safe_load(cluster.kubectl("get", "pods", "-n", NS, "-l", PLUGIN_SELECTOR, "-o", "yaml").stdout)
    return list(out["items"])


def test_install_runs_plugin_and_publishes_the_4_6_a_slice(h100: tuple[Twin, ClusterClient]) -> None:
    twin, cluster = h100
    install(cluster, {})
    (pod,) = plugin_pods(cluster)
    assert pod["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["gpus"]

    node = twin.node_names[0]
    (s,) = wait_slices(cluster, 1, "the default-mode slice")
    assert re.fullmatch(rf"00000-gpu\.nvidia\.com-{node}-[a-z0-9]{{5}}", s["metadata"]["name"])
    (owner,) = s["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Node", node, True)
    node_uid = yaml.safe_load(cluster.kubectl("get", "node", node, "-o", "yaml").stdout)["metadata"]["uid"]
    assert owner["uid"] == node_uid
    assert s["spec"]["pool"] == {"name": node, "generation": 1, "resourceSliceCount": 1}
    assert (s["spec"]["driver"], s["spec"]["nodeName"]) == ("gpu.nvidia.com", node)
    (dev,) = s["spec"]["devices"]
    # §4.6 (a): exactly these keys, typed as shown there, values from the twin's virtual H100.
    (gpu,) = node_gpus(node)
    assert dev["name"] == "gpu-0"
    assert dev["attributes"] == {
        "architecture": {"string": "Hopper"}, "brand": {"string": "Nvidia"},
        "cudaComputeCapability": {"version": "9.0.0"}, "cudaDriverVersion": {"version": "13.0.0"},
        "driverVersion": {"version": "580.159.4"}, "productName": {"string": "NVIDIA H100 80GB HBM3"},
        "resource.kubernetes.io/pciBusID": {"string": gpu.pci_bus_id},
        "resource.kubernetes.io/pcieRoot": {"string": gpu.pcie_root},
        "addressingMode": {"string": "HMM"},
        "type": {"string": "gpu"}, "uuid": {"string": gpu.uuid},
    }
    assert dev["capacity"] == {"memory": {"value": f"{(gpu.memory_bytes or 0) // 2**20}Mi"}}
    assert "consumesCounters" not in dev and "sharedCounters" not in s["spec"]
    logs = cluster.kubectl("logs", "-n", NS, pod["metadata"]["name"], "-c", "gpus").stdout
    assert "About to announce device gpu-0" in logs


def scrape(cluster: ClusterClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET the gpus container's metrics through ``pods/proxy`` (port 8080, the chart's ``gpuHttpEndpoint``), as on
    a cluster without exec, and parse them with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    (pod,) = plugin_pods(cluster)
    assert metrics_endpoint(NS, pod["metadata"]["name"], "gpus") is not None, "the plugin serves no metrics"
    text = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}:8080/proxy/metrics"
                           ).stdout
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def test_plugin_metrics_count_prepare_and_unprepare(h100: tuple[Twin, ClusterClient]) -> None:
    twin, cluster = h100
    node = twin.node_names[0]
    drv = ("driver", "gpu.nvidia.com")
    gpu_gauge = ("nvidia_dra_prepared_devices", (("device_type", "gpu"), drv, ("node", node)))
    prep = ("nvidia_dra_requests_total", (drv, ("operation", "prepare")))
    unprep = ("nvidia_dra_requests_total", (drv, ("operation", "unprepare")))
    before = scrape(cluster)
    assert before[gpu_gauge] == 0 and before[unprep] == 0  # pre-created series (§9.2)
    assert ("nvidia_dra_requests_inflight", (drv, ("operation", "prepare"))) in before
    (pod,) = plugin_pods(cluster)
    assert '"Starting metrics HTTP server" endpoint=":8080" path="/metrics"' in cluster.kubectl(
        "logs", "-n", NS, pod["metadata"]["name"], "-c", "gpus").stdout

    cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "metrics"}}))
    manifest = Path(__file__).parent / "manifests" / "gpu-simple-full.yaml"
    cluster.kubectl("apply", "-n", "metrics", "-f", str(manifest))
    cluster.kubectl("wait", "-n", "metrics", "--for=condition=Ready", "pod/pod-full-gpu", "--timeout=30s")
    during = scrape(cluster)
    assert during[prep] == before[prep] + 1 and during[gpu_gauge] == 1
    assert during[("nvidia_dra_request_duration_seconds_count", (drv, ("operation", "prepare")))] == during[prep]
    cluster.kubectl("delete", "namespace", "metrics", "--wait=true", "--timeout=60s")
    after = scrape(cluster)
    assert after[unprep] == 1 and after[gpu_gauge] == 0


def _pool_free(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "pool": {k: v for k, v in spec["pool"].items() if k != "generation"}}


def test_upgrade_to_dynamic_mig_rolls_the_pod_and_publishes_split_slices(h100: tuple[Twin, ClusterClient]) -> None:
    twin, cluster = h100
    before = {p["metadata"]["uid"] for p in plugin_pods(cluster)}
    install(cluster, {"DynamicMIG": True})
    (pod,) = plugin_pods(cluster)
    assert pod["metadata"]["uid"] not in before
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["FEATURE_GATES"] == "DynamicMIG=true,"

    node = twin.node_names[0]
    got = wait_slices(cluster, 2, "the split DynamicMIG slices",
                      lambda s: any("sharedCounters" in x["spec"] for x in s))
    expected = publish(node, node_gpus(node), {"DynamicMIG": True}, twin.kube_version)
    # The republished pool carries a new generation (the ResourceSlice controller bumps it on any change); the
    # content is exactly the model's.
    gens = {x["spec"]["pool"]["generation"] for x in got}
    assert len(gens) == 1 and gens.pop() > 1
    assert [_pool_free(x["spec"]) for x in got] == [_pool_free(s) for s in expected.specs]
    counters, devices = got
    assert set(counters["spec"]) == {"driver", "nodeName", "pool", "sharedCounters"}
    assert counters["metadata"]["name"].startswith(f"00000-gpu.nvidia.com-{node}-")
    assert devices["metadata"]["name"].startswith(f"00001-gpu.nvidia.com-{node}-")
    dev_names = [d["name"] for d in devices["spec"]["devices"]]
    assert dev_names == sorted(dev_names) and dev_names[0] == "gpu-0" and len(dev_names) == 26
    assert "gpu-0-mig-3g40gb-9-4" in dev_names
    logs = cluster.kubectl("logs", "-n", NS, pod["metadata"]["name"], "-c", "gpus").stdout
    assert "About to announce device gpu-0-mig-1g" in logs  # what the DynMIG bats test greps

    install(cluster, {"DynamicMIG": False})
    (back,) = wait_slices(cluster, 1, "the default-mode slice again",
                          lambda s: "sharedCounters" not in s[0]["spec"])
    assert [d["name"] for d in back["spec"]["devices"]] == ["gpu-0"]


def test_forbidden_gates_crash_loop_with_the_real_error(h100: tuple[Twin, ClusterClient]) -> None:
    _, cluster = h100
    install(cluster, {"DynamicMIG": True, "MPSSupport": True}, wait=False)
    src = source_for(cluster, "pods", NS, label_selector=PLUGIN_SELECTOR)

    def crash_looping(p: dict[str, Any]) -> bool:
        cs = (p.get("status") or {}).get("containerStatuses") or []
        return any((c.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
                   and c.get("restartCount", 0) >= 1 for c in cs)

    pod = wait_for(src, crash_looping, timeout=30, what="kubelet-plugin pod in CrashLoopBackOff")
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    name = pod["metadata"]["name"]
    previous = cluster.kubectl("logs", "-n", NS, name, "-c", "gpus", "--previous").stdout
    assert previous.splitlines()[-1] == (
        "Error: feature gate validation failed: feature gate DynamicMIG is currently mutually exclusive with "
        "MPSSupport"
    )
    install(cluster, {})  # recovers: the next rollout is healthy again
    wait_slices(cluster, 1, "slices after recovering")


def test_uninstall_removes_the_slices(h100: tuple[Twin, ClusterClient]) -> None:
    _, cluster = h100
    assert slices(cluster)
    assert uninstall(cluster, RELEASE, NS, timeout_s=60)
    wait_slices(cluster, 0, "the kubelet to wipe the driver's slices")
    assert plugin_pods(cluster) == []


def test_chart_path_is_the_shipped_chart() -> None:
    assert (Path(chart_path()) / "Chart.yaml").is_file()
