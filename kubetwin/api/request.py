"""Request plumbing shared by every handler of the twin's API server (:mod:`kubetwin.api.server`).

:class:`RequestHandler` is the HTTP side only: connection tracking, ``Status`` and chunked-stream responses,
body decoding (JSON, YAML, protobuf), the query options every write shares (``dryRun``, ``fieldManager``,
``fieldValidation``) and Table rendering. The verbs (:mod:`.verbs`), watch streaming (:mod:`.watch`) and
subresources (:mod:`.subresources`) build on it; routing stays in :mod:`.server`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import yaml

from kubetwin.api import errors as E
from kubetwin.api import protobuf, tables
from kubetwin.api.core import APPLY_PATCH, Api
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import BUILTIN, ResourceType

if TYPE_CHECKING:
    from kubetwin.api.server import ApiServer, _Server

log = logging.getLogger("kubetwin.api.server")

Obj = dict[str, Any]
Query = dict[str, list[str]]
"""Parsed query string (``parse_qs``): every value a list, the last one wins."""

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
BUILTIN_KEYS = frozenset(rt.key for rt in BUILTIN)


def unknown_fields(rt: ResourceType, body: Any) -> list[str]:
    """Unknown top-level and ``metadata`` fields of a write body (custom resources: metadata only).

    Patch directives (``$patch``, ``$setElementOrder/…``) are not fields. Deeper fields are not checked:
    the twin's schemas are loose (documented in docs/twin-fidelity.md).
    """
    if not isinstance(body, dict):
        return []
    out: list[str] = []
    if rt.key in BUILTIN_KEYS:
        allowed = {"apiVersion", "kind", "metadata"} | _TOP_FIELDS.get(rt.key, frozenset({"spec", "status"}))
        out += [k for k in body if k not in allowed and not k.startswith("$")]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        out += [f"metadata.{k}" for k in meta if k not in _META_FIELDS and not k.startswith("$")]
    return out


# -- request plumbing ---------------------------------------------------------------------------------


class ClientGone(Exception):
    """The client closed the connection mid-response."""


NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource",
                      {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})

# Kinds whose DELETE answers with the deleted object rather than a Status (generic store
# ``ReturnDeletedObject``; §8.2). Custom resources do too.
_RETURNS_DELETED = frozenset({"/pods", "/serviceaccounts", "/namespaces"})


def q1(q: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    v = q.get(name)
    return v[-1] if v else default


def qbool(q: dict[str, list[str]], name: str) -> bool:
    return (q1(q, name) or "").lower() in ("true", "1")


def qint(q: dict[str, list[str]], name: str) -> int | None:
    v = q1(q, name)
    if v in (None, ""):
        return None
    try:
        return int(str(v))
    except ValueError as exc:
        raise E.bad_request(f'invalid value for {name}: "{v}"') from exc


def wants_table(accept: str) -> bool:
    return any("as=Table" in p and "g=meta.k8s.io" in p for p in accept.split(","))


def _manager_from_user_agent(ua: str) -> str | None:
    """The apiserver's default field manager: the User-Agent up to its first ``/`` (max 128 chars)."""
    prefix = ua.split("/", 1)[0].strip()
    return prefix[:128] or None



class RequestHandler(BaseHTTPRequestHandler):
    """HTTP plumbing of one connection; see the module docstring."""

    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 300  # idle keep-alive connections are dropped after 5 minutes
    _warnings: list[str]
    """``Warning`` headers of the current response (set per request by the router)."""
    _streaming: bool
    """True while a chunked stream is counted in the server's open streams."""
    _query: str
    """The raw query string of the current request (proxies forward it unchanged)."""

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
            raise ClientGone from exc

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
        mode = q1(q, "fieldValidation") or "Warn"
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
        m = q1(q, "fieldManager")
        if m:
            if len(m) > 128:
                raise E.bad_request("fieldManager: Too long: may not be more than 128 bytes")
            return m
        return _manager_from_user_agent(self.headers.get("User-Agent") or "")


    def _send_obj(self, code: int, rt: ResourceType, obj: Obj, q: dict[str, list[str]], rv: str = "") -> None:
        if wants_table(self.headers.get("Accept") or "") and self._send_table(rt, [obj], q, rv):
            return
        self._send_json(code, obj)

    def _send_table(self, rt: ResourceType, items: list[Obj], q: dict[str, list[str]], rv: str) -> bool:
        table = self._table(rt, items, q, rv)
        if table is None:
            return False
        self._send_json(200, table)
        return True

    def _table(self, rt: ResourceType, items: list[Obj], q: dict[str, list[str]], rv: str) -> Obj | None:
        include = q1(q, "includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise E.bad_request(f"includeObject: Unsupported value: \"{include}\": supported values: "
                                f"\"Metadata\", \"None\", \"Object\"")
        return tables.to_table(rt.kind, items, now=self.api.clock.now(), wide=True,
                               include_object=include,  # type: ignore[arg-type]
                               resource_version=rv)

