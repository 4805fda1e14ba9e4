"""The twin's HTTPS REST front end over :class:`~kubetwin.api.core.Api` (kubernetes-dra.md §8).

Real clients — the official Python client, kubectl, helm — talk to this exactly as to a real apiserver:
loopback HTTPS with a per-twin CA, a bearer token, discovery, OpenAPI v3, Table printing, chunked watch
streams and ``pods/log``. Every semantic decision (validation, finalizers, patches…) is :class:`Api`'s; this
module only translates HTTP to calls and :class:`ApiError` to ``Status`` bodies, so in-process callers and
HTTP callers can never disagree.

This module holds the server's lifecycle and the routing; request plumbing is :mod:`.request`, the verbs
:mod:`.verbs`, watch streaming :mod:`.watch`, subresources :mod:`.subresources` (logs: :mod:`.podlogs`).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

from kubetwin.api import discovery, openapi, proxy
from kubetwin.api import errors as E
from kubetwin.api.core import Api, rfc3339
from kubetwin.api.errors import ApiError
from kubetwin.api.exec import ExecTarget
from kubetwin.api.faults import Faults
from kubetwin.api.proxy import EndpointSource
from kubetwin.api.request import NOT_FOUND, ClientGone, qbool, unknown_fields
from kubetwin.api.resources import ResourceType
from kubetwin.api.subresources import SUBRESOURCES
from kubetwin.api.tls import ServingCert, make_serving_cert
from kubetwin.api.verbs import Verbs
from kubetwin.api.watch import serve_watch
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
                 exec_source: ExecSource | None = None, endpoint_source: EndpointSource | None = None,
                 bookmark_interval: float = 10.0,
                 max_watch_seconds: float = 1800.0, faults: Faults | None = None) -> None:
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
        self.endpoint_source = endpoint_source
        """Where ``pods/proxy`` and ``services/proxy`` connect (None: every proxy answers 503)."""
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.faults = faults if faults is not None else Faults.from_env()
        """Injected failures (none unless ``KUBETWIN_FAULTS`` or ``faults.configure``); a cluster passes the switch
        its kubelets and node agents share."""
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



class _Handler(Verbs):
    """Routing: discovery, OpenAPI, version, then resource paths to verbs, watch and subresources."""

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

    # -- dispatch ------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self._warnings: list[str] = []
        self._streaming = False
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked()  # kubectl create --raw -f - streams its body
        parts = urlsplit(self.path)
        path = parts.path
        self._query = parts.query
        q = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
                self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
                return
            if not self.twin.check_token(self.headers.get("Authorization")):
                raise E.unauthorized()
            if self.twin.faults.intercept(self, method, path, q):  # the fault switch (kubetwin.api.faults)
                return
            self._route(method, path, q, body)
        except ApiError as err:
            self._send_status(err)
        except ClientGone:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # pragma: no cover - a twin bug; answer like the apiserver's panic handler
            log.exception("twin apiserver: %s %s failed", method, path)
            self._send_status(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    def _read_chunked(self) -> bytes:
        """A ``Transfer-Encoding: chunked`` request body (size lines in hex, then the trailer)."""
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

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
            raise NOT_FOUND
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
                    raise NOT_FOUND
                self._send_json(200, doc)
                return
            version, rest = segs[2], segs[3:]
        else:
            raise NOT_FOUND
        if not rest:
            rl = discovery.api_resource_list(reg, group, version)
            if rl is None:
                raise NOT_FOUND
            self._send_json(200, rl)
            return
        if group == "" and len(rest) >= 5 and rest[0] == "namespaces" and rest[2] in ("pods", "services") \
                and rest[4] == "proxy":
            raw = path.split("/")  # ['', 'api', 'v1', 'namespaces', ns, kind, name, 'proxy', ...] kept encoded
            # Decoded, then re-escaped, as Go's url.URL does: a client's %2F reaches the backend as "/".
            suffix = quote(unquote("/" + "/".join(raw[8:])), safe="/:@!$&'()*+,;=~")
            proxy.serve(self, method, rest[1], rest[2], rest[3], suffix, self._query, body)
            return
        watch_path = False
        if rest[0] == "watch":  # deprecated /watch/ prefix paths still used by some clients
            watch_path, rest = True, rest[1:]
            if not rest:
                raise NOT_FOUND
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
            raise NOT_FOUND
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
                    raise NOT_FOUND
                return rt, rest[1], (tail[0] if tail else None), (tail[1] if len(tail) > 1 else None)
        rt = reg.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise NOT_FOUND
        name = rest[1] if len(rest) > 1 else None
        if rt.namespaced and name is not None:
            raise NOT_FOUND
        return rt, None, name, (rest[2] if len(rest) > 2 else None)


    def _resource(self, method: str, group: str, version: str, rest: list[str], q: dict[str, list[str]],
                  body: bytes, watch_path: bool) -> None:
        rt, ns, name, sub = self._resolve(group, version, rest)
        if sub is not None and sub not in rt.subresources:
            raise NOT_FOUND
        watch = watch_path or qbool(q, "watch")
        if name is None:
            if method in ("GET", "HEAD"):
                if watch:
                    serve_watch(self, rt, ns, None, q)
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
                    serve_watch(self, rt, ns, name, q)
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
        handler = SUBRESOURCES.get((sub, method))
        if handler is None:
            raise E.method_not_allowed("the server does not allow this method on the requested resource")
        handler(self, rt, ns, name, q, body)


__all__ = ["ApiServer", "EndpointSource", "ExecSource", "KubeVersion", "LogSource", "rfc3339", "unknown_fields"]
