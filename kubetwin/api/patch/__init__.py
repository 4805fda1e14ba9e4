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

The algorithms live in one module each: :mod:`.jsonpatch` (RFC 6902/7386 and :class:`PatchError`),
:mod:`.schema` (per-kind list metadata), :mod:`.strategic` (SMP), :mod:`.fields` (field sets, fieldsV1) and
:mod:`.apply` (server-side apply, managedFields). Callers import from this package.
"""

from __future__ import annotations

from kubetwin.api.patch.apply import (
    Conflict,
    conflict_causes,
    conflict_message,
    path_string,
    record_update,
    server_side_apply,
)
from kubetwin.api.patch.fields import Path, field_set, from_fields_v1, to_fields_v1
from kubetwin.api.patch.jsonpatch import JSON, PatchError, json_patch, merge_patch
from kubetwin.api.patch.schema import REPLACE, ListStrategy, PatchSchema, schema_for
from kubetwin.api.patch.strategic import strategic_merge_patch

__all__ = [
    "JSON", "REPLACE", "Conflict", "ListStrategy", "PatchError", "PatchSchema", "Path", "conflict_causes",
    "conflict_message", "field_set", "from_fields_v1", "json_patch", "merge_patch", "path_string", "record_update",
    "schema_for", "server_side_apply", "strategic_merge_patch", "to_fields_v1",
]
