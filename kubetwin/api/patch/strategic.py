"""Strategic merge patch (what ``kubectl apply`` and helm 3 send): ``$patch``, ``$retainKeys``,
``$deleteFromPrimitiveList`` and ``$setElementOrder`` directives over the lists of :class:`PatchSchema`."""

from __future__ import annotations

import copy
import json
from typing import Any

from kubetwin.api.patch.jsonpatch import JSON, MISSING, PatchError, json_equal
from kubetwin.api.patch.schema import REPLACE, ListStrategy, PatchSchema

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
    return {} if result is MISSING else result


def _smp_map(original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...],
             schema: PatchSchema) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return MISSING
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
                out[name] = [x for x in out[name] if not any(json_equal(x, d) for d in value)]
            continue
        child = (*path, key)
        if value is None:
            out.pop(key, None)
            continue
        current = out.get(key, MISSING)
        if isinstance(value, dict):
            merged = _smp_map(current if isinstance(current, dict) else {}, value, child, schema)
        elif isinstance(value, list):
            merged = _smp_list(current if isinstance(current, list) else [], value, child, schema)
        else:
            merged = value
        if merged is MISSING:
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
        return {} if res is MISSING else res
    if isinstance(value, list):
        return _smp_list([], value, path, schema)
    return value


def _item_key(item: Any, strat: ListStrategy, *, smp: bool) -> Any:
    if not isinstance(item, dict):
        return MISSING
    keys = strat.keys[:1] if smp else strat.keys
    out = {}
    for k in keys:
        if k in item:
            out[k] = item[k]
        elif k in strat.key_defaults:
            out[k] = strat.key_defaults[k]
    if smp and not out:
        return MISSING
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
            if not any(json_equal(p, o) for o in out):
                out.append(p)
        return out
    out = list(original)
    for p in patch:
        key = _item_key(p, strat, smp=True)
        if key is MISSING:
            raise PatchError(f"map: {json.dumps(p)} does not contain declared merge key: {strat.keys[0]}", 400)
        idx = next((i for i, o in enumerate(out) if _item_key(o, strat, smp=True) == key), None)
        if p.get(_DIRECTIVE) == "delete":
            out = [o for o in out if _item_key(o, strat, smp=True) != key]
            continue
        if idx is None:
            out.append(_strip(p, path, schema))
        else:
            merged = _smp_map(out[idx] if isinstance(out[idx], dict) else {}, p, path, schema)
            if merged is MISSING:
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


