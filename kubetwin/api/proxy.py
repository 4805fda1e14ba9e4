"""``pods/proxy`` and ``services/proxy``: the apiserver as an HTTP proxy to servers inside pods.

``GET /api/v1/namespaces/<ns>/pods/<[scheme:]name[:port]>/proxy/<path>`` (``kubectl get --raw``, the Python
client's ``connect_get_namespaced_pod_proxy_with_path``) and the same under ``services/``, for every method.
Clusters without ``kubectl exec`` read metrics this way, so the twin forwards to the real servers: the
emulated programs' HTTP servers and real container processes, found through :class:`EndpointSource`
(the kubelet's ``endpoint(namespace, pod, port)``, which the cluster registers).

Port rules follow the apiserver (``pkg/registry/core/{pod,service}``): a pod URL without a port uses the first
declared container port; a service URL names a service port by name or number (none: the single port), whose
``targetPort`` (number or container-port name) is resolved on a Ready pod matching the selector. Failures are the
apiserver's ``503 ServiceUnavailable`` (``error trying to reach service: ...``, ``no endpoints available for
service "x"``); the backend's status, headers and body pass through unchanged.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
from typing import Protocol

from kubetwin.api import errors as E
from kubetwin.api.errors import ApiError
from kubetwin.api.request import ClientGone, Obj, RequestHandler
from kubetwin.api.resources import core

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailers", "transfer-encoding", "upgrade", "host", "authorization", "content-length"})
"""Headers never forwarded in either direction (hop-by-hop, plus the caller's credentials to the apiserver)."""
_CHUNK = 64 * 1024


class EndpointSource(Protocol):
    """Where a pod's server for a container port listens on this machine (the kubelet answers)."""

    def endpoint(self, namespace: str, pod: str, port: int) -> tuple[str, int] | None:
        """``(host, port)`` to connect to, or None when nothing of that pod serves the port."""
        ...


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def split_scheme_name_port(ident: str) -> tuple[str, str, str]:
    """``name``, ``name:port`` or ``scheme:name:port`` → (scheme, name, port), as ``SplitSchemeNamePort``."""
    parts = ident.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise E.bad_request(f"invalid request {ident!r}")
    if not name or scheme not in ("", "http", "https"):
        raise E.bad_request(f"invalid request {ident!r}")
    return scheme or "http", name, port


def _ready(pod: Obj) -> bool:
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions")
        or [])


def _container_port(pod: Obj, name: str) -> int | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name:
                return int(p["containerPort"])
    return None


def _pod_target(h: RequestHandler, ns: str, ident: str) -> tuple[str, Obj, int]:
    scheme, name, port = split_scheme_name_port(ident)
    pod = h.api.get(core("pods"), ns, name)
    if not port:
        port = next((str(p["containerPort"]) for c in (pod.get("spec") or {}).get("containers") or []
                     for p in c.get("ports") or []), "")
    number = int(port) if port.isdigit() else _container_port(pod, port) if port else 80
    if number is None:
        raise _unavailable(f'error trying to reach service: no port named "{port}" in pod "{name}"')
    if not (pod.get("status") or {}).get("podIP"):
        raise _unavailable(f'error trying to reach service: pod "{name}" has no IP address')
    return scheme, pod, number


def _service_target(h: RequestHandler, ns: str, ident: str) -> tuple[str, Obj, int]:
    scheme, name, port = split_scheme_name_port(ident)
    svc = h.api.get(core("services"), ns, name)
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    if not port:
        entry = ports[0] if len(ports) == 1 else next((p for p in ports if not p.get("name")), None)
    elif port.isdigit():
        entry = next((p for p in ports if int(p.get("port") or 0) == int(port)), None)
    else:
        entry = next((p for p in ports if p.get("name") == port), None)
    selector = spec.get("selector") or {}
    if entry is not None and selector:
        target = entry.get("targetPort", entry.get("port"))
        pods, _ = h.api.list(core("pods"), ns, copy_objects=False)
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()) or not _ready(pod):
                continue
            number = int(target) if str(target).isdigit() else _container_port(pod, str(target))
            if number is not None:
                return scheme, pod, number
    raise _unavailable(f'no endpoints available for service "{name}"')


def serve(h: RequestHandler, method: str, ns: str, kind: str, ident: str, suffix: str, query: str,
          body: bytes) -> None:
    """Forward one request to the pod (``kind`` ``pods``) or a Ready pod behind the service (``services``)."""
    scheme, pod, port = (_pod_target if kind == "pods" else _service_target)(h, ns, ident)
    meta = pod.get("metadata") or {}
    pod_ip = (pod.get("status") or {}).get("podIP") or ""
    src = h.twin.endpoint_source
    addr = src.endpoint(ns, str(meta.get("name")), port) if src is not None else None
    if addr is None:
        raise _unavailable(f"error trying to reach service: dial tcp {pod_ip}:{port}: connect: connection refused")
    target = suffix + (f"?{query}" if query else "")
    headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["X-Forwarded-For"] = h.client_address[0]
    conn: http.client.HTTPConnection
    if scheme == "https":  # the apiserver does not verify a pod's serving certificate either
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(addr[0], addr[1], timeout=30, context=ctx)
    else:
        conn = http.client.HTTPConnection(addr[0], addr[1], timeout=30)
    try:
        try:
            conn.request(method, target, body=body or None, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            why = "connect: connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            raise _unavailable(f"error trying to reach service: dial tcp {pod_ip}:{port}: {why}") from exc
        _relay(h, method, resp)
    finally:
        conn.close()


def _relay(h: RequestHandler, method: str, resp: http.client.HTTPResponse) -> None:
    """The backend's response to the client: status, end-to-end headers, then the body (chunked when the
    backend gave no length, so streaming endpoints stream)."""
    length = resp.getheader("Content-Length")
    h.send_response(resp.status, resp.reason)
    for k, v in resp.getheaders():
        if k.lower() not in _HOP_BY_HOP:
            h.send_header(k, v)
    if method == "HEAD":
        h.send_header("Content-Length", length or "0")
        h.end_headers()
        return
    chunked = length is None
    h.send_header("Transfer-Encoding", "chunked") if chunked else h.send_header("Content-Length", length or "0")
    h.end_headers()
    try:
        while True:
            data = resp.read1(_CHUNK) if chunked else resp.read(_CHUNK)
            if not data:
                break
            if chunked:
                h._chunk(data)
            else:
                h.wfile.write(data)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
    except (TimeoutError, OSError, ClientGone):
        h.close_connection = True
    if chunked:
        with contextlib.suppress(OSError):
            h.wfile.flush()


__all__ = ["EndpointSource", "serve", "split_scheme_name_port"]
