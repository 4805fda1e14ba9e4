"""Per-kind patch metadata: which list fields merge by key, merge as sets, or are atomic.

Built from the patch tags of the real Go types (``patchStrategy``/``patchMergeKey`` for strategic merge patch,
``listType``/``listMapKey`` for server-side apply); unknown kinds (custom resources) get ``None``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ListStrategy:
    """How one list field merges under SMP and SSA (the Go struct tags of the real type)."""

    strategy: Literal["merge", "set", "replace"]
    """``merge``: list of objects keyed by :attr:`keys`; ``set``: list of primitives merged as a set;
    ``replace``: atomic, replaced wholesale."""
    keys: tuple[str, ...] = ()
    """Map keys for SSA (``listMapKey``); the first is the SMP ``patchMergeKey``."""
    smp: bool = True
    """False when the Go type has ``listType=map`` for SSA but no ``patchStrategy`` (SMP then replaces)."""
    key_defaults: Mapping[str, Any] = field(default_factory=dict)
    """Values of key fields the apiserver defaults (``protocol: TCP``), used when an item omits them."""


REPLACE = ListStrategy("replace")


@dataclass(frozen=True)
class PatchSchema:
    """Per-kind patch metadata, keyed by dotted field path with list items left out.

    ``spec.template.spec.containers.env`` names the ``env`` list of every container of a pod template.
    """

    lists: Mapping[str, ListStrategy] = field(default_factory=dict)
    """List fields that are not atomic."""
    retain_keys: frozenset[str] = frozenset()
    """Struct paths with ``patchStrategy: retainKeys`` (union types such as a volume's source)."""

    def list_at(self, path: tuple[str, ...]) -> ListStrategy:
        """Strategy of the list at ``path``; lists without metadata are atomic."""
        return self.lists.get(".".join(path), REPLACE)


_TCP = {"protocol": "TCP"}
KEY_DEFAULTS: dict[str, Any] = dict(_TCP)
"""Defaulted list-map key fields of every served kind (looking an item up by a fieldsV1 key needs them)."""

_META_LISTS: dict[str, ListStrategy] = {
    "finalizers": ListStrategy("set"),
    "ownerReferences": ListStrategy("merge", ("uid",)),
}

_CONTAINER_LISTS: dict[str, ListStrategy] = {
    "ports": ListStrategy("merge", ("containerPort", "protocol"), key_defaults=_TCP),
    "env": ListStrategy("merge", ("name",)),
    "volumeMounts": ListStrategy("merge", ("mountPath",)),
    "volumeDevices": ListStrategy("merge", ("devicePath",)),
    "resources.claims": ListStrategy("merge", ("name",), smp=False),
    "resizePolicy": ListStrategy("replace"),
}

_POD_SPEC_LISTS: dict[str, ListStrategy] = {
    "containers": ListStrategy("merge", ("name",)),
    "initContainers": ListStrategy("merge", ("name",)),
    "ephemeralContainers": ListStrategy("merge", ("name",)),
    "volumes": ListStrategy("merge", ("name",)),
    "imagePullSecrets": ListStrategy("merge", ("name",)),
    "hostAliases": ListStrategy("merge", ("ip",)),
    "resourceClaims": ListStrategy("merge", ("name",)),
    "schedulingGates": ListStrategy("merge", ("name",)),
    "topologySpreadConstraints": ListStrategy("merge", ("topologyKey", "whenUnsatisfiable")),
}

_POD_STATUS_LISTS: dict[str, ListStrategy] = {
    # ContainerStatuses are listType=atomic without patchStrategy in core/v1: SMP replaces them.
    "conditions": ListStrategy("merge", ("type",)),
    "podIPs": ListStrategy("merge", ("ip",)),
    "hostIPs": ListStrategy("merge", ("ip",)),
    "resourceClaimStatuses": ListStrategy("merge", ("name",)),
}


def _meta(prefix: str) -> dict[str, ListStrategy]:
    return {f"{prefix}metadata.{k}": v for k, v in _META_LISTS.items()}


def _pod_spec(prefix: str) -> tuple[dict[str, ListStrategy], set[str]]:
    lists = {f"{prefix}{k}": v for k, v in _POD_SPEC_LISTS.items()}
    for c in ("containers", "initContainers", "ephemeralContainers"):
        lists.update({f"{prefix}{c}.{k}": v for k, v in _CONTAINER_LISTS.items()})
    return lists, {f"{prefix}volumes", f"{prefix}resourceClaims"}


def _template_schema(template: str, status: Mapping[str, ListStrategy] | None = None,
                     retain: Iterable[str] = ()) -> PatchSchema:
    lists = _meta("")
    lists.update(_meta(f"{template}."))
    pod_lists, pod_retain = _pod_spec(f"{template}.spec.")
    lists.update(pod_lists)
    lists.update({f"status.{k}": v for k, v in (status or {}).items()})
    return PatchSchema(lists, frozenset(pod_retain | set(retain)))


def _simple(lists: Mapping[str, ListStrategy] | None = None) -> PatchSchema:
    out = _meta("")
    out.update(lists or {})
    return PatchSchema(out)


def _build_schemas() -> dict[tuple[str, str], PatchSchema]:
    cond = {"conditions": ListStrategy("merge", ("type",))}
    pod_lists, pod_retain = _pod_spec("spec.")
    pod = PatchSchema({**_meta(""), **pod_lists, **{f"status.{k}": v for k, v in _POD_STATUS_LISTS.items()}},
                      frozenset(pod_retain))
    schemas: dict[tuple[str, str], PatchSchema] = {
        ("v1", "Pod"): pod,
        ("v1", "PodTemplate"): _template_schema("template"),
        ("v1", "ReplicationController"): _template_schema("spec.template", cond),
        ("apps/v1", "Deployment"): _template_schema("spec.template", cond, retain=("spec.strategy",)),
        ("apps/v1", "ReplicaSet"): _template_schema("spec.template", cond),
        ("apps/v1", "DaemonSet"): _template_schema("spec.template", cond),
        ("apps/v1", "StatefulSet"): _template_schema("spec.template", cond),
        ("batch/v1", "Job"): _template_schema("spec.template", cond),
        ("batch/v1", "CronJob"): PatchSchema(
            {**_meta(""), **_meta("spec.jobTemplate."), **_meta("spec.jobTemplate.spec.template."),
             **_pod_spec("spec.jobTemplate.spec.template.spec.")[0]},
            frozenset(_pod_spec("spec.jobTemplate.spec.template.spec.")[1])),
        ("v1", "Node"): _simple({
            "status.conditions": ListStrategy("merge", ("type",)),
            "status.addresses": ListStrategy("merge", ("type",)),
            "spec.podCIDRs": ListStrategy("set"),
        }),
        ("v1", "Namespace"): _simple({"status.conditions": ListStrategy("merge", ("type",))}),
        ("v1", "Service"): _simple({
            "spec.ports": ListStrategy("merge", ("port", "protocol"), key_defaults=_TCP),
            "status.conditions": ListStrategy("merge", ("type",)),
        }),
        ("v1", "ServiceAccount"): _simple({"secrets": ListStrategy("merge", ("name",)),
                                           "imagePullSecrets": ListStrategy("replace")}),
        ("resource.k8s.io/v1", "ResourceClaim"): _simple({
            "status.reservedFor": ListStrategy("merge", ("uid",)),
            "status.devices": ListStrategy("merge", ("driver", "device", "pool", "shareID"), smp=False),
        }),
        ("resource.k8s.io/v1", "DeviceTaintRule"): _simple({
            "status.conditions": ListStrategy("merge", ("type",)),
        }),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): _simple({
            "status.conditions": ListStrategy("merge", ("type",)),
        }),
    }
    for kind in ("ConfigMap", "Secret", "Event", "Endpoints", "LimitRange", "ResourceQuota",
                 "PersistentVolumeClaim", "PersistentVolume"):
        schemas[("v1", kind)] = _simple()
    for kind in ("ResourceClaimTemplate", "DeviceClass", "ResourceSlice"):
        schemas[("resource.k8s.io/v1", kind)] = _simple()
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        schemas[("rbac.authorization.k8s.io/v1", kind)] = _simple()
    schemas[("coordination.k8s.io/v1", "Lease")] = _simple()
    schemas[("events.k8s.io/v1", "Event")] = _simple()
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        schemas[("admissionregistration.k8s.io/v1", kind)] = _simple({"webhooks": ListStrategy("merge", ("name",))})
    schemas[("policy/v1", "PodDisruptionBudget")] = _simple({"status.conditions": ListStrategy("merge", ("type",))})
    return schemas


_SCHEMAS = _build_schemas()


def schema_for(api_version: str, kind: str) -> PatchSchema | None:
    """Patch metadata of a built-in kind; ``None`` for kinds the apiserver treats as unstructured (CRs)."""
    return _SCHEMAS.get((api_version, kind))


