"""The twin's HTTPS REST front end over :class:`~kubetwin.api.core.Api` (kubernetes-dra.md §8).

Real clients — the official Python client, kubectl, helm — talk to this exactly as to a real apiserver:
loopback HTTPS with a per-twin CA, a bearer token, discovery, OpenAPI v3, Table printing, chunked watch
streams and ``pods/log``. Every semantic decision (validation, finalizers, patches…) is :class:`Api`'s; this
module only translates HTTP to calls and :class:`ApiError` to ``Status`` bodies, so in-process callers and
HTTP callers can never disagree.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from kubetwin.api import discovery, openapi, protobuf
from kubetwin.api import errors as E
from kubetwin.api.core import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, PATCH_TYPES, STRATEGIC_PATCH, Api, rfc3339
from kubetwin.api.errors import ApiError
from kubetwin.api.exec import ExecSession, ExecTarget, accept_key, parse_request, pick_protocol
from kubetwin.api.resources import BUILTIN, ResourceType
from kubetwin.api.tls import ServingCert, make_serving_cert
from kubetwin.errors import ConfigError

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# -- version ------------------------------------------------------------------------------------------

_GO_VERSION = {"34": "go1.24.9", "35": "go1.25.6", "36": "go1.25.7", "37": "go1.26.1"}


@dataclass(frozen=True)
class KubeVersion:
    """What ``/version`` reports (§8.1). helm parses ``gitVersion`` as semver for ``kubeVersion`` checks."""

    git_version: str = "v1.36.0"
    """Full version, ``v<major>.<minor>.<patch>``."""
    git_commit: str = "0000000000000000000000000000000000000000"
    """Build commit (the twin has none; zeros make that obvious)."""
    build_date: str = "2026-04-22T00:00:00Z"
    """Build date as the real binary reports it."""

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        """``"1.36"``, ``"v1.36"`` or ``"1.36.2"`` → a version (patch 0 when not given)."""
        t = text.strip().removeprefix("v")
        parts = t.split(".")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise ConfigError(f"kube version {text!r} is not of the form 1.36 or 1.36.2", where="kube_version")
        if len(parts) == 2:
            parts.append("0")
        return cls(git_version="v" + ".".join(parts))

    @property
    def major(self) -> str:
        return self.git_version.removeprefix("v").split(".")[0]

    @property
    def minor(self) -> str:
        return self.git_version.removeprefix("v").split(".")[1]

    def to_dict(self) -> dict[str, str]:
        return {
            "major": self.major, "minor": self.minor,
            "emulationMajor": self.major, "emulationMinor": self.minor,
            "minCompatibilityMajor": self.major, "minCompatibilityMinor": str(max(0, int(self.minor) - 1)),
            "gitVersion": self.git_version, "gitCommit": self.git_commit, "gitTreeState": "clean",
            "buildDate": self.build_date, "goVersion": _GO_VERSION.get(self.minor, "go1.25.7"),
            "compiler": "gc", "platform": "linux/amd64",
        }


# -- logs ---------------------------------------------------------------------------------------------


class LogSource(Protocol):
    """Where ``pods/log`` reads container output; the kubelet implements it and the twin registers it.

    Format contract: the bytes are *timestamped lines*, each ``<RFC 3339 UTC timestamp with nanoseconds or
    microseconds> <line>\\n`` (the CRI log-file shape, without the stream tag), in the order written. The server
    applies ``sinceSeconds``, ``tailLines``, ``timestamps`` and ``limitBytes`` itself, so every log source
    gets the kubelet's exact option semantics for free.
    """

    def read(self, namespace: str, pod: str, container: str, *, previous: bool) -> bytes | None:
        """Everything logged so far by the current (or, with ``previous``, the last terminated) instance of
        the container; None if the kubelet has no log for it."""
        ...

    def follow(self, namespace: str, pod: str, container: str, *, offset: int) -> Iterator[bytes]:
        """New output after byte ``offset`` of what :meth:`read` returned, as chunks of whole timestamped
        lines; the iterator ends when the container ends. It should yield ``b""`` at least every second or so
        while idle, so the server notices a gone client or its own shutdown (it then calls ``close()``)."""
        ...


# -- exec ---------------------------------------------------------------------------------------------


class ExecSource(Protocol):
    """Where ``pods/exec`` learns how to run a command "in" a container; the kubelet implements it and the twin
    registers it (like :class:`LogSource`). The server does the WebSocket and channel protocol itself
    (:mod:`kubetwin.api.exec`)."""

    def exec_target(self, namespace: str, pod: str, container: str) -> ExecTarget | None:
        """Environment and working directory of the *running* instance of the container; None when it is not
        running (the kubelet's ``container not found ("<name>")``)."""
        ...


# -- strict field validation (§8.3) -------------------------------------------------------------------

_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields",
})
_TOP_FIELDS: dict[str, frozenset[str]] = {
    "/configmaps": frozenset({"data", "binaryData", "immutable"}),
    "/secrets": frozenset({"data", "stringData", "type", "immutable"}),
    "/serviceaccounts": frozenset({"secrets", "imagePullSecrets", "automountServiceAccountToken"}),
    "/endpoints": frozenset({"subsets"}),
    "/events": frozenset({"involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
                          "count", "type", "eventTime", "series", "action", "related", "reportingComponent",
                          "reportingInstance"}),
    "rbac.authorization.k8s.io/roles": frozenset({"rules"}),
    "rbac.authorization.k8s.io/clusterroles": frozenset({"rules", "aggregationRule"}),
    "rbac.authorization.k8s.io/rolebindings": frozenset({"subjects", "roleRef"}),
    "rbac.authorization.k8s.io/clusterrolebindings": frozenset({"subjects", "roleRef"}),
    "admissionregistration.k8s.io/validatingwebhookconfigurations": frozenset({"webhooks"}),
    "admissionregistration.k8s.io/mutatingwebhookconfigurations": frozenset({"webhooks"}),
    "scheduling.k8s.io/priorityclasses": frozenset({"value", "globalDefault", "description", "preemptionPolicy"}),
    "apps/controllerrevisions": frozenset({"data", "revision"}),
}
_BUILTIN_KEYS = frozenset(rt.key for rt in BUILTIN)


def unknown_fields(rt: ResourceType, body: Any) -> list[str]:
    """Unknown top-level and ``metadata`` fields of a write body (custom resources: metadata only).

    Patch directives (``$patch``, ``$setElementOrder/…``) are not fields. Deeper fields are not checked:
    the twin's schemas are loose (documented in docs/twin-fidelity.md).
    """
    if not isinstance(body, dict):
        return []
    out: list[str] = []
    if rt.key in _BUILTIN_KEYS:
        allowed = {"apiVersion", "kind", "metadata"} | _TOP_FIELDS.get(rt.key, frozenset({"spec", "status"}))
        out += [k for k in body if k not in allowed and not k.startswith("$")]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        out += [f"metadata.{k}" for k in meta if k not in _META_FIELDS and not k.startswith("$")]
    return out


# -- request plumbing ---------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed the connection mid-response."""


_NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource",
                      {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})

# Kinds whose DELETE answers with the deleted object rather than a Status (generic store
# ``ReturnDeletedObject``; §8.2). Custom resources do too.
_RETURNS_DELETED = frozenset({"/pods", "/serviceaccounts", "/namespaces"})


def _q1(q: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    v = q.get(name)
    return v[-1] if v else default


def _qbool(q: dict[str, list[str]], name: str) -> bool:
    return (_q1(q, name) or "").lower() in ("true", "1")


def _qint(q: dict[str, list[str]], name: str) -> int | None:
    v = _q1(q, name)
    if v in (None, ""):
        return None
    try:
        return int(str(v))
    except ValueError as exc:
        raise E.bad_request(f'invalid value for {name}: "{v}"') from exc


def _wants_table(accept: str) -> bool:
    return any("as=Table" in p and "g=meta.k8s.io" in p for p in accept.split(","))


def _manager_from_user_agent(ua: str) -> str | None:
    """The apiserver's default field manager: the User-Agent up to its first ``/`` (max 128 chars)."""
    prefix = ua.split("/", 1)[0].strip()
    return prefix[:128] or None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    twin: ApiServer


class ApiServer:
    """HTTPS Kubernetes API on loopback; see the module docstring.

    ``start()`` binds (``port=0`` picks a free port) and serves in a background thread; ``stop()`` ends
    every watch and log stream and closes every connection.
    """

    def __init__(self, api: Api, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 kube_version: str = "1.36", log_source: LogSource | None = None, crd_controller: bool = True,
                 exec_source: ExecSource | None = None, bookmark_interval: float = 10.0,
                 max_watch_seconds: float = 1800.0) -> None:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"the twin's API server listens on loopback only, not {host!r}", where="host")
        self.api = api
        self.host = host
        self._port = port
        self.token = token or secrets.token_urlsafe(32)
        self.version = KubeVersion.parse(kube_version)
        self.log_source = log_source
        self.exec_source = exec_source
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self._cert: ServingCert = make_serving_cert()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._streams = 0
        self._streams_cond = threading.Condition()
        self._crd: Any = None
        if crd_controller:
            from kubetwin.api.crds import CrdController

            self._crd = CrdController(api)

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def ca_pem(self) -> bytes:
        """The CA that signed the serving certificate (for kubeconfigs and webhook callers)."""
        return self._cert.ca_pem

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        if self._httpd is not None:
            return self
        if self._crd is not None:
            self._crd.start()
        httpd = _Server((self.host, self._port), _Handler, bind_and_activate=False)
        httpd.socket = self._cert.server_context().wrap_socket(httpd.socket, server_side=True,
                                                               do_handshake_on_connect=False)
        httpd.server_bind()
        httpd.server_activate()
        httpd.twin = self
        self._httpd = httpd
        self.stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"twin-apiserver-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: watches and log follows end, idle keep-alive connections are closed."""
        self.stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            with self._streams_cond:  # let watch/log streams send their final chunk first
                self._streams_cond.wait_for(lambda: self._streams == 0, timeout=3.0)
            with self._conns_lock:
                conns = list(self._conns)
            for c in conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._crd is not None:
            self._crd.stop()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def check_token(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].strip().encode(), self.token.encode())

    def kubeconfig(self, *, context: str = "dra-lab-twin", namespace: str | None = None) -> dict[str, Any]:
        """A kubeconfig (as a dict) pointing at this server with its CA and token."""
        ctx: dict[str, Any] = {"cluster": context, "user": context}
        if namespace:
            ctx["namespace"] = namespace
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca_pem).decode("ascii")}}],
            "users": [{"name": context, "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], *, context: str = "dra-lab-twin",
                         namespace: str | None = None) -> str:
        """Write :meth:`kubeconfig` to ``path`` with mode 0600 (it holds the token); returns the path."""
        p = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(self.kubeconfig(context=context, namespace=namespace), f, sort_keys=False)
        os.chmod(p, 0o600)
        return p


# -- the handler --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 300  # idle keep-alive connections are dropped after 5 minutes

    # ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        # A response goes out as two writes (headers, then body); with Nagle's algorithm the body waits for
        # the client's delayed ACK of the headers, ~40 ms per request on Linux loopback. The real apiserver
        # (Go) sets TCP_NODELAY on every connection too.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.twin._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.twin._track(self.connection, False)

    def handle(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def twin(self) -> ApiServer:
        return self.server.twin

    @property
    def api(self) -> Api:
        return self.server.twin.api

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # -- responses -----------------------------------------------------------------------------------
    def _send_bytes(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for w in self._warnings:
            self.send_header("Warning", f'299 - "{w}"'.replace("\n", " "))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, obj: Any, content_type: str = "application/json") -> None:
        self._send_bytes(code, json.dumps(obj, separators=(",", ":")).encode(), content_type)

    def _send_status(self, err: ApiError) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="dra-lab-twin"'} if err.code == 401 else None
        self._send_bytes(err.code, json.dumps(err.to_status()).encode(), "application/json", headers)

    def _start_stream(self, content_type: str) -> None:
        with self.twin._streams_cond:
            self.twin._streams += 1
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _end_stream(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        self.close_connection = True
        if self._streaming:
            self._streaming = False
            with self.twin._streams_cond:
                self.twin._streams -= 1
                self.twin._streams_cond.notify_all()

    # -- dispatch ------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self._warnings: list[str] = []
        self._streaming = False
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        parts = urlsplit(self.path)
        path = parts.path
        q = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
                self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
                return
            if not self.twin.check_token(self.headers.get("Authorization")):
                raise E.unauthorized()
            self._route(method, path, q, body)
        except ApiError as err:
            self._send_status(err)
        except _ClientGone:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # pragma: no cover - a twin bug; answer like the apiserver's panic handler
            log.exception("twin apiserver: %s %s failed", method, path)
            self._send_status(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    def _route(self, method: str, path: str, q: dict[str, list[str]], body: bytes) -> None:
        segs = [unquote(s) for s in path.strip("/").split("/") if s]
        reg = self.api.registry
        accept = self.headers.get("Accept") or ""
        if path == "/version" or path == "/version/":
            self._send_json(200, self.twin.version.to_dict())
            return
        if segs[:2] == ["openapi", "v3"]:
            self._openapi(segs[2:])
            return
        if segs[:1] == ["openapi"]:
            raise _NOT_FOUND
        if segs == ["api"]:
            if discovery.wants_aggregated(accept):
                self._send_json(200, discovery.aggregated(reg, core=True), discovery.AGGREGATED_V2)
            else:
                self._send_json(200, discovery.api_versions(f"{self.twin.host}:{self.twin.port}"))
            return
        if segs == ["apis"]:
            if discovery.wants_aggregated(accept):
                self._send_json(200, discovery.aggregated(reg, core=False), discovery.AGGREGATED_V2)
            else:
                self._send_json(200, discovery.api_group_list(reg))
            return
        if segs[:1] == ["api"] and len(segs) >= 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[:1] == ["apis"] and len(segs) >= 2:
            group = segs[1]
            if len(segs) == 2:
                doc = discovery.api_group(reg, group)
                if doc is None:
                    raise _NOT_FOUND
                self._send_json(200, doc)
                return
            version, rest = segs[2], segs[3:]
        else:
            raise _NOT_FOUND
        if not rest:
            rl = discovery.api_resource_list(reg, group, version)
            if rl is None:
                raise _NOT_FOUND
            self._send_json(200, rl)
            return
        watch_path = False
        if rest[0] == "watch":  # deprecated /watch/ prefix paths still used by some clients
            watch_path, rest = True, rest[1:]
            if not rest:
                raise _NOT_FOUND
        self._resource(method, group, version, rest, q, body, watch_path)

    def _openapi(self, rest: list[str]) -> None:
        reg = self.api.registry
        kv = self.twin.version.git_version
        if not rest:
            self._send_json(200, openapi.root(reg, kube_version=kv))
            return
        if rest[0] == "api" and rest[1:] == ["v1"]:
            doc = openapi.gv_document(reg, "", "v1", kube_version=kv)
        elif rest[0] == "apis" and len(rest) == 3:
            doc = openapi.gv_document(reg, rest[1], rest[2], kube_version=kv)
        else:
            doc = None
        if doc is None:
            raise _NOT_FOUND
        self._send_json(200, doc)

    # -- resources -----------------------------------------------------------------------------------
    def _resolve(self, group: str, version: str, rest: list[str]
                 ) -> tuple[ResourceType, str | None, str | None, str | None]:
        reg = self.api.registry
        if rest[0] == "namespaces" and len(rest) >= 3:
            rt = reg.get(group, version, rest[2])
            if rt is not None and rt.namespaced:
                tail = rest[3:]
                if len(tail) > 2:
                    raise _NOT_FOUND
                return rt, rest[1], (tail[0] if tail else None), (tail[1] if len(tail) > 1 else None)
        rt = reg.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise _NOT_FOUND
        name = rest[1] if len(rest) > 1 else None
        if rt.namespaced and name is not None:
            raise _NOT_FOUND
        return rt, None, name, (rest[2] if len(rest) > 2 else None)

    def _parse_body(self, body: bytes, *, patch_type: str | None = None) -> Any:
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if not body.strip():
            raise E.bad_request("the body of the request was empty")
        try:
            if ctype in ("application/yaml", APPLY_PATCH) or (patch_type == APPLY_PATCH):
                return yaml.safe_load(body)
            if ctype == "application/vnd.kubernetes.protobuf":
                try:
                    return protobuf.decode(body)
                except protobuf.ProtobufError as exc:
                    raise E.ApiError(415, "UnsupportedMediaType",
                                     f"the body of the request was in an unknown format - accepted media types "
                                     f"include: application/json, application/yaml ({exc})") from exc
            if ctype == "application/cbor":
                raise E.ApiError(415, "UnsupportedMediaType",
                                 "the body of the request was in an unknown format - accepted media types "
                                 "include: application/json, application/yaml")
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise E.bad_request(f"the object provided is unrecognized or malformed: {exc}") from exc

    def _field_validation(self, rt: ResourceType, q: dict[str, list[str]], body: Any) -> None:
        mode = _q1(q, "fieldValidation") or "Warn"
        if mode not in ("Ignore", "Warn", "Strict"):
            raise E.bad_request(f"fieldValidation parameter unsupported: {mode}; supported values: Ignore, Warn, "
                                f"Strict")
        if mode == "Ignore":
            return
        unknown = unknown_fields(rt, body)
        if not unknown:
            return
        if mode == "Strict":
            raise E.bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
        self._warnings.extend(f'unknown field \\"{u}\\"' for u in unknown)

    def _dry_run(self, q: dict[str, list[str]], body_opts: Any = None) -> bool:
        vals = list(q.get("dryRun", []))
        if isinstance(body_opts, dict) and isinstance(body_opts.get("dryRun"), list):
            vals += [str(v) for v in body_opts["dryRun"]]
        for v in vals:
            if v != "All":
                raise E.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
        return bool(vals)

    def _manager(self, q: dict[str, list[str]]) -> str | None:
        m = _q1(q, "fieldManager")
        if m:
            if len(m) > 128:
                raise E.bad_request("fieldManager: Too long: may not be more than 128 bytes")
            return m
        return _manager_from_user_agent(self.headers.get("User-Agent") or "")

    def _resource(self, method: str, group: str, version: str, rest: list[str], q: dict[str, list[str]],
                  body: bytes, watch_path: bool) -> None:
        rt, ns, name, sub = self._resolve(group, version, rest)
        if sub is not None and sub not in rt.subresources:
            raise _NOT_FOUND
        watch = watch_path or _qbool(q, "watch")
        if name is None:
            if method in ("GET", "HEAD"):
                if watch:
                    self._watch(rt, ns, None, q)
                else:
                    self._list(rt, ns, q)
            elif method == "POST":
                if rt.namespaced and ns is None:
                    raise E.method_not_allowed(f"the server does not allow this method on the requested resource "
                                               f"(post {rt.plural})")
                self._create(rt, ns, q, body)
            elif method == "DELETE":
                self._delete_collection(rt, ns, q, body)
            else:
                raise E.method_not_allowed("the server does not allow this method on the requested resource")
            return
        if sub is None:
            if method in ("GET", "HEAD"):
                if watch:
                    self._watch(rt, ns, name, q)
                else:
                    self._get(rt, ns, name, q)
            elif method == "PUT":
                self._update(rt, ns, name, None, q, body)
            elif method == "PATCH":
                self._patch(rt, ns, name, None, q, body)
            elif method == "DELETE":
                self._delete(rt, ns, name, q, body)
            else:
                raise E.method_not_allowed("the server does not allow this method on the requested resource")
            return
        handler = _SUBRESOURCES.get((sub, method))
        if handler is None:
            raise E.method_not_allowed("the server does not allow this method on the requested resource")
        handler(self, rt, ns, name, q, body)

    # -- verbs ---------------------------------------------------------------------------------------
    def _send_obj(self, code: int, rt: ResourceType, obj: Obj, q: dict[str, list[str]], rv: str = "") -> None:
        if _wants_table(self.headers.get("Accept") or "") and self._send_table(rt, [obj], q, rv):
            return
        self._send_json(code, obj)

    def _send_table(self, rt: ResourceType, items: list[Obj], q: dict[str, list[str]], rv: str) -> bool:
        table = self._table(rt, items, q, rv)
        if table is None:
            return False
        self._send_json(200, table)
        return True

    def _table(self, rt: ResourceType, items: list[Obj], q: dict[str, list[str]], rv: str) -> Obj | None:
        try:
            from kubetwin.api import tables
        except ImportError:  # pragma: no cover - tables.py is optional; kubectl falls back to NAME/AGE
            return None
        include = _q1(q, "includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise E.bad_request(f"includeObject: Unsupported value: \"{include}\": supported values: "
                                f"\"Metadata\", \"None\", \"Object\"")
        return tables.to_table(rt.kind, items, now=self.api.clock.now(), wide=True,
                               include_object=include,  # type: ignore[arg-type]
                               resource_version=rv)

    def _get(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]]) -> None:
        obj = self.api.get(rt, ns, name)
        self._send_obj(200, rt, obj, q)

    def _list(self, rt: ResourceType, ns: str | None, q: dict[str, list[str]]) -> None:
        if _q1(q, "continue"):
            raise E.expired("The provided continue parameter is too old to display a consistent list result. "
                            "You can start a new list without the continue parameter.")
        # The store's objects uncopied: a list is only serialised (tables and the shallow copies below never
        # change them), and copying every item was most of a large list's cost.
        items, rv = self.api.list(rt, ns, label_selector=_q1(q, "labelSelector"),
                                  field_selector=_q1(q, "fieldSelector"), copy_objects=False)
        if _wants_table(self.headers.get("Accept") or ""):
            table = self._table(rt, items, q, rv)
            if table is not None:
                self._send_json(200, table)
                return
        if rt.key in _BUILTIN_KEYS:  # real servers omit kind/apiVersion on built-in list items (§8.4)
            items = [{k: v for k, v in it.items() if k not in ("kind", "apiVersion")} for it in items]
        self._send_json(200, {"kind": rt.list_kind, "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": rv}, "items": items})

    def _create(self, rt: ResourceType, ns: str | None, q: dict[str, list[str]], body: bytes) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        want = obj.get("apiVersion")
        if want and want != rt.api_version:
            raise E.bad_request(f"the API version in the data ({want}) does not match the expected API version "
                                f"({rt.api_version})")
        self._field_validation(rt, q, obj)
        out = self.api.create(rt, ns, obj, dry_run=self._dry_run(q), field_manager=self._manager(q))
        self._send_obj(201, rt, out, q)

    def _update(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, q: dict[str, list[str]],
                body: bytes) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        self._field_validation(rt, q, obj)
        out = self.api.update(rt, ns, name, obj, subresource=sub, field_manager=self._manager(q),
                              dry_run=self._dry_run(q))
        self._send_obj(200, rt, out, q)

    def _patch(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, q: dict[str, list[str]],
               body: bytes) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in PATCH_TYPES:
            raise E.unsupported_media_type(ctype or "none")
        patch = self._parse_body(body, patch_type=ctype)
        if ctype == JSON_PATCH and not isinstance(patch, list):
            raise E.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if ctype in (MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH) and not isinstance(patch, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        if ctype != JSON_PATCH:
            self._field_validation(rt, q, patch)
        force = _qbool(q, "force")
        if force and ctype != APPLY_PATCH:
            raise E.bad_request("force: Invalid value: true: may not be specified for non-apply patch")
        manager = _q1(q, "fieldManager") if ctype == APPLY_PATCH else self._manager(q)
        out, created = self.api.patch(rt, ns, name, ctype, patch, subresource=sub, field_manager=manager,
                                      force=force, dry_run=self._dry_run(q))
        self._send_obj(201 if created else 200, rt, out, q)

    def _delete_options(self, q: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if body.strip():
            parsed = self._parse_body(body)
            if isinstance(parsed, dict):
                opts = parsed
        grace = opts.get("gracePeriodSeconds")
        qgrace = _qint(q, "gracePeriodSeconds")
        if qgrace is not None:
            grace = qgrace
        policy = _q1(q, "propagationPolicy") or opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True or _qbool(q, "orphanDependents"):
            policy = policy or "Orphan"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise E.bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                f'"Background", "Foreground", "Orphan"')
        return {"grace_period_seconds": None if grace is None else int(grace), "propagation_policy": policy,
                "preconditions": opts.get("preconditions") or None, "dry_run": self._dry_run(q, opts)}

    def _delete(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]], body: bytes) -> None:
        opts = self._delete_options(q, body)
        out = self.api.delete(rt, ns, name, **opts)
        meta = out.get("metadata") or {}
        still = self.api.store.get(rt.key, (meta.get("namespace") or "") if rt.namespaced else "", name)
        if still is not None and still["metadata"].get("uid") == meta.get("uid"):  # pending (or dry run)
            self._send_obj(200, rt, out, q)
            return
        if rt.key in _RETURNS_DELETED or rt.group == "resource.k8s.io" or rt.key not in _BUILTIN_KEYS:
            self._send_obj(200, rt, out, q)
            return
        details: dict[str, Any] = {"name": name, "kind": rt.plural, "uid": meta.get("uid")}
        if rt.group:
            details["group"] = rt.group
        self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": details})

    def _delete_collection(self, rt: ResourceType, ns: str | None, q: dict[str, list[str]], body: bytes) -> None:
        opts = self._delete_options(q, body)
        opts.pop("preconditions", None)
        items = self.api.delete_collection(rt, ns, label_selector=_q1(q, "labelSelector"),
                                           field_selector=_q1(q, "fieldSelector"), **opts)
        self._send_json(200, {"kind": rt.list_kind, "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": str(self.api.store.current_rv())}, "items": items})

    # -- watch ---------------------------------------------------------------------------------------
    def _watch(self, rt: ResourceType, ns: str | None, name: str | None, q: dict[str, list[str]]) -> None:
        fs = _q1(q, "fieldSelector")
        if name is not None:
            fs = f"metadata.name={name}" + (f",{fs}" if fs else "")
        ls = _q1(q, "labelSelector")
        rv = _q1(q, "resourceVersion")
        bookmarks = _qbool(q, "allowWatchBookmarks")
        timeout = _qint(q, "timeoutSeconds")
        limit = float(timeout) if timeout is not None and timeout > 0 else self.twin.max_watch_seconds
        table = _wants_table(self.headers.get("Accept") or "")
        initial: list[Obj] = []
        initial_end: str | None = None
        if _qbool(q, "sendInitialEvents"):
            if not bookmarks or _q1(q, "resourceVersionMatch") != "NotOlderThan":
                raise ApiError(
                    422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: "
                    "sendInitialEvents is allowed only with allowWatchBookmarks=true and "
                    "resourceVersionMatch=NotOlderThan")
            initial, initial_end = self.api.list(rt, ns, label_selector=ls, field_selector=fs, copy_objects=False)
            rv = initial_end
        try:
            # Events are only serialised (or turned into table rows that reference them): no copy per event.
            w = self.api.watch(rt, ns, resource_version=rv, label_selector=ls, field_selector=fs,
                               copy_objects=False)
        except ApiError as err:
            if err.code != 410:
                raise
            self._start_stream("application/json")
            with contextlib.suppress(_ClientGone):
                self._chunk(self._event_line("ERROR", err.to_status()))
            self._end_stream()
            return
        self._start_stream("application/json")
        started = self.api.monotonic()
        last_sent = started
        try:
            for obj in initial:
                self._chunk(self._event_line("ADDED", self._watch_obj(rt, obj, q, table)))
            if initial_end is not None:
                self._chunk(self._event_line("BOOKMARK", {
                    "kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": initial_end,
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}))
            while not self.twin.stopping.is_set():
                now = self.api.monotonic()
                if now - started >= limit:
                    break
                ev = w.next(timeout=min(0.5, limit - (now - started)))
                if ev is None:
                    if w.stopped:
                        break
                    if bookmarks and self.api.monotonic() - last_sent >= self.twin.bookmark_interval:
                        self._chunk(self._event_line("BOOKMARK", {
                            "kind": rt.kind, "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": w.last_rv}}))
                        last_sent = self.api.monotonic()
                    continue
                self._chunk(self._event_line(ev.type, self._watch_obj(rt, ev.object, q, table)))
                last_sent = self.api.monotonic()
        except _ClientGone:
            pass
        finally:
            w.stop()
        self._end_stream()

    def _watch_obj(self, rt: ResourceType, obj: Obj, q: dict[str, list[str]], table: bool) -> Obj:
        if table:
            t = self._table(rt, [obj], q, str((obj.get("metadata") or {}).get("resourceVersion", "")))
            if t is not None:
                return t
        return obj

    @staticmethod
    def _event_line(kind: str, obj: Obj) -> bytes:
        return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

    # -- subresources --------------------------------------------------------------------------------
    def _sub_status_get(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                        body: bytes) -> None:
        self._get(rt, ns, name, q)

    def _sub_status_put(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                        body: bytes) -> None:
        self._update(rt, ns, name, "status", q, body)

    def _sub_status_patch(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                          body: bytes) -> None:
        self._patch(rt, ns, name, "status", q, body)

    def _sub_finalize(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                      body: bytes) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        cur = self.api.get(rt, ns, name)
        want_rv = (obj.get("metadata") or {}).get("resourceVersion")
        new = copy.deepcopy(cur)
        new.setdefault("spec", {})["finalizers"] = list((obj.get("spec") or {}).get("finalizers") or [])
        if not new["spec"]["finalizers"]:
            new["spec"].pop("finalizers")
        new["metadata"]["resourceVersion"] = want_rv or cur["metadata"]["resourceVersion"]
        out = self.api.update(rt, ns, name, new, field_manager=self._manager(q), dry_run=self._dry_run(q))
        self._send_obj(200, rt, out, q)

    def _sub_binding(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                     body: bytes) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        target = obj.get("target") or {}
        node = target.get("name")
        if not node:
            raise ApiError(422, "Invalid", f'Binding "{name}" is invalid: target.name: Required value',
                           {"name": name, "kind": "Binding",
                            "causes": [{"reason": "FieldValueRequired", "message": "Required value",
                                        "field": "target.name"}]})
        if target.get("kind") not in (None, "", "Node"):
            raise ApiError(422, "Invalid", f'Binding "{name}" is invalid: target.kind: Invalid value: '
                           f'"{target.get("kind")}": must be empty or \'Node\'', {"name": name, "kind": "Binding"})
        uid = ((obj.get("metadata") or {}).get("uid")) or None
        annotations = (obj.get("metadata") or {}).get("annotations") or None
        self.api.bind(str(ns or ""), name, str(node), uid=uid, annotations=annotations,
                      dry_run=self._dry_run(q))
        self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201})

    def _sub_eviction(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                      body: bytes) -> None:
        obj = self._parse_body(body) if body.strip() else {}
        opts = (obj or {}).get("deleteOptions") or {}
        grace = opts.get("gracePeriodSeconds")
        self.api.delete(rt, ns, name, grace_period_seconds=None if grace is None else int(grace),
                        preconditions=opts.get("preconditions") or None, dry_run=self._dry_run(q, opts))
        self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201})

    def _sub_exec(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]], body: bytes) -> None:
        """``pods/exec`` over WebSocket (§8.8). Errors before the upgrade are plain HTTP Status answers, which
        kubectl shows as ``error: unable to upgrade connection: <message>`` (after its SPDY fallback, which
        gets the same answer)."""
        pod = self.api.get(rt, ns, name)
        spec = pod.get("spec") or {}
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise E.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        container = _q1(q, "container")
        names = [str(c.get("name")) for c in spec.get("containers") or []]
        others = [str(c.get("name")) for c in (spec.get("initContainers") or []) + (spec.get("ephemeralContainers")
                                                                                  or [])]
        if not container:
            if len(names) != 1:
                raise E.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                    f"[{' '.join(names)}]")
            container = names[0]
        elif container not in names + others:
            raise E.bad_request(f"container {container} is not valid for pod {name}")
        if not spec.get("nodeName"):
            raise E.bad_request(f"pod {name} does not have a host assigned")
        req = parse_request(q)
        if not req.argv:
            raise E.bad_request("you must specify at least one command for the container")
        if not (req.stdin or req.stdout or req.stderr):
            raise E.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        src = self.twin.exec_source
        if src is None:
            raise E.bad_request(f'no exec source is registered with the twin for container "{container}" in pod '
                                f'"{name}"')
        target = src.exec_target(str(ns), name, container)
        if target is None:
            # The kubelet's answer for a container without a running instance (500, proxied by the apiserver).
            raise ApiError(500, "InternalError", f'container not found ("{container}")')
        if target.emulated:
            raise E.bad_request(f'exec into emulated container "{container}" of pod "{name}" is not supported by '
                                f'the twin (its programs run in-process; see docs/twin-fidelity.md)')
        key = self.headers.get("Sec-WebSocket-Key")
        upgrade = (self.headers.get("Upgrade") or "").lower()
        if upgrade != "websocket" or not key:
            raise E.bad_request("exec needs a WebSocket upgrade (Upgrade: websocket with v5.channel.k8s.io or "
                                "v4.channel.k8s.io); the twin does not speak SPDY")
        protocol = pick_protocol(self.headers.get("Sec-WebSocket-Protocol"))
        if protocol is None:
            raise E.bad_request(f"exec: none of the offered subprotocols "
                                f"{self.headers.get('Sec-WebSocket-Protocol')!r} is supported by the twin "
                                f"(v5.channel.k8s.io, v4.channel.k8s.io)")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ExecSession(self.connection, protocol, req, target, self.twin.stopping).run()

    def _sub_scale_get(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                       body: bytes) -> None:
        self._send_json(200, _scale_of(self.api.get(rt, ns, name)))

    def _sub_scale_write(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                         body: bytes) -> None:
        from kubetwin.api import patch as P

        cur = self.api.get(rt, ns, name)
        scale = _scale_of(cur)
        parsed = self._parse_body(body)
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if self.command == "PUT":
            new_scale = parsed
        elif ctype == JSON_PATCH:
            new_scale = P.json_patch(scale, parsed)
        elif ctype in (MERGE_PATCH, STRATEGIC_PATCH):
            new_scale = P.merge_patch(scale, parsed)
        else:
            raise E.unsupported_media_type(ctype)
        replicas = ((new_scale or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                           f'{replicas}: must be greater than or equal to 0', {"name": name, "kind": "Scale"})
        want_rv = ((new_scale.get("metadata") or {}).get("resourceVersion")) if self.command == "PUT" else None
        new = copy.deepcopy(cur)
        new["spec"]["replicas"] = replicas
        new["metadata"]["resourceVersion"] = want_rv or cur["metadata"]["resourceVersion"]
        out = self.api.update(rt, ns, name, new, field_manager=self._manager(q), dry_run=self._dry_run(q))
        self._send_json(200, _scale_of(out))

    def _sub_log(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]], body: bytes) -> None:
        pod = self.api.get(rt, ns, name)
        spec = pod.get("spec") or {}
        container = _q1(q, "container")
        names = [c.get("name") for c in spec.get("containers") or []]
        inits = [c.get("name") for c in spec.get("initContainers") or []]
        ephem = [c.get("name") for c in spec.get("ephemeralContainers") or []]
        if not container:
            if len(names) == 1:
                container = names[0]
            elif not names:
                raise E.bad_request(f"a container name must be specified for pod {name}")
            else:
                msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                if inits:
                    msg += f" or one of the init containers: [{' '.join(inits)}]"
                if ephem:
                    msg += f" or one of the ephemeral containers: [{' '.join(ephem)}]"
                raise E.bad_request(msg)
        elif container not in names + inits + ephem:
            raise E.bad_request(f"container {container} is not valid for pod {name}")
        opts = _LogOptions.parse(q)
        if not spec.get("nodeName"):
            self._send_bytes(200, b"", "text/plain")  # unscheduled: no location, empty log (as the apiserver)
            return
        _check_container_log_state(pod, name, container, opts.previous)
        src = self.twin.log_source
        if src is None:
            raise E.bad_request(f'no log source is registered with the twin for container "{container}" in pod '
                                f'"{name}"')
        raw = src.read(str(ns), name, container, previous=opts.previous)
        if raw is None:
            raise ApiError(404, "NotFound", f'log of container "{container}" in pod "{name}" not found',
                           {"name": name, "kind": "pods"})
        now = self.api.clock.now()
        text = opts.render(raw, now, tail=True)
        if not opts.follow or opts.previous or _container_finished(pod, container):
            if opts.limit_bytes is not None:
                text = text[:opts.limit_bytes]
            self._send_bytes(200, text, "text/plain")
            return
        self._start_stream("text/plain")
        sent = 0
        it = src.follow(str(ns), name, container, offset=len(raw))
        try:
            if opts.limit_bytes is not None:
                text = text[:opts.limit_bytes]
            self._chunk(text)
            sent += len(text)
            for chunk in it:
                if self.twin.stopping.is_set():
                    break
                if opts.limit_bytes is not None and sent >= opts.limit_bytes:
                    break
                out = opts.render(chunk, now, tail=False)
                if opts.limit_bytes is not None:
                    out = out[:opts.limit_bytes - sent]
                self._chunk(out)
                sent += len(out)
        except _ClientGone:
            pass
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._end_stream()


@dataclass(frozen=True)
class _LogOptions:
    """``PodLogOptions`` from the query (§8.8)."""

    follow: bool
    """Stream until the container ends."""
    previous: bool
    """The previous terminated instance's log."""
    timestamps: bool
    """Keep each line's RFC 3339 timestamp prefix."""
    tail_lines: int | None
    """Only the last N lines of what exists (the follow part is not cut)."""
    since_seconds: int | None
    """Only lines newer than this many seconds."""
    limit_bytes: int | None
    """Stop after this many bytes."""

    @classmethod
    def parse(cls, q: dict[str, list[str]]) -> _LogOptions:
        tail = _qint(q, "tailLines")
        since = _qint(q, "sinceSeconds")
        limit = _qint(q, "limitBytes")
        if tail is not None and tail < 0:
            raise E.bad_request("tailLines: Invalid value: must be greater than or equal to 0")
        if since is not None and since < 1:
            raise E.bad_request("sinceSeconds: Invalid value: must be greater than 0")
        if limit is not None and limit < 1:
            raise E.bad_request("limitBytes: Invalid value: must be greater than 0")
        if _q1(q, "sinceTime") and since is not None:
            raise E.bad_request("at most one of `sinceTime` or `sinceSeconds` may be specified")
        return cls(_qbool(q, "follow"), _qbool(q, "previous"), _qbool(q, "timestamps"), tail, since, limit)

    def render(self, raw: bytes, now: dt.datetime, *, tail: bool) -> bytes:
        lines = raw.splitlines(keepends=True)
        if self.since_seconds is not None:
            cutoff = now - dt.timedelta(seconds=self.since_seconds)
            lines = [ln for ln in lines if (_line_time(ln) or now) >= cutoff]
        if tail and self.tail_lines is not None:
            lines = lines[len(lines) - self.tail_lines:] if self.tail_lines else []
        if not self.timestamps:
            lines = [ln.split(b" ", 1)[1] if b" " in ln else b"" for ln in lines]
        return b"".join(lines)


def _line_time(line: bytes) -> dt.datetime | None:
    stamp = line.split(b" ", 1)[0].decode("ascii", "replace")
    try:
        s = stamp.replace("Z", "+00:00")
        if "." in s:  # Python parses at most microseconds: trim nanoseconds
            head, frac = s.split(".", 1)
            n = len(frac) - len(frac.lstrip("0123456789"))
            s = f"{head}.{frac[:min(n, 6)]}{frac[n:]}"
        return dt.datetime.fromisoformat(s)
    except ValueError:
        return None


def _container_status(pod: Obj, container: str) -> Obj | None:
    st = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in st.get(key) or []:
            if cs.get("name") == container:
                return dict(cs)
    return None


def _container_finished(pod: Obj, container: str) -> bool:
    cs = _container_status(pod, container)
    return cs is not None and bool((cs.get("state") or {}).get("terminated"))


def _check_container_log_state(pod: Obj, pod_name: str, container: str, previous: bool) -> None:
    """The kubelet's ``validateContainerLogStatus`` messages, so ``kubectl logs`` errors read as on a node."""
    cs = _container_status(pod, container)
    if cs is None:
        if ((pod.get("status") or {}).get("phase") or "Pending") == "Pending":
            raise E.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start: '
                                f"ContainerCreating")
        raise E.bad_request(f'container "{container}" in pod "{pod_name}" is not available')
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise E.bad_request(f'previous terminated container "{container}" in pod "{pod_name}" not found')
        return
    if state.get("running") or state.get("terminated") or last:
        return
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason") or ""
        detail = {"ErrImagePull": "image can't be pulled",
                  "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise E.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start: {detail}')
    raise E.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start - no logs yet')


def _scale_of(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    sel = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items()))},
    }


_SUBRESOURCES: dict[tuple[str, str], Any] = {
    ("status", "GET"): _Handler._sub_status_get,
    ("status", "PUT"): _Handler._sub_status_put,
    ("status", "PATCH"): _Handler._sub_status_patch,
    ("finalize", "PUT"): _Handler._sub_finalize,
    ("binding", "POST"): _Handler._sub_binding,
    ("eviction", "POST"): _Handler._sub_eviction,
    ("exec", "GET"): _Handler._sub_exec,
    ("exec", "POST"): _Handler._sub_exec,
    ("log", "GET"): _Handler._sub_log,
    ("scale", "GET"): _Handler._sub_scale_get,
    ("scale", "PUT"): _Handler._sub_scale_write,
    ("scale", "PATCH"): _Handler._sub_scale_write,
}
"""(subresource, method) → handler; a registry instead of an if-chain (DEVELOPING.md)."""

__all__ = ["ApiServer", "ExecSource", "KubeVersion", "LogSource", "rfc3339", "unknown_fields"]
