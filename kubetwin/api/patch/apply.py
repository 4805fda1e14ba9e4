"""Server-side apply (``application/apply-patch+yaml``, helm 4, ``kubectl apply --server-side``) and the
``managedFields`` bookkeeping of every other write (:func:`record_update`)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetwin.api.patch.fields import (
    IGNORED_META,
    MAP_FIELDS,
    Path,
    descendants,
    field_set,
    from_fields_v1,
    key_element,
    lookup,
    prune_empty,
    remove_path,
    schema_path,
    to_fields_v1,
)
from kubetwin.api.patch.jsonpatch import MISSING, json_equal
from kubetwin.api.patch.schema import PatchSchema, schema_for


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
            out[k] = _ssa_merge(live.get(k, MISSING), v, (*path, f"f:{k}"), schema)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        strat = schema.list_at(schema_path(path))
        if strat.strategy == "set":
            return list(live) + [a for a in applied if not any(json_equal(a, x) for x in live)]
        if strat.strategy == "merge":
            out_list = list(live)
            for a in applied:
                elem = key_element(a, strat)
                if elem is None:
                    return copy.deepcopy(applied)
                idx = next((i for i, x in enumerate(out_list) if key_element(x, strat) == elem), None)
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
                           if k not in IGNORED_META or k in ("name", "namespace", "generateName")}
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
        new_value = lookup(cfg, p)
        old_value = lookup(base, p)
        if old_value is not MISSING and json_equal(old_value, new_value):
            continue
        if isinstance(new_value, dict | list) and old_value is not MISSING and p[-1].startswith("k:"):
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
            if descendants(still_owned, p) or any(p[:len(d)] == d for d in dropped):
                continue
            remove_path(result, p)
            prune_empty(result, p, still_owned)
            dropped.append(p)
    for e in others:
        e.paths = {p for p in e.paths if lookup(result, p) is not MISSING}
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
        before, after = lookup(old_body, p), lookup(out, p)
        if isinstance(after, dict) and after and (p[-1].startswith("k:") or p[-1][2:] in MAP_FIELDS):
            return False  # a map or keyed item that already existed: its fields are compared one by one
        return before is MISSING or not json_equal(before, after)

    changed = set(new_set) if old is None else {p for p in new_set if p not in old_set or differs(p)}
    removed = old_set - new_set
    for e in entries:
        e.paths = {p for p in e.paths if p not in removed and lookup(out, p) is not MISSING}
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
