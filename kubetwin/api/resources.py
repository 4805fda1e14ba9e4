"""The kinds the twin serves (kubernetes-dra.md §1, §8.1, §8.5).

One :class:`ResourceType` per served resource; discovery, OpenAPI, REST routing, field selectors and the
store all read this registry, so adding a kind (a CRD, say) is one :meth:`Registry.register` call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FieldGetter = Callable[[dict[str, Any]], str]


def _path(*keys: str) -> FieldGetter:
    def get(obj: dict[str, Any]) -> str:
        cur: Any = obj
        for k in keys:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(k)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


def _pod_ip(obj: dict[str, Any]) -> str:
    ips = (obj.get("status") or {}).get("podIPs") or []
    if ips:
        return str(ips[0].get("ip", ""))
    return str((obj.get("status") or {}).get("podIP", "") or "")


def _event_source(obj: dict[str, Any]) -> str:
    return str((obj.get("source") or {}).get("component", "") or obj.get("reportingComponent", "") or "")


@dataclass(frozen=True)
class ResourceType:
    """A served resource: enough to route, discover, validate and print it."""

    group: str
    """API group; ``""`` for the core group."""
    version: str
    """Served version, e.g. ``v1``."""
    kind: str
    """Object kind, e.g. ``ResourceClaim``."""
    plural: str
    """Resource name in URLs, e.g. ``resourceclaims``."""
    singular: str
    """Singular resource name (``kubectl get resourceclaim``)."""
    namespaced: bool
    """Whether objects live in a namespace."""
    subresources: frozenset[str] = frozenset()
    """Served subresources: ``status``, ``log``, ``binding``, ``eviction``, ``scale``, ``exec``…"""
    short_names: tuple[str, ...] = ()
    """kubectl short names (``po``, ``ns``…)."""
    categories: tuple[str, ...] = ()
    """Categories such as ``all``."""
    field_selectors: Mapping[str, FieldGetter] = field(default_factory=dict)
    """Extra fieldSelector fields beyond ``metadata.name``/``metadata.namespace``."""
    tracks_generation: bool = False
    """Whether ``metadata.generation`` increments on spec changes."""
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    """Verbs announced in discovery."""
    status_resets_spec: bool = True
    """Whether writes to the main resource ignore ``status`` (true for kinds with a status subresource)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def field_value(self, obj: dict[str, Any], name: str) -> str | None:
        """The value a field selector compares, or None if the field is not selectable."""
        if name == "metadata.name":
            return str(obj.get("metadata", {}).get("name", ""))
        if name == "metadata.namespace" and self.namespaced:
            return str(obj.get("metadata", {}).get("namespace", ""))
        getter = self.field_selectors.get(name)
        return getter(obj) if getter else None


def _rt(group: str, version: str, kind: str, plural: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType(group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
                        namespaced=namespaced, **kw)


_STATUS = frozenset({"status"})

BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "v1", "Namespace", "namespaces", False, subresources=frozenset({"status", "finalize"}),
        short_names=("ns",), field_selectors={"status.phase": _path("status", "phase")}),
    _rt("", "v1", "Node", "nodes", False, subresources=_STATUS, short_names=("no",),
        field_selectors={"spec.unschedulable": _path("spec", "unschedulable")}),
    _rt("", "v1", "Pod", "pods", True,
        subresources=frozenset({"status", "log", "binding", "eviction", "exec", "ephemeralcontainers", "proxy"}),
        short_names=("po",), categories=("all",),
        field_selectors={
            "spec.nodeName": _path("spec", "nodeName"),
            "spec.restartPolicy": _path("spec", "restartPolicy"),
            "spec.schedulerName": _path("spec", "schedulerName"),
            "spec.serviceAccountName": _path("spec", "serviceAccountName"),
            "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
            "status.phase": _path("status", "phase"),
            "status.podIP": _pod_ip,
            "status.nominatedNodeName": _path("status", "nominatedNodeName"),
        }),
    _rt("", "v1", "Event", "events", True, short_names=("ev",), status_resets_spec=False,
        field_selectors={
            "involvedObject.kind": _path("involvedObject", "kind"),
            "involvedObject.namespace": _path("involvedObject", "namespace"),
            "involvedObject.name": _path("involvedObject", "name"),
            "involvedObject.uid": _path("involvedObject", "uid"),
            "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
            "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
            "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
            "reason": _path("reason"),
            "reportingComponent": _path("reportingComponent"),
            "source": _event_source,
            "type": _path("type"),
        }),
    _rt("", "v1", "ConfigMap", "configmaps", True, short_names=("cm",), status_resets_spec=False),
    _rt("", "v1", "Secret", "secrets", True, status_resets_spec=False,
        field_selectors={"type": _path("type")}),
    _rt("", "v1", "Service", "services", True, subresources=frozenset({"status", "proxy"}), short_names=("svc",),
        categories=("all",)),
    _rt("", "v1", "Endpoints", "endpoints", True, short_names=("ep",), status_resets_spec=False),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", True, short_names=("sa",), status_resets_spec=False),
    _rt("apps", "v1", "Deployment", "deployments", True, subresources=frozenset({"status", "scale"}),
        short_names=("deploy",), categories=("all",), tracks_generation=True),
    _rt("apps", "v1", "ReplicaSet", "replicasets", True, subresources=frozenset({"status", "scale"}),
        short_names=("rs",), categories=("all",), tracks_generation=True),
    _rt("apps", "v1", "DaemonSet", "daemonsets", True, subresources=_STATUS, short_names=("ds",),
        categories=("all",), tracks_generation=True),
    _rt("apps", "v1", "ControllerRevision", "controllerrevisions", True, status_resets_spec=False),
    _rt("batch", "v1", "Job", "jobs", True, subresources=_STATUS, categories=("all",), tracks_generation=True),
    _rt("coordination.k8s.io", "v1", "Lease", "leases", True, status_resets_spec=False),
    _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, short_names=("netpol",),
        status_resets_spec=False, tracks_generation=True),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles", True, status_resets_spec=False),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, status_resets_spec=False),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, status_resets_spec=False),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False,
        status_resets_spec=False),
    _rt("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
        subresources=_STATUS, short_names=("crd", "crds"), tracks_generation=True),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations", False, tracks_generation=True, status_resets_spec=False),
    _rt("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations", False, tracks_generation=True, status_resets_spec=False),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", False,
        subresources=_STATUS, tracks_generation=True),
    _rt("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings", False, tracks_generation=True, status_resets_spec=False),
    _rt("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, short_names=("pc",),
        status_resets_spec=False),
    _rt("resource.k8s.io", "v1", "DeviceClass", "deviceclasses", False, tracks_generation=True,
        status_resets_spec=False),
    _rt("resource.k8s.io", "v1", "ResourceClaim", "resourceclaims", True, subresources=_STATUS),
    _rt("resource.k8s.io", "v1", "ResourceClaimTemplate", "resourceclaimtemplates", True,
        status_resets_spec=False),
    _rt("resource.k8s.io", "v1", "ResourceSlice", "resourceslices", False, tracks_generation=True,
        status_resets_spec=False,
        field_selectors={"spec.nodeName": _path("spec", "nodeName"), "spec.driver": _path("spec", "driver")}),
    _rt("resource.k8s.io", "v1", "DeviceTaintRule", "devicetaintrules", False, subresources=_STATUS,
        tracks_generation=True),
)


class Registry:
    """Thread-safe lookup of served kinds; CRDs register into it at runtime."""

    def __init__(self, types: tuple[ResourceType, ...] = BUILTIN) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        for rt in types:
            self.register(rt)

    def register(self, rt: ResourceType) -> None:
        with self._lock:
            self._by_path[(rt.group, rt.version, rt.plural)] = rt
            self._by_kind[(rt.api_version, rt.kind)] = rt

    def unregister(self, rt: ResourceType) -> None:
        with self._lock:
            self._by_path.pop((rt.group, rt.version, rt.plural), None)
            self._by_kind.pop((rt.api_version, rt.kind), None)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        with self._lock:
            return self._by_kind.get((api_version, kind))

    def by_plural(self, group: str, plural: str) -> ResourceType | None:
        """Any served version of ``group/plural`` (the twin serves one version per group)."""
        with self._lock:
            for (g, _v, p), rt in self._by_path.items():
                if g == group and p == plural:
                    return rt
        return None

    def all(self) -> list[ResourceType]:
        with self._lock:
            return sorted(self._by_path.values(), key=lambda r: (r.group, r.version, r.plural))


def default_registry() -> Registry:
    return Registry(BUILTIN)


def core(plural: str) -> ResourceType:
    """Shortcut for in-process callers: the built-in kind with this plural (any group)."""
    for rt in BUILTIN:
        if rt.plural == plural:
            return rt
    raise KeyError(plural)
