"""Field sets: the paths an object sets, in fieldsV1 element syntax, and their ``managedFields`` encoding.

Server-side apply (:mod:`kubetwin.api.patch.apply`) computes ownership with these."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubetwin.api.patch.jsonpatch import MISSING, json_equal
from kubetwin.api.patch.schema import KEY_DEFAULTS, ListStrategy, PatchSchema

Path = tuple[str, ...]
"""A field path in fieldsV1 element syntax: ``("f:spec", "f:containers", 'k:{"name":"app"}', "f:image")``."""

MAP_FIELDS = frozenset({"labels", "annotations", "nodeSelector", "matchLabels", "data", "binaryData",
                         "stringData", "limits", "requests", "capacity", "allocatable", "attributes"})
"""Map-typed (not struct) fields: an Update entry owns the map itself (``"."``) besides its keys."""

IGNORED_META = ("managedFields", "name", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                 "generateName")


def schema_path(path: Path) -> tuple[str, ...]:
    return tuple(p[2:] for p in path if p.startswith("f:"))


def key_element(item: Any, strat: ListStrategy) -> str | None:
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
        if containers and path and path[-1][2:] in MAP_FIELDS:
            out.add(path)
        for k, v in value.items():
            _fields(v, (*path, f"f:{k}"), schema, out, containers=containers)
        return
    if isinstance(value, list):
        strat = schema.list_at(schema_path(path))
        if strat.strategy == "set" and value:
            out.update((*path, _value_element(v)) for v in value)
            return
        if strat.strategy == "merge" and value:
            elems = [key_element(v, strat) for v in value]
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
        meta = {k: v for k, v in meta.items() if k not in IGNORED_META}
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


def lookup(obj: Any, path: Path) -> Any:
    """Value at a fieldsV1 path, or ``MISSING``."""
    cur = obj
    for elem in path:
        if elem.startswith("f:"):
            if not isinstance(cur, dict) or elem[2:] not in cur:
                return MISSING
            cur = cur[elem[2:]]
        elif elem.startswith("k:"):
            want = json.loads(elem[2:])
            if not isinstance(cur, list):
                return MISSING
            cur = next((i for i in cur if isinstance(i, dict)
                        and all(i.get(k, KEY_DEFAULTS.get(k, MISSING)) == v for k, v in want.items())),
                       MISSING)
            if cur is MISSING:
                return MISSING
        elif elem.startswith("v:"):
            want = json.loads(elem[2:])
            if not isinstance(cur, list) or not any(json_equal(i, want) for i in cur):
                return MISSING
            cur = want
        elif elem.startswith("i:"):
            idx = int(elem[2:])
            if not isinstance(cur, list) or idx >= len(cur):
                return MISSING
            cur = cur[idx]
        else:
            return MISSING
    return cur


def remove_path(obj: dict[str, Any], path: Path) -> None:
    """Delete the field or list item at ``path`` from ``obj`` in place (no-op when absent)."""
    parent = lookup(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if parent is MISSING:
        return
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith(("k:", "v:")) and isinstance(parent, list):
        target = lookup(parent, (last,))
        if target is not MISSING:
            for i, item in enumerate(parent):
                if item is target or (last.startswith("v:") and json_equal(item, target)):
                    del parent[i]
                    break


def prune_empty(obj: dict[str, Any], path: Path, owned: set[Path]) -> None:
    """After removing ``path``, drop parents that became empty unless someone owns them."""
    for depth in range(len(path) - 1, 0, -1):
        parent_path = path[:depth]
        value = lookup(obj, parent_path)
        if value is MISSING or value or parent_path in owned:
            return
        remove_path(obj, parent_path)


def descendants(paths: set[Path], prefix: Path) -> bool:
    n = len(prefix)
    return any(len(p) >= n and p[:n] == prefix for p in paths)


