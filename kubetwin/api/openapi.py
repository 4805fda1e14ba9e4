"""OpenAPI v3 documents, just enough for kubectl and helm (kubernetes-dra.md §8.3).

kubectl and helm validate with ``fieldValidation=Strict`` only after finding, in the group-version's v3
document, a ``patch`` operation tagged with the object's ``x-kubernetes-group-version-kind`` that accepts the
``fieldValidation`` query parameter; without it they fall back to ``/openapi/v2`` and fail. So every served
kind gets such an operation, and the server enforces strict decoding itself (``server.py``).

The PATCH operations deliberately carry no ``requestBody``: kubectl then builds client-side apply patches
from its compiled-in types (strategic merge for built-ins, JSON merge for custom resources) instead of
trying to derive them from these intentionally loose schemas.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubetwin.api.discovery import groups
from kubetwin.api.resources import Registry, ResourceType

_QUERY_PARAMS = (
    ("dryRun", "When present, indicates that modifications should not be persisted."),
    ("fieldManager", "Name associated with the actor or entity that is making these changes."),
    ("fieldValidation", "Ignore, Warn or Strict: how to treat unknown or duplicate fields in the body."),
    ("force", "Force is going to \"force\" Apply requests."),
    ("pretty", "If 'true', then the output is pretty printed."),
)


def gv_paths(registry: Registry) -> list[tuple[str, str, str]]:
    """(group, version, document path) for every served group-version; ``api/v1`` first."""
    out = [("", "v1", "api/v1")]
    for g, vs in groups(registry).items():
        out.extend((g, v, f"apis/{g}/{v}") for v in vs)
    return out


def _schema_name(rt: ResourceType) -> str:
    group = rt.group or "core"
    if "." not in group or group.endswith(".k8s.io"):
        prefix = "io.k8s.api." + group.removesuffix(".k8s.io").replace(".", "")
    else:
        prefix = ".".join(reversed(group.split(".")))
    return f"{prefix}.{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType) -> list[dict[str, str]]:
    return [{"group": rt.group, "version": rt.version, "kind": rt.kind}]


def _operation_id(verb: str, rt: ResourceType) -> str:
    group = "".join(p.capitalize() for p in (rt.group or "core").removesuffix(".k8s.io").split("."))
    scope = "Namespaced" if rt.namespaced else ""
    return f"{verb}{group}{rt.version.capitalize()}{scope}{rt.kind}"


def gv_document(registry: Registry, group: str, version: str, *, kube_version: str) -> dict[str, Any] | None:
    """The per-group-version document; None if the group-version is not served."""
    rts = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not rts:
        return None
    prefix = f"/apis/{group}/{version}" if group else "/api/v1"
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in rts:
        schema_ref = _schema_name(rt)
        schemas[schema_ref] = {
            "type": "object",
            "description": f"{rt.kind} (schema intentionally loose in the twin; the server validates).",
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": _gvk(rt),
        }
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        if rt.namespaced:
            params.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
        query = [{"name": n, "in": "query", "description": d, "schema": {"type": "string"}, "uniqueItems": True}
                 for n, d in _QUERY_PARAMS]
        ok = {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}}
        for sub in ("", "/status"):
            if sub and "status" not in rt.subresources:
                continue
            paths[f"{prefix}{ns}/{rt.plural}/{{name}}{sub}"] = {
                "parameters": params,
                "patch": {
                    "description": f"partially update the specified {rt.kind}{' status' if sub else ''}",
                    "operationId": _operation_id("patch", rt) + ("Status" if sub else ""),
                    "parameters": query,
                    "responses": {**ok, "201": {**ok["200"], "description": "Created"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": _gvk(rt)[0],
                },
            }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": kube_version},
            "paths": paths, "components": {"schemas": schemas}}


def doc_hash(doc: dict[str, Any]) -> str:
    """Content hash used in ``serverRelativeURL`` so clients' caches notice changes (e.g. a new CRD)."""
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def root(registry: Registry, *, kube_version: str) -> dict[str, Any]:
    """``GET /openapi/v3``: every group-version's document URL with its content hash."""
    paths: dict[str, Any] = {}
    for g, v, p in gv_paths(registry):
        doc = gv_document(registry, g, v, kube_version=kube_version)
        if doc is not None:
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={doc_hash(doc)}"}
    return {"paths": paths}
