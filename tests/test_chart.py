"""Our driver chart rendered by the real helm: identity, validation messages, gates, objects (reference §1-§2)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.driver import gates, names
from checks.driver.values import DriverValues
from checks.twin.nvidia import chart_path

FALLBACK_HELM = Path("/tmp/kx/layer/helm/helm")


def helm_binary() -> Path:
    try:
        from checks.kube.binaries import find_tool

        return find_tool("helm").path
    except Exception:
        if FALLBACK_HELM.exists():
            return FALLBACK_HELM
        pytest.skip("no helm binary available")
        raise


def render(*sets: str, namespace: str = names.NAMESPACE, release: str = names.BATS_RELEASE,
           values: dict[str, Any] | None = None, tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm_binary()), "template", release, str(chart_path()), "--namespace", namespace]
    if values is not None:
        assert tmp is not None
        vf = tmp / "values.yaml"
        vf.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(vf)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/helmcache"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def objects(out: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(out) if d]


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError(f"{kind}/{name} not rendered; have {[(o['kind'], o['metadata']['name']) for o in objs]}")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_chart_identity() -> None:
    meta = yaml.safe_load((chart_path() / "Chart.yaml").read_text())
    assert meta["name"] == names.CHART_NAME
    assert meta["version"] == names.CHART_VERSION == meta["appVersion"]
    assert meta["apiVersion"] == "v2"


def test_lint_passes() -> None:
    proc = subprocess.run([str(helm_binary()), "lint", str(chart_path()), "--namespace", names.NAMESPACE,
                           "--set", "gpuResourcesEnabledOverride=true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_refuses_gpus_without_override_with_upstream_message() -> None:
    proc = render()
    assert proc.returncode != 0
    assert "The default value of 'resources.gpus.enabled == true'. However, when 'resources.gpus.enabled=true' " \
           "this DRA driver cannot be deployed alongside the standard GPU device plugin" in proc.stderr
    assert "--set 'gpuResourcesEnabledOverride=true'" in proc.stderr
    # Turning GPUs off is the other way out.
    assert render("resources.gpus.enabled=false").returncode == 0


def test_refuses_default_namespace() -> None:
    proc = render("gpuResourcesEnabledOverride=true", namespace="default")
    assert proc.returncode != 0
    assert "Running in the 'default' namespace is not recommended." in proc.stderr
    assert render("gpuResourcesEnabledOverride=true", "allowDefaultNamespace=true", namespace="default").returncode == 0


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["webhook.tls.mode=plain"], "Webhook TLS mode must be either 'cert-manager' or 'secret'."),
        (["webhook.tls.mode=secret"], "Secret name is required when using secret mode."),
        (["webhook.tls.certManager.issuerType=issuer"],
         "Cert-manager issuer name is required when issuer type is not 'selfsigned'."),
    ],
)
def test_webhook_tls_validation(sets: list[str], message: str) -> None:
    proc = render("gpuResourcesEnabledOverride=true", "webhook.enabled=true", *sets)
    assert proc.returncode != 0 and message in proc.stderr


def test_imex_validation() -> None:
    proc = render("gpuResourcesEnabledOverride=true", "resources.computeDomains.imex.mode=hostManaged")
    wanted = "resources.computeDomains.imex.mode=hostManaged requires featureGates.HostManagedIMEXDaemon=true"
    assert wanted in proc.stderr


def test_default_render_objects_and_gates(tmp_path: Path) -> None:
    dv = DriverValues(feature_gates={"DynamicMIG": True, "TimeSlicingSettings": True}, log_verbosity=6)
    proc = render(values=dv.to_values(), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objs = objects(proc.stdout)
    ds = find(objs, "DaemonSet", "dra-driver-nvidia-gpu-kubelet-plugin")
    assert ds["metadata"]["namespace"] == names.NAMESPACE
    assert ds["metadata"]["labels"]["helm.sh/chart"] == "dra-driver-nvidia-gpu-0.5.0-dev"
    pod = ds["spec"]["template"]
    assert pod["metadata"]["labels"][names.COMPONENT_LABEL] == "kubelet-plugin"
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["init-container"]
    assert [c["name"] for c in spec["containers"]] == ["compute-domains", "gpus"]
    gpus = spec["containers"][1]
    assert gpus["image"] == f"{names.IMAGE_REPOSITORY}:{names.DEFAULT_IMAGE_TAG}"
    env = env_of(gpus)
    assert env["FEATURE_GATES"] == "DynamicMIG=true,TimeSlicingSettings=true,"
    assert gates.parse_feature_gates(env["FEATURE_GATES"]) == dv.feature_gates
    assert env["LOG_VERBOSITY"] == "6"
    assert env["HTTP_ENDPOINT"] == ":8080"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env_of(spec["containers"][0])["HTTP_ENDPOINT"] == ":8081"
    assert "gpu-kubelet-plugin -v $(LOG_VERBOSITY)" in " ".join(gpus["command"] + gpus["args"])
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [(t["matchExpressions"][0]["key"], t["matchExpressions"][0]["values"][0]) for t in terms] == list(
        names.PLUGIN_NODE_AFFINITY_TERMS
    )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]

    ctrl = find(objs, "Deployment", "dra-driver-nvidia-gpu-controller")
    cenv = env_of(ctrl["spec"]["template"]["spec"]["containers"][0])
    assert cenv["LEADER_ELECTION_LEASE_LOCK_NAME"] == names.LEASE_NAME
    assert cenv["LEADER_ELECTION_LEASE_LOCK_NAMESPACE"] == names.NAMESPACE
    assert cenv["FEATURE_GATES"] == env["FEATURE_GATES"]

    for cls, cel in names.DEVICE_CLASS_CEL.items():
        dc = find(objs, "DeviceClass", cls)
        assert dc["apiVersion"] == "resource.k8s.io/v1"
        assert dc["spec"]["selectors"] == [{"cel": {"expression": cel}}]
    assert find(objs, "DeviceClass", "gpu.nvidia.com")["spec"]["extendedResourceName"] == "nvidia.com/gpu"
    assert "extendedResourceName" not in find(objs, "DeviceClass", "mig.nvidia.com")["spec"]
    assert not any(o["kind"] == "ValidatingWebhookConfiguration" for o in objs)


def test_compute_domains_off_drops_controller_and_container(tmp_path: Path) -> None:
    dv = DriverValues(compute_domains_enabled=False)
    objs = objects(render(values=dv.to_values(), tmp=tmp_path).stdout)
    ds = find(objs, "DaemonSet", "dra-driver-nvidia-gpu-kubelet-plugin")
    assert [c["name"] for c in ds["spec"]["template"]["spec"]["containers"]] == ["gpus"]
    assert not any(o["kind"] == "Deployment" for o in objs)
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "DeviceClass"} == {
        "gpu.nvidia.com", "mig.nvidia.com", "vfio.gpu.nvidia.com"
    }


def test_controller_replicas_leader_election_and_webhook(tmp_path: Path) -> None:
    dv = DriverValues(controller_replicas=2, leader_election=True, webhook_enabled=True,
                      webhook_tls_mode="secret", webhook_secret_name="wh-tls", webhook_ca_bundle="Q0E=")
    objs = objects(render(values=dv.to_values(), tmp=tmp_path).stdout)
    ctrl = find(objs, "Deployment", "dra-driver-nvidia-gpu-controller")
    assert ctrl["spec"]["replicas"] == 2
    assert env_of(ctrl["spec"]["template"]["spec"]["containers"][0])["LEADER_ELECTION_ENABLED"] == "true"
    wh = find(objs, "Deployment", "dra-driver-nvidia-gpu-webhook")
    c = wh["spec"]["template"]["spec"]["containers"][0]
    assert c["name"] == "webhook" and "--port=443" in c["args"]
    vwc = find(objs, "ValidatingWebhookConfiguration", "dra-driver-nvidia-gpu-webhook-config")
    (hook,) = vwc["webhooks"]
    assert hook["name"] == "gpu.nvidia.com"
    assert hook["clientConfig"]["service"]["path"] == names.WEBHOOK_PATH
    assert hook["clientConfig"]["caBundle"] == "Q0E="
    assert hook["rules"][0]["resources"] == ["resourceclaims", "resourceclaimtemplates"]
    find(objs, "Service", "dra-driver-nvidia-gpu-webhook")


def test_crds_are_shipped() -> None:
    crds = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (chart_path() / "crds").glob("*.yaml")}
    assert crds == {names.CRD_COMPUTE_DOMAINS, names.CRD_COMPUTE_DOMAIN_CLIQUES}
