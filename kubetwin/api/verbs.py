"""The CRUD verbs of the twin's API server: get, list, create, update, patch, delete, deletecollection.

Each verb decodes the request with :class:`~kubetwin.api.request.RequestHandler`'s helpers and calls
:class:`~kubetwin.api.core.Api`; every semantic decision is the Api's, so in-process and HTTP callers agree.
"""

from __future__ import annotations

from typing import Any

from kubetwin.api import errors as E
from kubetwin.api.core import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, PATCH_TYPES, STRATEGIC_PATCH
from kubetwin.api.pagination import list_page
from kubetwin.api.request import BUILTIN_KEYS, RequestHandler, q1, qbool, qint, wants_table
from kubetwin.api.resources import ResourceType

# Kinds whose DELETE answers with the deleted object rather than a Status (generic store
# ``ReturnDeletedObject``; §8.2). Custom resources do too.
_RETURNS_DELETED = frozenset({"/pods", "/serviceaccounts", "/namespaces"})


class Verbs(RequestHandler):
    """The verbs on a resource collection or object (subresources reuse them: ``status`` is get/update/patch)."""

    def _get(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]]) -> None:
        obj = self.api.get(rt, ns, name)
        self._send_obj(200, rt, obj, q)

    def _list(self, rt: ResourceType, ns: str | None, q: dict[str, list[str]]) -> None:
        # The store's objects uncopied: a list is only serialised (tables and the shallow copies below never
        # change them), and copying every item was most of a large list's cost.
        # resourceVersion=0 is served from the watch cache, which ignores limit (reflectors rely on that).
        limit = None if q1(q, "resourceVersion") == "0" and not q1(q, "continue") else qint(q, "limit")
        page = list_page(self.api.store, rt, ns, label_selector=q1(q, "labelSelector"),
                         field_selector=q1(q, "fieldSelector"), limit=limit, token=q1(q, "continue"))
        items, rv = page.items, page.resource_version
        meta: dict[str, Any] = {"resourceVersion": rv}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        if wants_table(self.headers.get("Accept") or ""):
            table = self._table(rt, items, q, rv)
            if table is not None:
                table["metadata"] = meta
                self._send_json(200, table)
                return
        if rt.key in BUILTIN_KEYS:  # real servers omit kind/apiVersion on built-in list items (§8.4)
            items = [{k: v for k, v in it.items() if k not in ("kind", "apiVersion")} for it in items]
        self._send_json(200, {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items})

    def _create(self, rt: ResourceType, ns: str | None, q: dict[str, list[str]], body: bytes) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        want = obj.get("apiVersion")
        if want and want != rt.api_version:
            raise E.bad_request(f"the API version in the data ({want}) does not match the expected API version "
                                f"({rt.api_version})")
        self._field_validation(rt, q, obj)
        out = self.api.create(rt, ns, obj, dry_run=self._dry_run(q), field_manager=self._manager(q))
        self._send_obj(201, rt, out, q)

    def _update(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, q: dict[str, list[str]],
                body: bytes) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        self._field_validation(rt, q, obj)
        out = self.api.update(rt, ns, name, obj, subresource=sub, field_manager=self._manager(q),
                              dry_run=self._dry_run(q))
        self._send_obj(200, rt, out, q)

    def _patch(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, q: dict[str, list[str]],
               body: bytes) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in PATCH_TYPES:
            raise E.unsupported_media_type(ctype or "none")
        patch = self._parse_body(body, patch_type=ctype)
        if ctype == JSON_PATCH and not isinstance(patch, list):
            raise E.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if ctype in (MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH) and not isinstance(patch, dict):
            raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
        if ctype != JSON_PATCH:
            self._field_validation(rt, q, patch)
        force = qbool(q, "force")
        if force and ctype != APPLY_PATCH:
            raise E.bad_request("force: Invalid value: true: may not be specified for non-apply patch")
        manager = q1(q, "fieldManager") if ctype == APPLY_PATCH else self._manager(q)
        out, created = self.api.patch(rt, ns, name, ctype, patch, subresource=sub, field_manager=manager,
                                      force=force, dry_run=self._dry_run(q))
        self._send_obj(201 if created else 200, rt, out, q)

    def _delete_options(self, q: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if body.strip():
            parsed = self._parse_body(body)
            if isinstance(parsed, dict):
                opts = parsed
        grace = opts.get("gracePeriodSeconds")
        qgrace = qint(q, "gracePeriodSeconds")
        if qgrace is not None:
            grace = qgrace
        policy = q1(q, "propagationPolicy") or opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True or qbool(q, "orphanDependents"):
            policy = policy or "Orphan"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise E.bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                f'"Background", "Foreground", "Orphan"')
        return {"grace_period_seconds": None if grace is None else int(grace), "propagation_policy": policy,
                "preconditions": opts.get("preconditions") or None, "dry_run": self._dry_run(q, opts)}

    def _delete(self, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]], body: bytes) -> None:
        opts = self._delete_options(q, body)
        out = self.api.delete(rt, ns, name, **opts)
        meta = out.get("metadata") or {}
        still = self.api.store.get(rt.key, (meta.get("namespace") or "") if rt.namespaced else "", name)
        if still is not None and still["metadata"].get("uid") == meta.get("uid"):  # pending (or dry run)
            self._send_obj(200, rt, out, q)
            return
        if rt.key in _RETURNS_DELETED or rt.group == "resource.k8s.io" or rt.key not in BUILTIN_KEYS:
            self._send_obj(200, rt, out, q)
            return
        details: dict[str, Any] = {"name": name, "kind": rt.plural, "uid": meta.get("uid")}
        if rt.group:
            details["group"] = rt.group
        self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": details})

    def _delete_collection(self, rt: ResourceType, ns: str | None, q: dict[str, list[str]], body: bytes) -> None:
        opts = self._delete_options(q, body)
        opts.pop("preconditions", None)
        items = self.api.delete_collection(rt, ns, label_selector=q1(q, "labelSelector"),
                                           field_selector=q1(q, "fieldSelector"), **opts)
        self._send_json(200, {"kind": rt.list_kind, "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": str(self.api.store.current_rv())}, "items": items})

