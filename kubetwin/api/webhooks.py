"""Admission webhooks: call the webhooks Validating- and MutatingWebhookConfigurations declare.

The NVIDIA driver's chart can install a validating webhook for ResourceClaims (nvidia-dra-driver.md §5.4);
on a real cluster a bad opaque config is then refused at create time with a 403. To make that observable on
the twin, :class:`WebhookAdmission` is an ``Api.admission`` hook that sends a real ``admission.k8s.io/v1``
AdmissionReview over HTTPS (trusting only the configuration's ``caBundle``) and turns a denial into the same
``Status`` the apiserver builds (``staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/errors``).
:class:`MutatingWebhookAdmission` calls mutating webhooks before validation (``Api.mutation``) and applies
their ``JSONPatch`` responses to the object, in configuration order; a reinvocation round
(``reinvocationPolicy: IfNeeded``) is not made (docs/twin-fidelity.md).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubetwin.api import patch
from kubetwin.api.core import AdmissionRequest, Api
from kubetwin.api.errors import ApiError
from kubetwin.api.selectors import label_selector_matches
from kubetwin.api.tls import client_context

Obj = dict[str, Any]

ServiceResolver = Callable[[str, str, int], str]
"""``(namespace, service name, port) -> "host:port"`` where the service's serving pod listens (loopback)."""


class WebhookCallError(Exception):
    """The webhook could not be called (resolution, connection, TLS, timeout, bad response)."""


def no_endpoints(namespace: str, name: str, port: int) -> str:
    """Default resolver: no pod serves any service, as on a cluster where the webhook pod is not up."""
    raise WebhookCallError(f'no endpoints available for service "{name}"')


def _selector_matches(sel: Obj | None, labels: dict[str, str]) -> bool:
    """A webhook's ``objectSelector``/``namespaceSelector``: None or empty matches everything."""
    return not sel or label_selector_matches(sel, labels)


def _rule_matches(rule: Obj, req: AdmissionRequest) -> bool:
    def has(values: list[str] | None, value: str) -> bool:
        return "*" in (values or []) or value in (values or [])

    if not has(rule.get("operations"), req.operation):
        return False
    if not has(rule.get("apiGroups"), req.rt.group) or not has(rule.get("apiVersions"), req.rt.version):
        return False
    resource = req.rt.plural + (f"/{req.subresource}" if req.subresource else "")
    resources = rule.get("resources") or []
    ok = resource in resources or "*/*" in resources
    if not req.subresource:
        ok = ok or "*" in resources
    else:
        ok = ok or f"*/{req.subresource}" in resources or f"{req.rt.plural}/*" in resources
    if not ok:
        return False
    scope = rule.get("scope") or "*"
    return scope == "*" or (scope == "Namespaced") == req.rt.namespaced


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection to one address that verifies the certificate for another name (SNI + hostname check):
    the service's DNS name while the bytes go to the loopback port the resolver found."""

    server_name: str | None = None

    def connect(self) -> None:
        if self.server_name is None:
            super().connect()
            return
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


@dataclass
class WebhookAdmission:
    """The admission hook; ``install()`` appends it to ``api.admission``."""

    api: Api
    """The API whose writes are admitted."""
    resolver: ServiceResolver = no_endpoints
    """Maps ``clientConfig.service`` to a loopback ``host:port`` (the twin composer provides it)."""

    configurations = "validatingwebhookconfigurations"
    """Plural of the configuration kind whose webhooks this hook calls."""

    def install(self) -> WebhookAdmission:
        self.api.admission.append(self)
        return self

    def __call__(self, req: AdmissionRequest) -> None:
        cfg_rt = self.api.registry.get("admissionregistration.k8s.io", "v1", self.configurations)
        if cfg_rt is None or req.rt.group == "admissionregistration.k8s.io":
            return  # webhooks never gate their own configuration objects (as on a real server)
        configs, _ = self.api.list(cfg_rt)
        for cfg in configs:
            for hook in cfg.get("webhooks") or []:
                if self._matches(hook, req):
                    self._call(hook, req)

    def _matches(self, hook: Obj, req: AdmissionRequest) -> bool:
        if not any(_rule_matches(r, req) for r in hook.get("rules") or []):
            return False
        obj = req.obj if req.obj is not None else req.old
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if not _selector_matches(hook.get("objectSelector"), labels):
            return False
        if hook.get("namespaceSelector"):
            if req.rt.plural == "namespaces" and not req.rt.group:
                ns_labels = labels
            elif req.rt.namespaced:
                ns_rt = self.api.registry.get("", "v1", "namespaces")
                ns = self.api.store.get(ns_rt.key, "", req.namespace) if ns_rt else None
                ns_labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
            else:
                return True
            return _selector_matches(hook.get("namespaceSelector"), ns_labels)
        return True

    def review(self, req: AdmissionRequest) -> Obj:
        """The AdmissionReview request body for ``req``."""
        rt = req.rt
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        gvr = {"group": rt.group, "version": rt.version, "resource": rt.plural}
        body: Obj = {
            "uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": req.name, "operation": req.operation, "userInfo": {"username": req.user},
            "object": req.obj, "oldObject": req.old, "dryRun": req.dry_run,
            "options": {"kind": {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions",
                                 "DELETE": "DeleteOptions"}[req.operation], "apiVersion": "meta.k8s.io/v1"},
        }
        if rt.namespaced:
            body["namespace"] = req.namespace
        if req.subresource:
            body["subResource"] = req.subresource
            body["requestSubResource"] = req.subresource
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}

    def _call(self, hook: Obj, req: AdmissionRequest) -> None:
        name = str(hook.get("name") or "")
        timeout = int(hook.get("timeoutSeconds") or 10)
        cc = hook.get("clientConfig") or {}
        review = self.review(req)
        try:
            url, server_name = self._url(cc, timeout)
            resp = self._post(url, cc.get("caBundle"), review, timeout, server_name=server_name)
        except WebhookCallError as exc:
            if (hook.get("failurePolicy") or "Fail") == "Ignore":
                return
            shown = self._display_url(cc, timeout)
            raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                           f'failed to call webhook: Post "{shown}": {exc}') from exc
        response = resp.get("response") or {}
        if response.get("uid") != review["request"]["uid"]:
            if (hook.get("failurePolicy") or "Fail") == "Ignore":
                return
            raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                           f'expected response.uid="{review["request"]["uid"]}", got "{response.get("uid")}"')
        if response.get("allowed"):
            self._allowed(hook, req, response)
            return
        result = response.get("status") or {}
        code = int(result.get("code") or 0)
        if code < 400:
            code = 403
        # As the apiserver's webhook ToStatusErr words it (kubernetes-dra.md/nvidia-dra-driver.md §5.4):
        # '<resource>.<group> "<name>" is forbidden: admission webhook "<w>" denied the request: <message>'.
        denied = f'admission webhook "{name}" denied the request'
        if result.get("message"):
            msg = f"{denied}: {result['message']}"
        elif result.get("reason"):
            msg = f"{denied}: {result['reason']}"
        else:
            msg = f"{denied} without explanation"
        obj_name = req.name or "Unknown"
        gr = req.rt.plural + (f".{req.rt.group}" if req.rt.group else "")
        prefix = "Internal error occurred" if code == 500 else f'{gr} "{obj_name}" is forbidden'
        details = dict(result.get("details") or {})
        if not details:
            details = ({"causes": [{"message": msg}]} if code == 500 else
                       {"group": req.rt.group, "kind": req.rt.plural, "name": obj_name})
        reason = str(result.get("reason") or ("InternalError" if code == 500 else "Forbidden"))
        raise ApiError(code, reason, f"{prefix}: {msg}", details)

    def _allowed(self, hook: Obj, req: AdmissionRequest, response: Obj) -> None:
        """An allowing response; validating webhooks may not patch, so any ``patch`` is ignored."""

    def _display_url(self, cc: Obj, timeout: int) -> str:
        if cc.get("url"):
            base = str(cc["url"])
        else:
            svc = cc.get("service") or {}
            base = (f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{int(svc.get('port') or 443)}"
                    f"{svc.get('path') or ''}")
        return f"{base}{'&' if '?' in base else '?'}timeout={timeout}s"

    def _url(self, cc: Obj, timeout: int) -> tuple[str, str | None]:
        """Where to connect, and the TLS server name to verify (``<svc>.<ns>.svc`` for a service reference,
        as the apiserver's webhook client does; the URL's own host otherwise)."""
        if cc.get("url"):
            return str(cc["url"]), None
        svc = cc.get("service") or {}
        hostport = self.resolver(str(svc.get("namespace")), str(svc.get("name")), int(svc.get("port") or 443))
        return f"https://{hostport}{svc.get('path') or ''}", f"{svc.get('name')}.{svc.get('namespace')}.svc"

    def _post(self, url: str, ca_bundle: str | None, review: Obj, timeout: int, *,
              server_name: str | None = None) -> Obj:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise WebhookCallError(f"webhook URL must use https: {url}")
        try:
            ctx = client_context(base64.b64decode(ca_bundle)) if ca_bundle else ssl.create_default_context()
        except (ValueError, OSError, ssl.SSLError) as exc:
            raise WebhookCallError(f"invalid caBundle: {exc}") from exc
        path = (parts.path or "/") + f"?timeout={timeout}s" + (f"&{parts.query}" if parts.query else "")
        conn = _Connection(parts.hostname, parts.port or 443, timeout=timeout, context=ctx)
        conn.server_name = server_name
        try:
            conn.request("POST", path, body=json.dumps(review).encode(),
                         headers={"Content-Type": "application/json", "Accept": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise WebhookCallError(f"expected response code 200, got {r.status}: {data[:200]!r}")
            out = json.loads(data)
            if not isinstance(out, dict):
                raise WebhookCallError("response is not an AdmissionReview")
            return out
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise WebhookCallError(str(exc) or type(exc).__name__) from exc
        finally:
            conn.close()


@dataclass
class MutatingWebhookAdmission(WebhookAdmission):
    """Mutating webhooks (``Api.mutation``): an allowing response's base64 ``JSONPatch`` is applied to the object
    being admitted, so validation, validating webhooks and the store see the patched object."""

    configurations = "mutatingwebhookconfigurations"

    def install(self) -> MutatingWebhookAdmission:
        self.api.mutation.append(self)
        return self

    def _allowed(self, hook: Obj, req: AdmissionRequest, response: Obj) -> None:
        raw = response.get("patch")
        if not raw or req.obj is None:
            return
        name = str(hook.get("name") or "")
        if response.get("patchType") != "JSONPatch":
            raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                           f'unsupported patch type "{response.get("patchType")}"')
        try:
            ops = json.loads(base64.b64decode(str(raw)))
            patched = patch.json_patch(req.obj, ops)
        except (ValueError, patch.PatchError) as exc:
            raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                           f"the server rejected our request due to an error in our request: {exc}") from exc
        if not isinstance(patched, dict):
            raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": '
                           "the patch did not produce an object")
        req.obj.clear()
        req.obj.update(patched)  # in place: the Api holds this dict
