"""Discovery documents built from the :class:`Registry` (kubernetes-dra.md §8.1).

Legacy discovery (``/api``, ``/api/v1``, ``/apis``, ``/apis/<g>``, ``/apis/<g>/<v>``) is what the Python
dynamic client and client-go's fallback path read; aggregated discovery v2 (one document for all groups) is
what kubectl ≥ 1.30 and helm ask for first. Both are derived from the registry on every request so a CRD
registered a moment ago is visible at once, as on a real server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubetwin.api.resources import Registry, ResourceType

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
"""Content type of an aggregated discovery reply (§8.1); v2beta1 is no longer served (since 1.33)."""


@dataclass(frozen=True)
class SubresourceInfo:
    """How a subresource is announced: its response kind (possibly in another group) and verbs."""

    kind: str
    """Response kind; empty means the parent's kind; ``{kind}`` stands for the parent's kind (``PodProxyOptions``)."""
    verbs: tuple[str, ...]
    """Verbs in discovery."""
    group: str | None = None
    """Group of the response kind when it differs from the parent's (``autoscaling`` for scale)."""
    version: str | None = None
    """Version of the response kind when the group differs."""


SUBRESOURCES: dict[str, SubresourceInfo] = {
    "status": SubresourceInfo("", ("get", "patch", "update")),
    "scale": SubresourceInfo("Scale", ("get", "patch", "update"), "autoscaling", "v1"),
    "log": SubresourceInfo("Pod", ("get",)),
    "binding": SubresourceInfo("Binding", ("create",)),
    "eviction": SubresourceInfo("Eviction", ("create",), "policy", "v1"),
    "exec": SubresourceInfo("PodExecOptions", ("create", "get")),
    "ephemeralcontainers": SubresourceInfo("", ("get", "patch", "update")),
    "finalize": SubresourceInfo("", ("update",)),
    "proxy": SubresourceInfo("{kind}ProxyOptions", ("create", "delete", "get", "patch", "update")),
}
"""Announced shape per subresource name, as ``kubectl api-resources`` and client-go see it on a real server."""


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting the preferred version first: GA > beta > alpha, higher numbers first (kube-aware)."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


def groups(registry: Registry) -> dict[str, list[str]]:
    """Served non-core groups → versions, preferred version first."""
    out: dict[str, set[str]] = {}
    for rt in registry.all():
        if rt.group:
            out.setdefault(rt.group, set()).add(rt.version)
    return {g: sorted(vs, key=version_priority) for g, vs in sorted(out.items())}


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": _gv(group, v), "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    """``GET /apis`` (legacy)."""
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, vs) for g, vs in groups(registry).items()]}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``; None if the group is not served."""
    vs = groups(registry).get(group)
    if not vs:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, vs)}


def _in_gv(registry: Registry, group: str, version: str) -> list[ResourceType]:
    return [rt for rt in registry.all() if rt.group == group and rt.version == version]


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``; None if not served."""
    rts = _in_gv(registry, group, version)
    if not rts:
        return None
    resources: list[dict[str, Any]] = []
    for rt in rts:
        entry: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                                 "kind": rt.kind, "verbs": sorted(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in sorted(rt.subresources):
            info = SUBRESOURCES.get(sub, SubresourceInfo("", ("get",)))
            s: dict[str, Any] = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                                 "kind": info.kind.format(kind=rt.kind) or rt.kind, "verbs": list(info.verbs)}
            if info.group is not None:
                s["group"] = info.group
                s["version"] = info.version
            resources.append(s)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": _gv(group, version),
            "resources": resources}


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": sorted(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in sorted(rt.subresources):
        info = SUBRESOURCES.get(sub, SubresourceInfo("", ("get",)))
        subs.append({"subresource": sub,
                     "responseKind": {"group": rt.group if info.group is None else info.group,
                                      "version": rt.version if info.version is None else info.version,
                                      "kind": info.kind.format(kind=rt.kind) or rt.kind},
                     "verbs": list(info.verbs)})
    if subs:
        entry["subresources"] = subs
    return entry


def _aggregated_versions(registry: Registry, group: str, versions: Iterable[str]) -> list[dict[str, Any]]:
    return [{"version": v, "freshness": "Current",
             "resources": [_aggregated_resource(rt) for rt in _in_gv(registry, group, v)]} for v in versions]


def aggregated(registry: Registry, *, core: bool) -> dict[str, Any]:
    """Aggregated discovery v2: ``/api`` (core, one unnamed item) or ``/apis`` (every group)."""
    if core:
        items = [{"metadata": {"creationTimestamp": None}, "versions": _aggregated_versions(registry, "", ["v1"])}]
    else:
        items = [{"metadata": {"name": g, "creationTimestamp": None},
                  "versions": _aggregated_versions(registry, g, vs)} for g, vs in groups(registry).items()]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def wants_aggregated(accept: str) -> bool:
    """Whether an ``Accept`` header asks for aggregated discovery v2 (v2beta1-only requests get legacy)."""
    for part in accept.split(","):
        params = {p.strip().split("=", 1)[0]: p.strip().split("=", 1)[1]
                  for p in part.split(";")[1:] if "=" in p}
        if (params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2"
                and params.get("as") == "APIGroupDiscoveryList"):
            return True
    return False
