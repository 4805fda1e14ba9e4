"""Issue 4 acceptance: our manifests for the upstream spec scenarios (upstream-e2e-tests.md §3), applied with the
real kubectl to twins with the driver installed by the real helm, asserting what the upstream tests assert
(§1.3 GB1-GB4, §1.5 SH1, §1.7 R6 / Go E6, §1.10 DM3-DM4), plus the A100-40GB DynamicMIG placement acceptance
predicted by the MIG oracle.

Twins are module-scoped (one H100, one 8×A100 with MIG mode on GPU 0); each scenario runs in its own
namespace and deletes it, so the GPUs are free again for the next one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import mig
from checks.driver.values import DriverValues
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.helm import InstallOptions, upgrade_install
from checks.kube.objects import log_until
from checks.kube.wait import condition_status, source_for, wait_for, wait_until
from checks.twin.lambda_twin import Twin, TwinOptions
from checks.twin.nvidia import chart_path
from checks.twin.nvidia.binaries import node_gpus
from kubetwin.kubelet.kubelet import KubeletConfig

MANIFESTS = Path(__file__).parent / "manifests"
DRIVER_NS = "dra-driver-nvidia-gpu"
KUBELET = KubeletConfig(backoff_initial_s=0.2, backoff_max_s=1.0, prepare_backoff_initial_s=0.1,
                        prepare_backoff_max_s=0.5, dra_wipe_delay_s=1.0)
GPU_LINE = re.compile(r"^GPU \d+: .+ \(UUID: GPU-[0-9a-f-]+\)$")
MIG_LINE = re.compile(r"^  MIG \S+ +Device +\d+: \(UUID: MIG-[0-9a-f-]+\)$")
_ns_counter = itertools.count()


class Env:
    """A twin with the driver installed, and the cluster handle the tests use."""

    def __init__(self, twin: Twin, cluster: ClusterClient) -> None:
        self.twin, self.cluster = twin, cluster

    def install(self, gates: dict[str, bool]) -> None:
        values = DriverValues(feature_gates=gates, compute_domains_enabled=False).to_values()
        upgrade_install(self.cluster, "dra-driver-nvidia-gpu", str(chart_path()), DRIVER_NS, values,
                        InstallOptions(wait_timeout_s=60))
        # The plugin is Ready before it has published (no gRPC probe in the twin); wait for its slices too.
        node = self.twin.node_names[0]
        wait_until(source_for(self.cluster, "resourceslices", None, field_selector=f"spec.nodeName={node}"),
                   lambda s: bool(s), timeout=30, what="the GPU plugin's slices")

    def namespace(self, label: str) -> str:
        ns = f"acc-{label}-{next(_ns_counter)}"
        # ``kubectl create namespace`` sends protobuf, which the twin's server does not decode (yet); apply is JSON.
        self.cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        return ns

    def apply(self, ns: str, manifest: str) -> None:
        self.cluster.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / manifest))

    def wait_ready(self, ns: str, pod: str) -> None:
        self.cluster.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=30s", timeout=60)

    def logs(self, ns: str, pod: str, container: str | None = None, *, lines: int = 1) -> list[str]:
        """The container's output once it has ``lines`` whole lines: Ready can come before a workload's first
        line (no readiness probe), so the log is followed instead of read once (under load that raced)."""
        text = log_until(self.cluster, ns, pod, container, lambda t: t.count("\n") >= lines, timeout=30)
        return text.splitlines()

    def delete_ns(self, ns: str) -> None:
        self.cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s", timeout=90)


def _env(tmp: pytest.TempPathFactory, instance: str, gates: dict[str, bool], **opts: Any) -> Iterator[Env]:
    run_dir = tmp.mktemp(instance)
    twin = Twin(instance, run_dir=run_dir / "twin", options=TwinOptions(kubelet=KUBELET, **opts)).start()
    try:
        with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=run_dir / "kube") as cluster:
            env = Env(twin, cluster)
            env.install(gates)
            yield env
    finally:
        twin.stop()


@pytest.fixture(scope="module")
def h100(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, "gpu_1x_h100_sxm5", {})


@pytest.fixture(scope="module")
def a100(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, "gpu_8x_a100", {"DynamicMIG": True}, mig_enabled=(0,))


ENVS = ["h100", "a100"]


@pytest.mark.parametrize("which", ENVS)
def test_gpu_simple_full_one_gpu_line(which: str, request: pytest.FixtureRequest) -> None:
    env: Env = request.getfixturevalue(which)
    ns = env.namespace("full")
    env.apply(ns, "gpu-simple-full.yaml")
    env.wait_ready(ns, "pod-full-gpu")
    (line,) = env.logs(ns, "pod-full-gpu")
    assert GPU_LINE.match(line), line
    minors = {g.uuid: g.minor for g in node_gpus(env.twin.node_names[0])}
    minor = minors[re.search(r"GPU-[0-9a-f-]+", line)[0]]  # type: ignore[index]
    # CDI device nodes: an unprivileged container's /dev shows its GPU and the control nodes only
    devs = env.cluster.kubectl("exec", "-n", ns, "pod-full-gpu", "--", "sh", "-c", "ls /dev | grep nvidia").stdout
    assert sorted(devs.split()) == sorted([f"nvidia{minor}", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl"]), devs
    env.delete_ns(ns)


def test_2pods_2gpus_get_different_uuids(a100: Env) -> None:
    ns = a100.namespace("2pods2gpus")
    a100.apply(ns, "gpu-2pods-2gpus.yaml")
    outs = []
    for pod in ("pod1", "pod2"):
        a100.wait_ready(ns, pod)
        (line,) = a100.logs(ns, pod)
        assert GPU_LINE.match(line)
        outs.append(line.split("(UUID: ")[1])
    assert outs[0] != outs[1]
    a100.delete_ns(ns)


@pytest.mark.parametrize("which", ENVS)
def test_2pods_1gpu_shared_claim_same_uuid(which: str, request: pytest.FixtureRequest) -> None:
    env: Env = request.getfixturevalue(which)
    ns = env.namespace("2pods1gpu")
    env.apply(ns, "gpu-2pods-1gpu.yaml")
    outs = []
    for pod in ("pod1", "pod2"):
        env.wait_ready(ns, pod)
        (line,) = env.logs(ns, pod)
        assert GPU_LINE.match(line)
        outs.append(line)
    assert outs[0] == outs[1]
    claim = yaml.safe_load(env.cluster.kubectl("get", "resourceclaim", "-n", ns, "rc-single-gpu-full",
                                               "-o", "yaml").stdout)
    assert sorted(r["name"] for r in claim["status"]["reservedFor"]) == ["pod1", "pod2"]
    env.delete_ns(ns)


def test_1pod_2containers_share_the_claim(h100: Env) -> None:
    ns = h100.namespace("2cnt")
    h100.apply(ns, "gpu-1pod-2cnt-1gpu.yaml")
    h100.wait_ready(ns, "pod1")
    (a,) = h100.logs(ns, "pod1", "ctr0")
    (b,) = h100.logs(ns, "pod1", "ctr1")
    assert GPU_LINE.match(a) and a == b
    h100.delete_ns(ns)


def test_cel_nomatch_stays_pending_unschedulable(h100: Env) -> None:
    ns = h100.namespace("celnomatch")
    h100.apply(ns, "gpu-cel-nomatch.yaml")
    src = source_for(h100.cluster, "pods", ns)
    pod = wait_for(src, lambda p: condition_status(p, "PodScheduled") == "False", timeout=30,
                   what="pod-cel-nomatch unschedulable")
    assert pod["status"]["phase"] == "Pending"
    (cond,) = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond["reason"] == "Unschedulable"
    assert cond["message"].startswith("0/1 nodes are available: 1 cannot allocate all claims.")
    claims = yaml.safe_load(h100.cluster.kubectl("get", "resourceclaims", "-n", ns, "-o", "yaml").stdout)["items"]
    assert [c.get("status", {}).get("allocation") for c in claims] == [None]
    h100.delete_ns(ns)


def test_timeslicing_runs_only_with_its_gate(h100: Env) -> None:
    ns = h100.namespace("ts-off")
    h100.apply(ns, "gpu-timeslicing.yaml")
    src = source_for(h100.cluster, "events", ns)
    ev = wait_for(src, lambda e: e.get("reason") == "FailedPrepareDynamicResources", timeout=30,
                  what="FailedPrepareDynamicResources event")
    assert ('"TimeSlicing" is selected as the GPU sharing strategy, but the "TimeSlicingSettings" feature gate '
            "is not enabled") in ev["message"]
    pod = yaml.safe_load(h100.cluster.kubectl("get", "pod", "-n", ns, "pod-timeslicing", "-o", "yaml").stdout)
    assert {s["state"]["waiting"]["reason"] for s in pod["status"]["containerStatuses"]} == {"ContainerCreating"}
    h100.delete_ns(ns)

    h100.install({"TimeSlicingSettings": True})
    try:
        ns = h100.namespace("ts-on")
        h100.apply(ns, "gpu-timeslicing.yaml")
        h100.wait_ready(ns, "pod-timeslicing")
        (a,) = h100.logs(ns, "pod-timeslicing", "ctr0")
        (b,) = h100.logs(ns, "pod-timeslicing", "ctr1")
        assert GPU_LINE.match(a) and a == b
        h100.delete_ns(ns)
    finally:
        h100.install({})


def _mig_pair(lines: list[str]) -> tuple[str, str]:
    assert len(lines) == 2, lines
    assert GPU_LINE.match(lines[0]) and MIG_LINE.match(lines[1]), lines
    return lines[0], lines[1]


@pytest.mark.parametrize("which", ENVS)
def test_dynmig_simple_and_multiple_mig_show_parent_and_mig_lines(which: str, request: pytest.FixtureRequest
                                                                    ) -> None:
    env: Env = request.getfixturevalue(which)
    if which == "h100":
        env.install({"DynamicMIG": True})
    try:
        ns = env.namespace("mig")
        env.apply(ns, "gpu-simple-mig.yaml")
        env.wait_ready(ns, "pod-mig1g")
        _mig_pair(env.logs(ns, "pod-mig1g", lines=2))
        # Like upstream (DM3 deletes its spec before DM4): on the A100 twin only GPU 0 is in MIG mode, and the
        # 3g.20gb DM3 gets would block DM4's >50-SM device.
        env.cluster.kubectl("delete", "-n", ns, "-f", str(MANIFESTS / "gpu-simple-mig.yaml"), "--wait=true",
                            "--timeout=30s", timeout=60)
        env.apply(ns, "gpu-multiple-mig.yaml")
        env.wait_ready(ns, "pod-2mig")
        _p0, m0 = _mig_pair(env.logs(ns, "pod-2mig", "ctr0", lines=2))
        _p1, m1 = _mig_pair(env.logs(ns, "pod-2mig", "ctr1", lines=2))
        assert m0.split("UUID: ")[1] != m1.split("UUID: ")[1]
        env.delete_ns(ns)
    finally:
        if which == "h100":
            env.install({})


def _claim(name: str, profile: str) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name},
            "spec": {"devices": {"requests": [{"name": "mig", "exactly": {
                "deviceClassName": "mig.nvidia.com",
                "selectors": [{"cel": {"expression": f"device.attributes['gpu.nvidia.com'].profile == '{profile}'"}}],
            }}]}}}


def _pod(name: str, claim: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "ctr", "image": "ubuntu:22.04", "resources": {"claims": [{"name": "mig"}]},
                        "command": ["bash", "-c", "nvidia-smi -L; trap 'exit 0' TERM; sleep 9999 & wait"]}],
        "resourceClaims": [{"name": "mig", "resourceClaimName": claim}]}}


def test_a100_dynamic_mig_placements_and_fragmentation_match_the_oracle(a100: Env) -> None:
    """8 × 1g.5gb → 7 on placements 0..6, the 8th Pending; free all but 1g@1 and 1g@5 → 3g.20gb Pending."""
    env, ns = a100, a100.namespace("a100mig")
    geo = mig.gpu("A100-SXM4-40GB")
    steps = mig.predict_sequence(geo, 0, ["1g.5gb"] * 8)
    predicted = [s.placement.start if s.placement else None for s in steps]
    assert predicted == [0, 1, 2, 3, 4, 5, 6, None]

    docs = [_claim(f"c{i}", "1g.5gb") for i in range(8)] + [_pod(f"p{i}", f"c{i}") for i in range(8)]
    env.cluster.kubectl("apply", "-n", ns, "-f", "-", input_text=yaml.safe_dump_all(docs))
    src = source_for(env.cluster, "resourceclaims", ns)

    def allocated(state: Mapping[str, dict[str, Any]]) -> bool:
        return sum(1 for c in state.values() if (c.get("status") or {}).get("allocation")) >= 7

    state = wait_until(src, allocated, timeout=30, what="7 of 8 1g.5gb claims allocated")
    devices = {}
    for c in state.values():
        for r in ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", []):
            devices[c["metadata"]["name"]] = r["device"]
    got = sorted(mig.parse_device_name(d).start for d in devices.values())
    assert got == [p for p in predicted if p is not None]
    assert all(mig.parse_device_name(d).minor == 0 for d in devices.values())
    (left,) = [f"c{i}" for i in range(8) if f"c{i}" not in devices]
    pod = wait_for(source_for(env.cluster, "pods", ns), lambda p: p["metadata"]["name"] == f"p{left[1:]}" and
                   condition_status(p, "PodScheduled") == "False", timeout=30, what="8th pod unschedulable")
    assert pod["status"]["phase"] == "Pending"
    for i in range(8):
        if f"c{i}" in devices:
            env.wait_ready(ns, f"p{i}")
            _mig_pair(env.logs(ns, f"p{i}", lines=2))

    # Free everything except the claims on placements 1 and 5.
    keep = {n for n, d in devices.items() if mig.parse_device_name(d).start in (1, 5)}
    for n in [*sorted(set(devices) - keep), left]:
        env.cluster.kubectl("delete", "pod", "-n", ns, f"p{n[1:]}", "--wait=true", "--timeout=30s")
        env.cluster.kubectl("delete", "resourceclaim", "-n", ns, n, "--wait=true", "--timeout=30s")
    oracle = mig.fits(geo, "3g.20gb", [mig.Placement("1g.5gb", 1), mig.Placement("1g.5gb", 5)])
    assert oracle.kind == "fragmentation"
    env.cluster.kubectl("apply", "-n", ns, "-f", "-",
                        input_text=yaml.safe_dump_all([_claim("big", "3g.20gb"), _pod("pbig", "big")]))
    pod = wait_for(source_for(env.cluster, "pods", ns), lambda p: p["metadata"]["name"] == "pbig" and
                   condition_status(p, "PodScheduled") == "False", timeout=30, what="3g.20gb pod unschedulable")
    (cond,) = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert "cannot allocate all claims" in cond["message"]
    # Five compute slices are free: the capacity is there, only the placement geometry blocks it.
    used = sum(geo.profile("1g.5gb").compute_slices for _ in keep)
    assert geo.compute_slices - used == 5
    env.delete_ns(ns)
