"""Emulated ``webhook`` binary: the driver's validating admission webhook (reference §1.10, §5.4).

It serves HTTPS with the certificate the chart mounts at ``--tls-cert-file``/``--tls-private-key-file``
(``/cert`` from the secret named by the pod's volume; read through the API as the kubelet's secret volume
would provide it), or — when that secret does not exist, as with ``tls.mode=cert-manager`` on a twin without
cert-manager — a fresh self-signed one, which callers then reject unless they trust it (twin difference: a
real pod would stay ContainerCreating on the missing secret).

Endpoints exactly as §5.4: ``/readyz`` → ``ok``; ``/validate-resource-claim-parameters`` → 415 ``contentType=<x>,
expected application/json`` for another Content-Type, 400 for an unreadable AdmissionReview, else an
AdmissionReview response: allowed, or ``Reason: Invalid`` with ``<N> configs failed to validate: …`` for the
``gpu.nvidia.com`` opaque configs of ``resourceclaims`` (path prefix ``spec``) and ``resourceclaimtemplates``
(``spec.spec``) in ``resource.k8s.io`` v1/v1beta1/v1beta2, with the gates from ``FEATURE_GATES``.

A container cannot bind its ``containerPort`` on the twin host, so the server listens on an ephemeral loopback
port and records it in :data:`_serving` under (namespace, pod, container port) while it runs;
:func:`resolve_service` maps a Service to it the way kube-proxy would reach the pod, and the twin gives that to
:class:`kubetwin.api.webhooks.WebhookAdmission`.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from checks.driver import configs, logs
from checks.driver import gates as gate_table
from kubetwin.kubelet.seam import ContainerContext

VALIDATE_PATH = "/validate-resource-claim-parameters"
GROUP = "resource.k8s.io"
VERSIONS = ("v1", "v1beta1", "v1beta2")
_TEMPLATE = {"resourceclaims": False, "resourceclaimtemplates": True}
"""Served resources → is it a template (path prefix ``spec.spec``)."""

_lock = threading.Lock()
_serving: dict[tuple[str, str, int], str] = {}


def serving(namespace: str, pod: str, port: int) -> str | None:
    """``host:port`` where the webhook container of ``pod`` declared on ``port`` listens, if it is up."""
    with _lock:
        return _serving.get((namespace, pod, port))


def _set_serving(namespace: str, pod: str, port: int, hostport: str | None) -> None:
    with _lock:
        if hostport is None:
            _serving.pop((namespace, pod, port), None)
        else:
            _serving[(namespace, pod, port)] = hostport


def review_response(review: Mapping[str, Any], gates: Mapping[str, bool]) -> dict[str, Any]:
    """The AdmissionReview the webhook answers for ``review`` (``admitResourceClaimParameters``)."""
    request = review.get("request") or {}
    res = request.get("resource") or {}
    group, version, resource = res.get("group", ""), res.get("version", ""), res.get("resource", "")
    response: dict[str, Any] = {"uid": request.get("uid", "")}
    if group != GROUP or version not in VERSIONS or resource not in _TEMPLATE:
        response["allowed"] = False
        response["status"] = {"reason": "BadRequest", "message": (
            "expected resource to be one of the supported versions for resourceclaims or resourceclaimtemplates, "
            f"got {{{group} {version} {resource}}}")}
    else:
        obj = request.get("object") or {}
        errors = configs.webhook_errors(obj.get("spec") or {}, gates, template=_TEMPLATE[resource])
        message = configs.webhook_denial(errors)
        if message is None:
            response["allowed"] = True
        else:
            response["allowed"] = False
            response["status"] = {"reason": "Invalid", "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def _handler(gates: Mapping[str, bool],
             log: Callable[[logs.LogLine], None]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _text(self, code: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/readyz":
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self._text(404, "404 page not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.split("?")[0] != VALIDATE_PATH:
                self._text(404, "404 page not found")
                return
            ctype = self.headers.get("Content-Type") or ""
            if ctype != "application/json":
                msg = f"contentType={ctype}, expected application/json"
                log(logs.LogLine(0, msg, "main.go", 147, "E"))
                self._text(415, msg)
                return
            try:
                review = json.loads(body)
                if not isinstance(review, dict) or review.get("kind") != "AdmissionReview" \
                        or not isinstance(review.get("request"), dict):
                    raise ValueError("request could not be decoded: not an admission.k8s.io/v1 AdmissionReview")
            except ValueError as exc:
                msg = f"failed to read AdmissionReview from request body: {exc}"
                log(logs.LogLine(0, msg, "main.go", 157, "E"))
                self._text(400, msg)
                return
            out = review_response(review, gates)
            status = out["response"].get("status")
            if status:
                log(logs.LogLine(0, str(status["message"]), "main.go", 296, "E"))
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _flag(argv: list[str], name: str, default: str) -> str:
    words = " ".join(argv).split()
    for i, w in enumerate(words):
        if w.startswith(f"--{name}="):
            return w.split("=", 1)[1]
        if w == f"--{name}" and i + 1 < len(words):
            return words[i + 1]
    return default


def _mounted_secret_file(ctx: ContainerContext, path: str) -> bytes | None:
    """The content of ``path`` if it lies in a secret volume of the pod (what the kubelet would have mounted)."""
    import base64

    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    volumes = {v.get("name"): v for v in (ctx.pod.get("spec") or {}).get("volumes") or []}
    for m in ctx.container.get("volumeMounts") or []:
        mount = str(m.get("mountPath", "")).rstrip("/")
        if not path.startswith(mount + "/"):
            continue
        secret = (volumes.get(m.get("name")) or {}).get("secret") or {}
        if not secret.get("secretName"):
            continue
        client = ctx.api_client()
        try:
            obj = k8s.CoreV1Api(client).read_namespaced_secret(secret["secretName"], ctx.namespace)
        except ApiException:
            return None
        finally:
            client.close()
        data = (obj.data or {}).get(path[len(mount) + 1:])
        return base64.b64decode(data) if data else None
    return None


def self_signed(hostnames: list[str]) -> tuple[bytes, bytes]:
    """A throwaway self-signed certificate + key (PEM) for ``hostnames``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def run_webhook(ctx: ContainerContext, gates: Mapping[str, bool], write: Callable[[list[logs.LogLine]], None]) -> int:
    """Serve until SIGTERM (see module docstring); ``gates`` are the parsed ``FEATURE_GATES``."""
    port = int(_flag(ctx.argv, "port", "443"))
    cert = _mounted_secret_file(ctx, _flag(ctx.argv, "tls-cert-file", ""))
    key = _mounted_secret_file(ctx, _flag(ctx.argv, "tls-private-key-file", ""))
    if cert is None or key is None:
        cert, key = self_signed([f"{ctx.pod_name}.{ctx.namespace}.pod"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir if ctx.work_dir.exists() else None) as tmp:
        (Path(tmp) / "tls.crt").write_bytes(cert)
        (Path(tmp) / "tls.key").write_bytes(key)
        try:
            tls.load_cert_chain(Path(tmp) / "tls.crt", Path(tmp) / "tls.key")
        except (ssl.SSLError, ValueError) as exc:
            ctx.stderr.write(f"Error: failed to load key pair: {exc}\n")
            return 1
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(gate_table.effective(gates),
                                                                        lambda line: write([line])))
    server.daemon_threads = True
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name=f"webhook-{ctx.pod_name}", daemon=True)
    thread.start()
    _set_serving(ctx.namespace, ctx.pod_name, port, f"127.0.0.1:{server.server_address[1]}")
    write([logs.webhook_start(port)])
    try:
        ctx.stop.wait()
    finally:
        _set_serving(ctx.namespace, ctx.pod_name, port, None)
        server.shutdown()
        server.server_close()
    return 0


def resolve_service(api: Any, namespace: str, name: str, port: int) -> str:
    """``(namespace, service, port)`` → the loopback ``host:port`` of a ready serving pod (a ServiceResolver).

    Follows the Service: its port entry → ``targetPort`` (a number or a container port name) → pods matching
    its selector that are Ready and have a webhook server up on that port. Raises the client-go-like
    ``no endpoints available for service "<name>"`` otherwise.
    """
    from kubetwin.api.errors import ApiError
    from kubetwin.api.resources import core
    from kubetwin.api.webhooks import WebhookCallError

    try:
        svc = api.get(core("services"), namespace, name)
    except ApiError as exc:
        raise WebhookCallError(f'service "{name}" not found') from exc
    spec = svc.get("spec") or {}
    entry = next((p for p in spec.get("ports") or [] if int(p.get("port") or 0) == port), None)
    if entry is None:
        raise WebhookCallError(f'service "{name}" has no port {port}')
    target = entry.get("targetPort", port)
    selector = spec.get("selector") or {}
    pods, _ = api.list(core("pods"), namespace)
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        if not ready or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        number = target if isinstance(target, int) else None
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if number is None and p.get("name") == target:
                    number = int(p["containerPort"])
        if number is None:
            continue
        hostport = serving(namespace, pod["metadata"]["name"], number)
        if hostport:
            return hostport
    raise WebhookCallError(f'no endpoints available for service "{name}"')


__all__ = ["VALIDATE_PATH", "resolve_service", "review_response", "run_webhook", "self_signed", "serving"]
