"""The driver's validating admission webhook (roadmap item 8; reference §1.10, §5.4) with a TLS setup made here.

No cert-manager: the check makes a CA and a serving certificate for ``<name>-webhook.<ns>.svc`` with
``cryptography``, stores them as a ``kubernetes.io/tls`` Secret and hands them to the chart the way its values
expect (``webhook.tls.mode=secret``, ``webhook.tls.secret.name``, ``webhook.tls.secret.caBundle`` = the CA, base64).
The API server only trusts the webhook through that caBundle, so admission working at all proves the chain.

Then, for claims *and* claim templates: a valid opaque ``GpuConfig`` is admitted; an unknown field, an invalid
sharing strategy and an invalid time-slice interval are denied with **HTTP 403** (the roadmap expected 422;
the API server turns a webhook denial without a code into 403, §5.4) and the exact message. Finally the webhook
is made unavailable: with ``failurePolicy: Fail`` claims are rejected (HTTP 500, ``failed calling webhook``);
with ``Ignore`` they are admitted unvalidated. Timings (install, webhook Ready, admission round trips) go to
results.json.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from checks.driver import configs, names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios import manifests as M
from checks.scenarios.driverconfig import DriverConfig
from checks.suite import driverio as D
from checks.suite.context import CheckContext

WEBHOOK = DriverConfig.make({"TimeSlicingSettings": True}, webhook=True)
"""TimeSlicing allowed, so an invalid *interval* is what the webhook reports (its gates come from FEATURE_GATES)."""
SLOT = DriverConfig.make({"TimeSlicingSettings": True}, extra=(("webhook.failurePolicy", "Fail"),))
"""The checks' marker configuration: TimeSlicing without the webhook (what the suite installs before them); the
first check upgrades it to :data:`WEBHOOK` with its own TLS values and records that as this slot."""
pytestmark = [pytest.mark.webhook, pytest.mark.driver(SLOT), pytest.mark.roadmap(8)]
SECRET = "dra-lab-webhook-tls"
WEBHOOK_SELECTOR = f"{names.component_label()}={names.COMPONENT_WEBHOOK}"
Obj = dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def _remove_tls_secret(dra_suite: Any) -> Iterator[None]:
    """The Secret lives in the driver namespace (the run's label sweep does not cover Secrets): remove it after
    this module whatever happened."""
    yield
    if dra_suite.cluster is not None and K.try_get(dra_suite.cluster, "secrets", SECRET, names.NAMESPACE):
        K.delete(dra_suite.cluster, "secrets", SECRET, names.NAMESPACE)


def make_tls(dns_name: str) -> tuple[bytes, bytes, bytes]:
    """(CA cert, serving cert, serving key) PEM: a self-signed CA and a leaf for ``dns_name`` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dra-lab webhook CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), leaf.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _install_webhook(ctx: CheckContext, suite: Any) -> dict[str, float]:
    service = names.webhook_deployment()
    ca, crt, key = make_tls(f"{service}.{names.NAMESPACE}.svc")
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": SECRET, "namespace": names.NAMESPACE, "labels": dict(ctx.labels)},
              "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()}}
    if K.try_get(ctx.cluster, "secrets", SECRET, names.NAMESPACE) is not None:
        K.delete(ctx.cluster, "secrets", SECRET, names.NAMESPACE)
    K.create(ctx.cluster, secret, names.NAMESPACE)
    started = time.monotonic()
    helm_s = D.install(suite, WEBHOOK, extra_values={"webhook": {"enabled": True, "failurePolicy": "Fail", "tls": {
        "mode": "secret", "secret": {"name": SECRET, "caBundle": base64.b64encode(ca).decode()}}}},
                        remember_as=SLOT)
    W.wait_pods_ready(ctx.cluster, names.NAMESPACE, WEBHOOK_SELECTOR, count=1, timeout=ctx.timeout(120))
    _wait_admitting(ctx)
    return {"webhook_install_helm_s": round(helm_s, 2), "webhook_ready_s": round(time.monotonic() - started, 2)}


def _wait_admitting(ctx: CheckContext) -> None:
    """Until the API server reaches the webhook: a Ready pod's endpoint is published asynchronously, and until
    then every claim create fails with ``no endpoints available`` (failurePolicy Fail). Probed with server-side
    dry-run creates, which run admission but persist nothing."""
    body = M.claim("rc-probe", ctx.labels, _spec({"kind": "GpuConfig"}))
    path = K.resource_for("resourceclaims").path(ctx.namespace)

    def attempt() -> str:
        try:
            K.request(ctx.cluster, "POST", path, body=body, query=[("dryRun", "All")])
        except ApiException as exc:
            return f"{exc.status}: {exc.body}"
        return "admitted"

    D.scrape_until(attempt, lambda text: text == "admitted", timeout=ctx.timeout(60),
                   what="the API server reaching the webhook (dry-run claim admitted)")


def _spec(params: Obj) -> Obj:
    return M.claim_spec([M.request("gpu")], config=[{"requests": ["gpu"], "opaque": {
        "driver": names.GPU_DRIVER, "parameters": {"apiVersion": names.CONFIG_API_VERSION, **params}}}])


CASES: dict[str, tuple[Obj, str | None]] = {
    "valid": ({"kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing",
                                               "timeSlicingConfig": {"interval": "Long"}}}, None),
    "unknown-field": ({"kind": "GpuConfig", "bogus": True},
                      'error decoding object at {p}: strict decoding error: unknown field "bogus"'),
    "bad-strategy": ({"kind": "GpuConfig", "sharing": {"strategy": "Bogus"}},
                     "object at {p} is invalid: unknown GPU sharing strategy: Bogus, supported GPU sharing "
                     "strategies: TimeSlicing, MPS"),
    "bad-interval": ({"kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing",
                                                      "timeSlicingConfig": {"interval": "Invalid Interval"}}},
                     "object at {p} is invalid: unknown time-slice interval: Invalid Interval, supported "
                     "time-slice intervals: Default, Short, Medium, Long"),
}
"""Case → (config parameters, the per-config error with ``{p}`` for its field path; None = admitted)."""


def _create(ctx: CheckContext, kind: str, name: str, params: Obj) -> float:
    obj = (M.claim(name, ctx.labels, _spec(params)) if kind == "resourceclaims"
           else M.claim_template(name, ctx.labels, _spec(params)))
    started = time.monotonic()
    try:
        ctx.apply(obj)
    finally:
        took = time.monotonic() - started
    return took


def test_admission_with_self_made_tls(ctx: CheckContext, suite: Any) -> None:
    """Install with the check's own CA/serving cert; for claims and templates: valid admitted; unknown field,
    invalid strategy, invalid interval denied with 403, reason Invalid and the exact message."""
    timings = _install_webhook(ctx, suite)
    vwc = K.get(ctx.cluster, "validatingwebhookconfigurations", names.webhook_configuration())
    (hook,) = vwc["webhooks"]
    assert hook["name"] == names.WEBHOOK_NAME and hook["failurePolicy"] == "Fail", hook
    assert hook["clientConfig"].get("caBundle"), "caBundle not rendered from webhook.tls.secret.caBundle"
    rtts: list[float] = []
    for kind, prefix in (("resourceclaims", "spec"), ("resourceclaimtemplates", "spec.spec")):
        for case, (params, error) in CASES.items():
            name = f"{'rc' if kind == 'resourceclaims' else 'rct'}-{case}"
            if error is None:
                rtts.append(_create(ctx, kind, name, params))
                assert ctx.get(kind, name)["metadata"]["name"] == name
                continue
            with pytest.raises(ApiException) as info:
                _create(ctx, kind, name, params)
            path = f"{prefix}.devices.config[0].opaque.parameters"
            message = configs.apiserver_denial(kind, name, f"1 configs failed to validate: {error.format(p=path)}")
            status = info.value.status
            body = json.loads(info.value.body) if info.value.body else {}
            assert status == 403, (case, kind, status, body)
            assert body.get("reason") == "Invalid", body
            assert body.get("message") == message, (body.get("message"), message)
    timings["admission_rtt_median_s"] = round(statistics.median(rtts), 4)
    ctx.record["timings"] = timings


def _webhook_pods_gone(ctx: CheckContext) -> None:
    W.wait_deleted(ctx.cluster, "pods", None, names.NAMESPACE, label_selector=WEBHOOK_SELECTOR,
                   timeout=ctx.timeout(60))


def test_unavailable_webhook_follows_failure_policy(ctx: CheckContext, suite: Any) -> None:
    """Webhook scaled to zero: ``failurePolicy: Fail`` → every claim create fails (HTTP 500, ``failed calling
    webhook "gpu.nvidia.com"``); switched to ``Ignore`` → admitted without validation (even an invalid config)."""
    if K.try_get(ctx.cluster, "deployments", names.webhook_deployment(), names.NAMESPACE) is None \
            or K.try_get(ctx.cluster, "secrets", SECRET, names.NAMESPACE) is None:
        _install_webhook(ctx, suite)
    deploy = names.webhook_deployment()
    vwc_name = names.webhook_configuration()
    K.patch(ctx.cluster, "deployments", deploy, {"spec": {"replicas": 0}}, names.NAMESPACE)
    try:
        _webhook_pods_gone(ctx)
        with pytest.raises(ApiException) as info:
            _create(ctx, "resourceclaims", "rc-webhook-down", CASES["valid"][0])
        assert info.value.status == 500, info.value.status
        message = str(json.loads(info.value.body or "{}").get("message"))
        assert f'failed calling webhook "{names.WEBHOOK_NAME}"' in message, message
        vwc = K.get(ctx.cluster, "validatingwebhookconfigurations", vwc_name)
        vwc["webhooks"][0]["failurePolicy"] = "Ignore"
        K.request(ctx.cluster, "PUT", f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                  f"{vwc_name}", body=vwc)
        _create(ctx, "resourceclaims", "rc-ignored", CASES["bad-strategy"][0])
        assert ctx.get("resourceclaims", "rc-ignored")
    finally:
        K.patch(ctx.cluster, "deployments", deploy, {"spec": {"replicas": 1}}, names.NAMESPACE)
        suite.install.current = dataclasses.replace(WEBHOOK, extra=(("dra-lab.owned-by-check", "webhook-down"),))
