"""The driver's validating webhook on an H100 twin: real helm installs it (``webhook.enabled=true``,
``tls.mode=secret``), its pod serves HTTPS, and the twin's API server calls it for ResourceClaims and
templates — real kubectl sees the apiserver's 403 with the webhook's message (reference §1.10, §5.4)."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.driver import configs, names
from checks.driver.values import DriverValues
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.helm import InstallOptions, upgrade_install
from checks.kube.wait import source_for, wait_for
from checks.twin.lambda_twin import Twin, TwinOptions
from checks.twin.nvidia import chart_path
from checks.twin.nvidia.binaries.webhook import self_signed, serving
from tests.test_twin_e2e_helm import KUBELET, NS, RELEASE

SERVICE = f"{names.CHART_NAME}-webhook"
SECRET = "webhook-tls"

CLAIM = """
apiVersion: resource.k8s.io/v1
kind: %(kind)s
metadata: {name: %(name)s}
spec:
  %(nest)sdevices:
  %(nest)s  requests: [{name: gpu, exactly: {deviceClassName: gpu.nvidia.com}}]
  %(nest)s  config:
  %(nest)s  - opaque:
  %(nest)s      driver: gpu.nvidia.com
  %(nest)s      parameters:
  %(nest)s        apiVersion: resource.nvidia.com/v1beta1
  %(nest)s        kind: GpuConfig
  %(nest)s        sharing: {strategy: TimeSlicing, timeSlicingConfig: {interval: %(interval)s}}
"""


def _statuses(kubectl_log: str) -> list[dict[str, Any]]:
    """The Status bodies kubectl -v=8 logged (``"Response Body" body="<Go-quoted JSON>"``)."""
    out = []
    for line in kubectl_log.splitlines():
        if '"Response Body" body="' in line:
            try:
                body = json.loads(json.loads(line.split(" body=", 1)[1]))
            except ValueError:  # kubectl truncates long bodies (discovery/OpenAPI) at -v=8
                continue
            if isinstance(body, dict) and body.get("kind") == "Status":
                out.append(body)
    return out


def claim(name: str, interval: str, *, template: bool = False) -> str:
    if template:
        text = CLAIM.replace("spec:\n  %(nest)s", "spec:\n  spec:\n    ").replace("%(nest)s", "  ")
        return text % {"kind": "ResourceClaimTemplate", "name": name, "interval": interval}
    return CLAIM.replace("%(nest)s", "") % {"kind": "ResourceClaim", "name": name, "interval": interval}


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Twin, ClusterClient, bytes]]:
    run_dir = tmp_path_factory.mktemp("e2e-webhook")
    twin = Twin("gpu_1x_h100_sxm5", run_dir=run_dir / "twin", options=TwinOptions(kubelet=KUBELET)).start()
    try:
        with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=run_dir / "kube") as cluster:
            cert, key = self_signed([f"{SERVICE}.{NS}.svc"])
            Path(run_dir / "tls.crt").write_bytes(cert)
            Path(run_dir / "tls.key").write_bytes(key)
            cluster.kubectl("create", "namespace", NS)
            cluster.kubectl("create", "secret", "tls", SECRET, "-n", NS, f"--cert={run_dir / 'tls.crt'}",
                            f"--key={run_dir / 'tls.key'}")
            values = DriverValues(feature_gates={"TimeSlicingSettings": True}, compute_domains_enabled=False,
                                  webhook_enabled=True, webhook_tls_mode="secret", webhook_secret_name=SECRET,
                                  webhook_ca_bundle=base64.b64encode(cert).decode()).to_values()
            upgrade_install(cluster, RELEASE, str(chart_path()), NS, values,
                            InstallOptions(wait_timeout_s=60, wait_for_plugin=True))
            pod = wait_for(source_for(cluster, "pods", NS, label_selector=f"{names.COMPONENT_LABEL}=webhook"),
                           lambda p: any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in (p.get("status") or {}).get("conditions") or []),
                           timeout=30, what="webhook pod Ready")
            assert serving(NS, pod["metadata"]["name"], 443), "webhook pod Ready but not serving"
            yield twin, cluster, cert
    finally:
        twin.stop()


def test_invalid_interval_is_denied_with_403_and_the_exact_text(hooked: tuple[Twin, ClusterClient, bytes]) -> None:
    twin, cluster, _ = hooked
    r = cluster.kubectl("create", "-n", "default", "-f", "-", "-v=8", input_text=claim("bad", "Invalid Interval"),
                        check=False)
    want = ('resourceclaims.resource.k8s.io "bad" is forbidden: admission webhook "gpu.nvidia.com" denied the '
            "request: 1 configs failed to validate: object at spec.devices.config[0].opaque.parameters is invalid: "
            "unknown time-slice interval: Invalid Interval, supported time-slice intervals: Default, Short, Medium, "
            "Long")
    # kubectl gets the 403 Status with that message (visible in its -v=8 response log) and, because the status
    # carries reason Invalid with details {kind, name} and no causes, prints only its one-line summary — as it
    # does against a real apiserver (ToStatusErr fills those details).
    assert r.returncode != 0 and "403 Forbidden" in r.stderr, r.stderr[-2000:]
    (status,) = _statuses(r.stderr)
    assert (status["code"], status["reason"], status["message"]) == (403, "Invalid", want), status
    assert r.stderr.strip().splitlines()[-1] == 'The resourceclaims "bad" is invalid'
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    api = twin.api_client()
    try:
        import yaml

        with pytest.raises(ApiException) as info:
            k8s.ResourceV1Api(api).create_namespaced_resource_claim("default", yaml.safe_load(claim("bad", "Nope")))
        assert info.value.status == 403
        status = json.loads(info.value.body)
        assert status["reason"] == "Invalid" and status["code"] == 403
        assert status["message"].endswith("unknown time-slice interval: Nope, supported time-slice intervals: "
                                          "Default, Short, Medium, Long")
    finally:
        api.close()
    assert "bad" not in cluster.kubectl("get", "resourceclaims", "-n", "default", "-o", "name").stdout


def test_valid_claim_is_admitted_and_templates_use_spec_spec(hooked: tuple[Twin, ClusterClient, bytes]) -> None:
    _, cluster, _ = hooked
    out = cluster.kubectl("apply", "-n", "default", "-f", "-", input_text=claim("good", "Long")).stdout
    assert out.strip() == "resourceclaim.resource.k8s.io/good created"
    r = cluster.kubectl("create", "-n", "default", "-f", "-", "-v=8",
                        input_text=claim("tbad", "Sometimes", template=True), check=False)
    msg = configs.webhook_denial(["object at spec.spec.devices.config[0].opaque.parameters is invalid: unknown "
                                  "time-slice interval: Sometimes, supported time-slice intervals: Default, Short, "
                                  "Medium, Long"])
    assert r.returncode != 0 and msg is not None
    (status,) = _statuses(r.stderr)
    assert status["message"] == configs.apiserver_denial("resourceclaimtemplates", "tbad", msg), status


def _post(port: str, path: str, body: bytes, ctype: str, cert: bytes) -> tuple[int, bytes]:
    host, p = port.split(":")
    ctx = ssl.create_default_context(cadata=cert.decode())
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection(host, int(p), context=ctx, timeout=10)
    try:
        if path == "/readyz":
            conn.request("GET", path)
        else:
            conn.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_protocol_errors_415_400_and_readyz(hooked: tuple[Twin, ClusterClient, bytes]) -> None:
    _, cluster, cert = hooked
    pod = json.loads(cluster.kubectl("get", "pods", "-n", NS, "-l", f"{names.COMPONENT_LABEL}=webhook",
                                     "-o", "json").stdout)["items"][0]["metadata"]["name"]
    hostport = serving(NS, pod, 443)
    assert hostport
    assert _post(hostport, "/readyz", b"", "", cert) == (200, b"ok")
    code, body = _post(hostport, "/validate-resource-claim-parameters", b"{}", "text/plain", cert)
    assert (code, body.decode().strip()) == (415, "contentType=text/plain, expected application/json")
    code, body = _post(hostport, "/validate-resource-claim-parameters", b"not json", "application/json", cert)
    assert code == 400 and body.decode().startswith("failed to read AdmissionReview from request body: ")
    review: dict[str, Any] = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u1", "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": {}}}
    code, body = _post(hostport, "/validate-resource-claim-parameters", json.dumps(review).encode(),
                       "application/json", cert)
    resp = json.loads(body)["response"]
    assert code == 200 and resp["uid"] == "u1" and resp["allowed"] is False
    assert resp["status"] == {"reason": "BadRequest", "message": "expected resource to be one of the supported "
                              "versions for resourceclaims or resourceclaimtemplates, got { v1 pods}"}
