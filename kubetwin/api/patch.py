"""Patch algorithms of the apiserver: JSON patch, JSON merge patch, strategic merge patch, server-side apply.

The twin must accept what kubectl and helm send (kubernetes-dra.md §8.7, §8.8): ``kubectl apply`` computes a
strategic merge patch with ``$setElementOrder``/``$retainKeys`` directives, helm 3 a three-way SMP, helm 4 and
``kubectl apply --server-side`` send ``application/apply-patch+yaml`` and expect ``metadata.managedFields`` to
record ownership so that a later apply that drops a field removes it. All functions are pure: they take JSON
dicts and return new ones (inputs are never mutated), so the :class:`~kubetwin.api.core.Api` can call them
inside its store transaction and discard the result on failure.

List semantics come from :class:`PatchSchema`, built per kind by :func:`schema_for` from the patch metadata of
the real Go types (``patchStrategy``/``patchMergeKey`` for SMP, ``listType``/``listMapKey`` for SSA). Unknown
kinds (custom resources) get ``None``: the apiserver answers SMP on them with 415 and the caller uses merge
patch semantics; for SSA every list of an unknown kind is atomic.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = Any
"""A JSON value as decoded by :mod:`json`."""

_MISSING: Any = object()


class PatchError(Exception):
    """A patch that cannot be decoded (``code`` 400) or applied (``code`` 422).

    The caller turns it into a ``Status`` with that code; the message follows the apiserver's wording.
    """

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'JSON pointer "{path}" must start with "/"', 400)
    return [_unescape(t) for t in path[1:].split("/")]


def _list_index(tokens: list[str], token: str, size: int, *, allow_end: bool, op: str, path: str) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{op} operation does not apply: doc is missing path: \"{path}\": invalid index "
                         f"{token!r}")
    idx = int(token)
    limit = size if allow_end else size - 1
    if idx > limit:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": '
                         f"index out of range: {idx}")
    return idx


def _parent(doc: JSON, tokens: list[str], op: str, path: str) -> JSON:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    if not isinstance(cur, dict | list):
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return cur


def _get(doc: JSON, path: str, op: str) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
        return parent[last]
    return parent[_list_index(tokens, last, len(parent), allow_end=False, op=op, path=path)]


def _add(doc: JSON, path: str, value: JSON, op: str = "add") -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_list_index(tokens, last, len(parent), allow_end=True, op=op, path=path), value)
    return doc


def _remove(doc: JSON, path: str, op: str = "remove") -> JSON:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
        del parent[last]
    else:
        del parent[_list_index(tokens, last, len(parent), allow_end=False, op=op, path=path)]
    return doc


def json_patch(obj: JSON, ops: JSON) -> JSON:
    """Apply an RFC 6902 patch (``application/json-patch+json``) and return the new document.

    A body that is not a list of operations is a decode error (400); an operation that does not apply
    (missing path, failed ``test``) is 422, as in the apiserver's ``applyJSPatch``.
    """
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400)
    doc = copy.deepcopy(obj)
    for raw in ops:
        if not isinstance(raw, dict) or "op" not in raw:
            raise PatchError("unexpected kind: missing op", 400)
        op = raw["op"]
        if op not in ("add", "remove", "replace", "move", "copy", "test"):
            raise PatchError(f"Unexpected kind: {op}", 400)
        path = raw.get("path")
        if not isinstance(path, str):
            raise PatchError(f"{op} operation does not apply: missing path", 400)
        if op in ("add", "replace", "test") and "value" not in raw:
            raise PatchError(f"{op} operation does not apply: missing value", 400)
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(raw["value"]))
        elif op == "remove":
            doc = _remove(doc, path)
        elif op == "replace":
            _get(doc, path, "replace")
            tokens = _pointer(path)
            if not tokens:
                doc = copy.deepcopy(raw["value"])
            else:
                parent = _parent(doc, tokens, "replace", path)
                if isinstance(parent, dict):
                    parent[tokens[-1]] = copy.deepcopy(raw["value"])
                else:
                    parent[int(tokens[-1])] = copy.deepcopy(raw["value"])
        elif op == "test":
            try:
                current = _get(doc, path, "test")
            except PatchError:
                current = _MISSING
            if current is _MISSING or not _json_equal(current, raw["value"]):
                raise PatchError(f"testing value {path} failed: test failed")
        else:  # move / copy
            src = raw.get("from")
            if not isinstance(src, str):
                raise PatchError(f"{op} operation does not apply: missing from path", 400)
            value = copy.deepcopy(_get(doc, src, op))
            if op == "move":
                if path.startswith(src + "/"):
                    raise PatchError(f'move operation does not apply: cannot move "{src}" into its own '
                                     f'child "{path}"')
                doc = _remove(doc, src, op)
            doc = _add(doc, path, value, op)
    return doc


def _json_equal(a: JSON, b: JSON) -> bool:
    """JSON equality: ``1 == 1.0`` but ``True != 1`` (bools are not numbers in JSON)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float))) and a == b


# ---------------------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


def merge_patch(obj: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out: dict[str, Any] = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ---------------------------------------------------------------------------------------------------------
# Patch schema


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
_KEY_DEFAULTS: dict[str, Any] = dict(_TCP)
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


# ---------------------------------------------------------------------------------------------------------
# Strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIM = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


def strategic_merge_patch(obj: JSON, patch: JSON, schema: PatchSchema | None) -> JSON:
    """Apply a strategic merge patch as ``k8s.io/apimachinery/pkg/util/strategicpatch`` does.

    Maps merge recursively, ``null`` deletes a key; lists merge per :class:`PatchSchema` (by merge key, as a
    set of primitives, or replaced); the directives ``$patch: replace|delete|merge``, ``$retainKeys``,
    ``$deleteFromPrimitiveList/<f>`` and ``$setElementOrder/<f>`` are honoured and never stored.
    Without a schema (custom resources) it degrades to a merge patch with directives stripped.
    """
    if not isinstance(patch, dict):
        raise PatchError("json: cannot unmarshal array into Go value of type map[string]interface {}", 400)
    base = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    result = _smp_map(base, patch, (), schema or PatchSchema())
    return {} if result is _MISSING else result


def _smp_map(original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...],
             schema: PatchSchema) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _MISSING
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != _DIRECTIVE}, path, schema)
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive} in map: {json.dumps(patch)}", 400)
    out = original
    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(f"invalid patch: $retainKeys must be a list, got {retain!r}", 400)
        for key in list(out):
            if key not in retain:
                del out[key]
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER):
            if not isinstance(value, list):
                raise PatchError(f"invalid patch: {key} must be a list", 400)
            orders[key[len(_ORDER):]] = value
            continue
        if key.startswith(_DELETE_PRIM):
            name = key[len(_DELETE_PRIM):]
            if not isinstance(value, list):
                raise PatchError(f"invalid patch: {key} must be a list", 400)
            if isinstance(out.get(name), list):
                out[name] = [x for x in out[name] if not any(_json_equal(x, d) for d in value)]
            continue
        child = (*path, key)
        if value is None:
            out.pop(key, None)
            continue
        current = out.get(key, _MISSING)
        if isinstance(value, dict):
            merged = _smp_map(current if isinstance(current, dict) else {}, value, child, schema)
        elif isinstance(value, list):
            merged = _smp_list(current if isinstance(current, list) else [], value, child, schema)
        else:
            merged = value
        if merged is _MISSING:
            out.pop(key, None)
        else:
            out[key] = merged
    for name, order in orders.items():
        if isinstance(out.get(name), list):
            out[name] = _apply_order(out[name], order, schema.list_at((*path, name)))
    return out


def _strip(value: Any, path: tuple[str, ...], schema: PatchSchema) -> Any:
    """A patch value with directives removed (what the apiserver stores for a replaced subtree)."""
    if isinstance(value, dict):
        res = _smp_map({}, value, path, schema)
        return {} if res is _MISSING else res
    if isinstance(value, list):
        return _smp_list([], value, path, schema)
    return value


def _item_key(item: Any, strat: ListStrategy, *, smp: bool) -> Any:
    if not isinstance(item, dict):
        return _MISSING
    keys = strat.keys[:1] if smp else strat.keys
    out = {}
    for k in keys:
        if k in item:
            out[k] = item[k]
        elif k in strat.key_defaults:
            out[k] = strat.key_defaults[k]
    if smp and not out:
        return _MISSING
    return json.dumps(out, sort_keys=True)


def _smp_list(original: list[Any], patch: list[Any], path: tuple[str, ...], schema: PatchSchema) -> list[Any]:
    strat = schema.list_at(path)
    if not strat.smp and strat.strategy == "merge":
        strat = REPLACE
    # A `$patch: replace` element replaces the whole list whatever the strategy.
    if any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" for p in patch):
        return [_strip(p, path, schema) for p in patch
                if not (isinstance(p, dict) and p.get(_DIRECTIVE) == "replace")]
    if strat.strategy == "replace":
        return [_strip(p, path, schema) for p in patch]
    if strat.strategy == "set":
        out = list(original)
        for p in patch:
            if not any(_json_equal(p, o) for o in out):
                out.append(p)
        return out
    out = list(original)
    for p in patch:
        key = _item_key(p, strat, smp=True)
        if key is _MISSING:
            raise PatchError(f"map: {json.dumps(p)} does not contain declared merge key: {strat.keys[0]}", 400)
        idx = next((i for i, o in enumerate(out) if _item_key(o, strat, smp=True) == key), None)
        if p.get(_DIRECTIVE) == "delete":
            out = [o for o in out if _item_key(o, strat, smp=True) != key]
            continue
        if idx is None:
            out.append(_strip(p, path, schema))
        else:
            merged = _smp_map(out[idx] if isinstance(out[idx], dict) else {}, p, path, schema)
            if merged is _MISSING:
                del out[idx]
            else:
                out[idx] = merged
    return out


def _apply_order(items: list[Any], order: list[Any], strat: ListStrategy) -> list[Any]:
    """Reorder after ``$setElementOrder``: listed items in the given order, others keep their relative slot."""
    if strat.strategy == "merge":
        wanted = [_item_key(o, strat, smp=True) for o in order]
        keys = [_item_key(i, strat, smp=True) for i in items]
    else:
        wanted = [json.dumps(o, sort_keys=True) for o in order]
        keys = [json.dumps(i, sort_keys=True) for i in items]
    rank = {k: n for n, k in enumerate(wanted)}
    listed = sorted((i for i, k in enumerate(keys) if k in rank), key=lambda i: rank[keys[i]])
    slots = iter(listed)
    return [items[next(slots)] if keys[i] in rank else items[i] for i in range(len(items))]


# ---------------------------------------------------------------------------------------------------------
# Field sets (managedFields, fieldsV1)

Path = tuple[str, ...]
"""A field path in fieldsV1 element syntax: ``("f:spec", "f:containers", 'k:{"name":"app"}', "f:image")``."""

_MAP_FIELDS = frozenset({"labels", "annotations", "nodeSelector", "matchLabels", "data", "binaryData",
                         "stringData", "limits", "requests", "capacity", "allocatable", "attributes"})
"""Map-typed (not struct) fields: an Update entry owns the map itself (``"."``) besides its keys."""

_IGNORED_META = ("managedFields", "name", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                 "generateName")


def _schema_path(path: Path) -> tuple[str, ...]:
    return tuple(p[2:] for p in path if p.startswith("f:"))


def _key_element(item: Any, strat: ListStrategy) -> str | None:
    if not isinstance(item, dict):
        return None
    out: dict[str, Any] = {}
    for k in strat.keys:
        if k in item:
            out[k] = item[k]
        elif k in strat.key_defaults:
            out[k] = strat.key_defaults[k]
    if not out:
        return None
    return "k:" + json.dumps(out, sort_keys=True, separators=(",", ":"))


def _value_element(value: Any) -> str:
    return "v:" + json.dumps(value, sort_keys=True, separators=(",", ":"))


def _fields(value: Any, path: Path, schema: PatchSchema, out: set[Path], *, containers: bool) -> None:
    """Add the owned paths of ``value`` at ``path``: leaves, list items and set values.

    ``containers`` also records map paths themselves (what an Update entry's ``.`` marks)."""
    if isinstance(value, dict):
        if not value:
            out.add(path)
            return
        if containers and path and path[-1][2:] in _MAP_FIELDS:
            out.add(path)
        for k, v in value.items():
            _fields(v, (*path, f"f:{k}"), schema, out, containers=containers)
        return
    if isinstance(value, list):
        strat = schema.list_at(_schema_path(path))
        if strat.strategy == "set" and value:
            out.update((*path, _value_element(v)) for v in value)
            return
        if strat.strategy == "merge" and value:
            elems = [_key_element(v, strat) for v in value]
            if all(e is not None for e in elems):
                for e, v in zip(elems, value, strict=True):
                    item_path = (*path, str(e))
                    out.add(item_path)
                    for k, sub in v.items():
                        _fields(sub, (*item_path, f"f:{k}"), schema, out, containers=containers)
                return
        out.add(path)
        return
    out.add(path)


def field_set(obj: dict[str, Any], schema: PatchSchema | None, *, containers: bool = False) -> set[Path]:
    """Owned paths of an object, minus fields the server owns (``apiVersion``, ``kind``, name, uid, ...)."""
    out: set[Path] = set()
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    meta = body.get("metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in _IGNORED_META}
        if meta:
            body["metadata"] = meta
        else:
            body.pop("metadata")
    for k, v in body.items():
        _fields(v, (f"f:{k}",), schema or PatchSchema(), out, containers=containers)
    return out


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode a path set in the fieldsV1 trie format (``{"f:spec": {"f:x": {}}}``, ``"."`` for self)."""
    root: dict[str, Any] = {}
    members = set(paths)
    for p in sorted(members):
        node = root
        for elem in p:
            node = node.setdefault(elem, {})
    def mark(node: dict[str, Any], prefix: Path) -> None:
        for elem, child in node.items():
            if elem == ".":
                continue
            here = (*prefix, elem)
            if child and here in members:
                child["."] = {}
            mark(child, here)
    mark(root, ())
    return _sorted_trie(root)


def _sorted_trie(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_trie(node[k]) for k in sorted(node)}


def from_fields_v1(trie: Mapping[str, Any]) -> set[Path]:
    """Decode fieldsV1 into the set of member paths."""
    out: set[Path] = set()
    def walk(node: Mapping[str, Any], prefix: Path) -> None:
        for elem, child in node.items():
            if elem == ".":
                out.add(prefix)
                continue
            here = (*prefix, elem)
            if not child:
                out.add(here)
            else:
                walk(child, here)
    walk(trie, ())
    return out


def _lookup(obj: Any, path: Path) -> Any:
    """Value at a fieldsV1 path, or ``_MISSING``."""
    cur = obj
    for elem in path:
        if elem.startswith("f:"):
            if not isinstance(cur, dict) or elem[2:] not in cur:
                return _MISSING
            cur = cur[elem[2:]]
        elif elem.startswith("k:"):
            want = json.loads(elem[2:])
            if not isinstance(cur, list):
                return _MISSING
            cur = next((i for i in cur if isinstance(i, dict)
                        and all(i.get(k, _KEY_DEFAULTS.get(k, _MISSING)) == v for k, v in want.items())),
                       _MISSING)
            if cur is _MISSING:
                return _MISSING
        elif elem.startswith("v:"):
            want = json.loads(elem[2:])
            if not isinstance(cur, list) or not any(_json_equal(i, want) for i in cur):
                return _MISSING
            cur = want
        elif elem.startswith("i:"):
            idx = int(elem[2:])
            if not isinstance(cur, list) or idx >= len(cur):
                return _MISSING
            cur = cur[idx]
        else:
            return _MISSING
    return cur


def _remove_path(obj: dict[str, Any], path: Path) -> None:
    """Delete the field or list item at ``path`` from ``obj`` in place (no-op when absent)."""
    parent = _lookup(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if parent is _MISSING:
        return
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith(("k:", "v:")) and isinstance(parent, list):
        target = _lookup(parent, (last,))
        if target is not _MISSING:
            for i, item in enumerate(parent):
                if item is target or (last.startswith("v:") and _json_equal(item, target)):
                    del parent[i]
                    break


def _prune_empty(obj: dict[str, Any], path: Path, owned: set[Path]) -> None:
    """After removing ``path``, drop parents that became empty unless someone owns them."""
    for depth in range(len(path) - 1, 0, -1):
        parent_path = path[:depth]
        value = _lookup(obj, parent_path)
        if value is _MISSING or value or parent_path in owned:
            return
        _remove_path(obj, parent_path)


def _descendants(paths: set[Path], prefix: Path) -> bool:
    n = len(prefix)
    return any(len(p) >= n and p[:n] == prefix for p in paths)


# ---------------------------------------------------------------------------------------------------------
# Server-side apply


@dataclass(frozen=True)
class Conflict:
    """A field another manager owns with a different value (server-side apply without force)."""

    field: str
    """The field in the apiserver's notation, e.g. ``.spec.replicas`` or ``.spec.containers[name="app"].image``."""
    manager: str
    """The manager that owns it."""
    operation: str = "Update"
    """That manager's operation (``Apply`` or ``Update``); Update managers are shown with their apiVersion."""
    api_version: str = ""
    """The apiVersion recorded in that manager's entry (shown as ``using <apiVersion>`` for Update)."""
    subresource: str = ""
    """The subresource of that manager's entry, if any."""

    @property
    def who(self) -> str:
        """The manager as the apiserver prints it: ``"helm"``, ``"kubectl-client-side-apply" using apps/v1``."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


def path_string(path: Path) -> str:
    """Render a path as the apiserver does in conflict messages (``.spec.containers[name="app"].image``)."""
    out = ""
    for elem in path:
        if elem.startswith("f:"):
            out += "." + elem[2:]
        elif elem.startswith("k:"):
            keys = json.loads(elem[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif elem.startswith("v:"):
            out += f"[={elem[2:]}]"
        elif elem.startswith("i:"):
            out += f"[{elem[2:]}]"
    return out


def conflict_message(conflicts: list[Conflict]) -> str:
    """The 409 text, worded as the apiserver's field manager words it.

    One conflict: ``Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas``; several:
    grouped per manager (sorted), one ``- <path>`` line per field.
    """
    if len(conflicts) == 1:
        c = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {c.who}: {c.field}"
    by: dict[str, list[str]] = {}
    for c in conflicts:
        by.setdefault(c.who, []).append(c.field)
    lines: list[str] = []
    for who in sorted(by):
        lines.append(f"conflicts with {who}:")
        lines.extend(f"- {f}" for f in by[who])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def conflict_causes(conflicts: list[Conflict]) -> list[dict[str, str]]:
    """``details.causes`` of the 409 (``reason: FieldManagerConflict``)."""
    return [{"reason": "FieldManagerConflict", "message": f"conflict with {c.who}", "field": c.field}
            for c in conflicts]


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    paths: set[Path]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                             "apiVersion": self.api_version}
        if self.time is not None:
            d["time"] = self.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = to_fields_v1(self.paths)
        if self.subresource:
            d["subresource"] = self.subresource
        return d


def _entries(obj: Mapping[str, Any] | None) -> list[_Entry]:
    out: list[_Entry] = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        out.append(_Entry(raw.get("manager", ""), raw.get("operation", "Update"), raw.get("apiVersion", ""),
                          raw.get("time"), raw.get("subresource", ""),
                          from_fields_v1(raw.get("fieldsV1") or {})))
    return out


def _stamp(now: dt.datetime | str) -> str:
    """``managedFields[].time``: RFC 3339 UTC, second precision (a preformatted string is kept)."""
    if isinstance(now, str):
        return now
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _store_entries(obj: dict[str, Any], entries: list[_Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    kept = [e.to_dict() for e in entries if e.paths]
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _ssa_merge(live: Any, applied: Any, path: Path, schema: PatchSchema) -> Any:
    """Merge an applied configuration into the live value: maps field by field, keyed lists item by item,
    sets by union, everything else replaced by the applied value."""
    if isinstance(applied, dict) and isinstance(live, dict) and applied:
        out = dict(live)
        for k, v in applied.items():
            out[k] = _ssa_merge(live.get(k, _MISSING), v, (*path, f"f:{k}"), schema)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        strat = schema.list_at(_schema_path(path))
        if strat.strategy == "set":
            return list(live) + [a for a in applied if not any(_json_equal(a, x) for x in live)]
        if strat.strategy == "merge":
            out_list = list(live)
            for a in applied:
                elem = _key_element(a, strat)
                if elem is None:
                    return copy.deepcopy(applied)
                idx = next((i for i, x in enumerate(out_list) if _key_element(x, strat) == elem), None)
                if idx is None:
                    out_list.append(copy.deepcopy(a))
                else:
                    out_list[idx] = _ssa_merge(out_list[idx], a, (*path, elem), schema)
            return out_list
    return copy.deepcopy(applied)


def server_side_apply(live: dict[str, Any] | None, applied: dict[str, Any], *, manager: str, force: bool,
                      schema: PatchSchema | None, now: dt.datetime | str, subresource: str | None = None,
                      status_subresource: bool = True) -> tuple[dict[str, Any], list[Conflict]]:
    """Apply ``applied`` for ``manager`` to ``live`` (``None``: create) the way the apiserver's field manager
    does, returning the new object and the conflicts (non-empty → nothing changed; the caller answers 409
    with :func:`conflict_message`).

    - every field in ``applied`` becomes owned by ``manager`` (operation ``Apply``);
    - fields the manager applied before but omits now are removed, unless another manager owns them;
    - setting a field another manager owns to a different value is a conflict, unless ``force``, which moves
      ownership to ``manager``; equal values are shared without conflict;
    - on the main resource of a kind with a status subresource, ``status`` in ``applied`` is ignored; on the
      ``status`` subresource only ``status`` is applied.
    """
    sch = schema or PatchSchema()
    sub = subresource or ""
    cfg = copy.deepcopy(applied)
    if sub == "status":
        cfg = {k: v for k, v in cfg.items() if k in ("apiVersion", "kind", "metadata", "status")}
        if isinstance(cfg.get("metadata"), dict):
            cfg["metadata"] = {k: v for k, v in cfg["metadata"].items() if k in ("name", "namespace")}
    elif status_subresource:
        cfg.pop("status", None)
    if isinstance(cfg.get("metadata"), dict):
        cfg["metadata"] = {k: v for k, v in cfg["metadata"].items()
                           if k not in _IGNORED_META or k in ("name", "namespace", "generateName")}
    api_version = str(applied.get("apiVersion", ""))
    base: dict[str, Any] = copy.deepcopy(live) if live is not None else {}
    entries = _entries(base)
    mine = next((e for e in entries if e.manager == manager and e.operation == "Apply"
                 and e.subresource == sub), None)
    others = [e for e in entries if e is not mine]
    applied_paths = field_set(cfg, sch)

    conflicts: list[Conflict] = []
    taken: dict[int, set[Path]] = {}
    for p in sorted(applied_paths):
        new_value = _lookup(cfg, p)
        old_value = _lookup(base, p)
        if old_value is not _MISSING and _json_equal(old_value, new_value):
            continue
        if isinstance(new_value, dict | list) and old_value is not _MISSING and p[-1].startswith("k:"):
            continue  # a keyed item that exists: its fields are compared one by one
        for e in others:
            if e.subresource != sub:
                continue
            if p in e.paths:
                if force:
                    taken.setdefault(id(e), set()).add(p)
                else:
                    conflicts.append(Conflict(path_string(p), e.manager, e.operation, e.api_version,
                                              e.subresource))
    if conflicts:
        return copy.deepcopy(live) if live is not None else {}, conflicts
    for e in others:
        e.paths -= taken.get(id(e), set())

    result = _ssa_merge(base, cfg, (), sch)
    if live is None and isinstance(applied.get("metadata"), dict):
        meta = result.setdefault("metadata", {})
        for k in ("name", "namespace", "generateName"):
            if k in applied["metadata"]:
                meta[k] = applied["metadata"][k]
    for k in ("apiVersion", "kind"):
        if k in applied:
            result[k] = applied[k]
    if mine is not None:
        still_owned: set[Path] = set(applied_paths)
        for e in others:
            still_owned |= e.paths
        dropped: list[Path] = []
        for p in sorted(mine.paths - applied_paths, key=len):
            if _descendants(still_owned, p) or any(p[:len(d)] == d for d in dropped):
                continue
            _remove_path(result, p)
            _prune_empty(result, p, still_owned)
            dropped.append(p)
    for e in others:
        e.paths = {p for p in e.paths if _lookup(result, p) is not _MISSING}
    entry = _Entry(manager, "Apply", api_version, _stamp(now), sub, applied_paths)
    if mine is None:
        entries.append(entry)
    else:
        entries[entries.index(mine)] = entry
    _store_entries(result, entries)
    return result, []


def record_update(old: dict[str, Any] | None, new: dict[str, Any], *, manager: str, api_version: str,
                  now: dt.datetime | str, schema: PatchSchema | None = None, subresource: str | None = None,
                  status_subresource: bool = True) -> dict[str, Any]:
    """Update ``new``'s ``metadata.managedFields`` in place for a non-apply write (create, update, patch) and
    return ``new``.

    The writer takes ownership (operation ``Update``) of every field it added or changed, taking it away
    from other managers without conflict, and fields that disappeared leave every manager's set — which is
    how the real field manager keeps ownership honest across PUTs and client-side patches. Without
    ``schema`` the patch metadata comes from ``new``'s apiVersion and kind (:func:`schema_for`). As in
    :func:`server_side_apply`, a write to the main resource of a kind with a status subresource never owns
    ``status`` (the strategy resets it), and a ``status`` write owns only ``status``.
    """
    if schema is None:
        schema = schema_for(str(new.get("apiVersion", "")), str(new.get("kind", "")))
    sch = schema or PatchSchema()
    sub = subresource or ""
    out = copy.deepcopy(new)
    entries = _entries(old)
    old_body = copy.deepcopy(old) if old is not None else {}

    def owned(obj: dict[str, Any]) -> set[Path]:
        paths = field_set(obj, sch, containers=True)
        if sub == "status":
            return {p for p in paths if p[0] == "f:status"}
        if status_subresource:
            return {p for p in paths if p[0] != "f:status"}
        return paths

    old_set = owned(old_body)
    new_set = owned(out)

    def differs(p: Path) -> bool:
        before, after = _lookup(old_body, p), _lookup(out, p)
        if isinstance(after, dict) and after and (p[-1].startswith("k:") or p[-1][2:] in _MAP_FIELDS):
            return False  # a map or keyed item that already existed: its fields are compared one by one
        return before is _MISSING or not _json_equal(before, after)

    changed = set(new_set) if old is None else {p for p in new_set if p not in old_set or differs(p)}
    removed = old_set - new_set
    for e in entries:
        e.paths = {p for p in e.paths if p not in removed and _lookup(out, p) is not _MISSING}
        if not (e.manager == manager and e.operation == "Update" and e.subresource == sub):
            e.paths -= changed
    if changed:
        mine = next((e for e in entries if e.manager == manager and e.operation == "Update"
                     and e.subresource == sub), None)
        if mine is None:
            entries.append(_Entry(manager, "Update", api_version, _stamp(now), sub, set(changed)))
        else:
            mine.paths |= changed
            mine.time = _stamp(now)
            mine.api_version = api_version
    _store_entries(out, entries)
    meta = new.setdefault("metadata", {})
    if "managedFields" in out["metadata"]:
        meta["managedFields"] = out["metadata"]["managedFields"]
    else:
        meta.pop("managedFields", None)
    return new
