"""The semantics every writer of the twin's API shares (kubernetes-dra.md §8.2, §8.4).

The HTTPS front end and the in-process controllers, scheduler and kubelet all call :class:`Api`, so a pod
created by ``kubectl apply`` and one created by the ReplicaSet controller go through the same defaulting,
validation, admission, finalizer and deletion rules — the twin cannot behave one way for tests and another
for its own machinery.

Over 600 lines on purpose: :class:`Api` is one class whose write paths share one store transaction and one
admission order (defaults → mutating webhooks → validation → validating webhooks → finalizers); the
algorithms it calls (patch, validation, defaults, webhooks) are already modules of their own.
"""

from __future__ import annotations

import builtins
import datetime as dt
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetwin.api import defaults as D
from kubetwin.api import errors as E
from kubetwin.api import patch as P
from kubetwin.api import validation as V
from kubetwin.api.errors import ApiError, Cause
from kubetwin.api.resources import Registry, ResourceType, core, default_registry
from kubetwin.api.selectors import matcher
from kubetwin.api.store import Obj, Store, StoreEvent, Subscription, TooOld, clone

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"

# Kinds whose status a create may not set (PrepareForCreate resets it); pods get a fresh Pending status.
_RESET_STATUS_ON_CREATE = frozenset({
    "resource.k8s.io/resourceclaims", "apps/deployments", "apps/replicasets", "apps/daemonsets",
    "batch/jobs", "resource.k8s.io/devicetaintrules", "apiextensions.k8s.io/customresourcedefinitions",
})


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    """Wall clock in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> dt.datetime:
    s = s.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(s)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    object: Obj


@dataclass
class AdmissionRequest:
    """What admission hooks see (the twin's analogue of admission.Attributes)."""

    operation: str  # CREATE | UPDATE | DELETE
    rt: ResourceType
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    subresource: str | None = None
    dry_run: bool = False
    user: str = "system:admin"


Validator = Callable[[Obj, Obj | None], list[Cause]]
Defaulter = Callable[[Obj], None]
Admission = Callable[[AdmissionRequest], None]


class Watch:
    """A watch stream: selector filtering with real transition semantics (§8.4)."""

    def __init__(self, api: Api, rt: ResourceType, sub: Subscription, backlog: list[StoreEvent],
                 match: Callable[[Obj], bool], copy_objects: bool) -> None:
        self._api = api
        self.rt = rt
        self._sub = sub
        self._backlog = list(backlog)
        self._match = match
        self._copy = copy_objects
        self.last_rv = str(api.store.current_rv()) if not backlog else str(backlog[-1].rv)

    def _translate(self, ev: StoreEvent) -> WatchEvent | None:
        now_match = self._match(ev.obj)
        if ev.type == "ADDED":
            out = "ADDED" if now_match else None
        elif ev.type == "DELETED":
            out = "DELETED" if (now_match or (ev.old is not None and self._match(ev.old))) else None
        else:
            was = ev.old is not None and self._match(ev.old)
            out = ("MODIFIED" if was else "ADDED") if now_match else ("DELETED" if was else None)
        self.last_rv = str(ev.rv)
        if out is None:
            return None
        return WatchEvent(out, clone(ev.obj) if self._copy else ev.obj)

    def next(self, timeout: float | None = None) -> WatchEvent | None:
        """The next matching event, or None if none arrived within ``timeout`` (or the watch stopped)."""
        deadline = None if timeout is None else self._api.monotonic() + timeout
        while True:
            if self._backlog:
                ev: StoreEvent | None = self._backlog.pop(0)
            else:
                remaining = None if deadline is None else max(0.0, deadline - self._api.monotonic())
                ev = self._sub.pop(remaining)
                if ev is None:
                    return None
            assert ev is not None
            out = self._translate(ev)
            if out is not None:
                return out
            if deadline is not None and self._api.monotonic() >= deadline and not self._backlog:
                return None

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        while not self._sub.closed or self._backlog:
            ev = self.next(timeout=1.0)
            if ev is not None:
                return ev
        raise StopIteration

    @property
    def stopped(self) -> bool:
        return self._sub.closed

    def stop(self) -> None:
        self._api.store.unsubscribe(self._sub)


def _meta(obj: Obj) -> dict[str, Any]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


_VOLATILE_META = frozenset({"resourceVersion", "managedFields", "generation"})


def _same_but_volatile(a: Obj, b: Obj) -> bool:
    """Whether two objects are equal apart from metadata the server itself maintains (a no-op write).

    Compares in place instead of stripping copies: this runs on every update.
    """
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        if k != "metadata" and v != b[k]:
            return False
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    if not (isinstance(ma, dict) and isinstance(mb, dict)):
        return bool(ma == mb)
    keys = ma.keys() - _VOLATILE_META
    return keys == mb.keys() - _VOLATILE_META and all(ma[k] == mb[k] for k in keys)


class Api:
    """Kubernetes API semantics over a :class:`Store`."""

    def __init__(self, registry: Registry | None = None, store: Store | None = None,
                 clock: Clock | None = None, monotonic: Callable[[], float] | None = None) -> None:
        import time

        self.registry = registry or default_registry()
        self.store = store or Store()
        self.clock: Clock = clock or SystemClock()
        self.monotonic = monotonic or time.monotonic
        self.validators: dict[str, list[Validator]] = {}
        self.defaulters: dict[str, list[Defaulter]] = {}
        self.admission: list[Admission] = []
        self.mutation: list[Admission] = []
        """Mutating admission (webhooks): may change ``req.obj`` in place; runs before validation."""
        self._rand = random.Random()
        self._event_lock = threading.Lock()
        self._event_index: dict[tuple[str, str, str, str, str], tuple[str, str]] = {}
        self.admission.append(self._namespace_lifecycle)

    # -- helpers -------------------------------------------------------------------------------------
    def rt(self, api_version: str, kind: str) -> ResourceType:
        rt = self.registry.by_kind(api_version, kind)
        if rt is None:
            raise E.ApiError(404, "NotFound", f"the server could not find the requested resource ({kind})")
        return rt

    def now(self) -> str:
        return rfc3339(self.clock.now())

    def _random_suffix(self, n: int = 5) -> str:
        return "".join(self._rand.choice(_NAME_CHARS) for _ in range(n))

    def _defaults(self, rt: ResourceType, obj: Obj) -> None:
        D.apply_defaults(rt.api_version, rt.kind, obj)
        for fn in self.defaulters.get(rt.key, ()):
            fn(obj)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        causes: list[Cause] = list(V.validate(rt.api_version, rt.kind, obj, old))
        for fn in self.validators.get(rt.key, ()):
            causes.extend(fn(obj, old))
        if causes:
            name = _meta(obj).get("name") or _meta(obj).get("generateName") or ""
            raise E.invalid(rt, str(name), causes)

    def _mutate(self, rt: ResourceType, req: AdmissionRequest) -> None:
        """Mutating admission, then defaulting again (the apiserver decodes the patched object anew)."""
        if not self.mutation or req.obj is None:
            return
        for hook in list(self.mutation):
            hook(req)
        self._defaults(rt, req.obj)

    def _admit(self, req: AdmissionRequest) -> None:
        for hook in list(self.admission):
            hook(req)

    def _namespace_lifecycle(self, req: AdmissionRequest) -> None:
        if req.operation != "CREATE" or not req.rt.namespaced or req.rt.plural == "events":
            return
        ns = self.store.get("/namespaces", "", req.namespace)
        if ns is None:
            raise E.ApiError(404, "NotFound", f'namespaces "{req.namespace}" not found',
                             {"name": req.namespace, "kind": "namespaces"})
        if ns.get("metadata", {}).get("deletionTimestamp"):
            raise E.forbidden(req.rt, req.name,
                              f"unable to create new content in namespace {req.namespace} because it is being "
                              f"terminated",
                              (Cause("NamespaceTerminating", f"namespace {req.namespace} is being terminated",
                                     "metadata.namespace"),))

    def _managed_fields(self, rt: ResourceType, old: Obj | None, new: Obj, manager: str | None) -> None:
        """Record ``manager``'s ownership of what a create/update wrote (apply records its own)."""
        if not manager:
            return
        P.record_update(old, new, manager=manager, api_version=rt.api_version, now=self.now())

    def _check_namespace_arg(self, rt: ResourceType, namespace: str | None, obj: Obj) -> str:
        meta = _meta(obj)
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise E.bad_request("the namespace of the provided object does not match the namespace sent on "
                                    "the request")
            ns = namespace or body_ns or "default"
            meta["namespace"] = ns
            return str(ns)
        meta.pop("namespace", None)
        return ""

    # -- create --------------------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str | None, obj: Obj, *, dry_run: bool = False,
               field_manager: str | None = None) -> Obj:
        obj = clone(obj)
        if not isinstance(obj, dict):
            raise E.bad_request("the body of the request must be an object")
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        ns = self._check_namespace_arg(rt, namespace, obj)
        meta = _meta(obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"])[:58] + self._random_suffix()
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation"):
            meta.pop(k, None)
        if rt.key in _RESET_STATUS_ON_CREATE:
            obj.pop("status", None)
        if rt.key == "/pods":
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
        if rt.key == "/namespaces":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        self._defaults(rt, obj)
        if not meta.get("name"):
            raise E.invalid(rt, "", [Cause("FieldValueRequired", "Required value: name or generateName is "
                                           "required", "metadata.name")])
        self._mutate(rt, AdmissionRequest("CREATE", rt, ns, str(meta["name"]), obj, None, dry_run=dry_run))
        meta = _meta(obj)  # a mutating webhook's patch may have replaced the metadata dict
        self._validate(rt, obj, None)
        self._admit(AdmissionRequest("CREATE", rt, ns, str(meta["name"]), obj, None, dry_run=dry_run))
        for _attempt in range(8):
            with self.store.lock:
                if self.store.get(rt.key, ns, meta["name"]) is not None:
                    if meta.get("generateName") and _attempt < 7:
                        meta["name"] = str(meta["generateName"])[:58] + self._random_suffix()
                        continue
                    raise E.already_exists(rt, str(meta["name"]))
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = self.now()
                if rt.tracks_generation or rt.key in ("/pods",):
                    meta["generation"] = 1
                self._managed_fields(rt, None, obj, field_manager)
                if dry_run:
                    meta["resourceVersion"] = str(self.store.current_rv())
                    return obj
                meta["resourceVersion"] = str(self.store.next_rv())
                self.store.put(rt.key, obj, event="ADDED")
                return clone(obj)
        raise E.already_exists(rt, str(meta["name"]))  # pragma: no cover

    # -- read ----------------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(rt.key, namespace or "" if rt.namespaced else "", name)
        if obj is None:
            raise E.not_found(rt, name)
        return clone(obj)

    def try_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(rt, namespace, name)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, copy_objects: bool = True) -> tuple[builtins.list[Obj], str]:
        match = matcher(rt, label_selector, field_selector)
        items, rv = self.store.list(rt.key, namespace if rt.namespaced else None)
        out = [clone(o) if copy_objects else o for o in items if match(o)]
        return out, str(rv)

    # -- update --------------------------------------------------------------------------------------
    def update(self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, *,
               subresource: str | None = None, field_manager: str | None = None, dry_run: bool = False,
               _operation: str = "Update") -> Obj:
        obj = clone(obj)
        ns = namespace or "" if rt.namespaced else ""
        if rt.namespaced:
            ns = self._check_namespace_arg(rt, namespace, obj)
        meta = _meta(obj)
        if meta.get("name") and meta["name"] != name:
            raise E.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                f"({name})")
        meta["name"] = name
        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise E.not_found(rt, name)
        want_rv = meta.get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise E.conflict(rt, name)
        new = self._merge_for_update(rt, old, obj, subresource)
        if subresource is None:
            self._defaults(rt, new)
        self._mutate(rt, AdmissionRequest("UPDATE", rt, ns, name, new, old, subresource=subresource,
                                          dry_run=dry_run))
        self._validate(rt, new, old)
        self._admit(AdmissionRequest("UPDATE", rt, ns, name, new, old, subresource=subresource, dry_run=dry_run))
        with self.store.lock:
            cur = self.store.get(rt.key, ns, name)
            if cur is None:
                raise E.not_found(rt, name)
            if cur["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                if want_rv:
                    raise E.conflict(rt, name)
                new = self._merge_for_update(rt, cur, obj, subresource)
            return self._commit_update(rt, cur, new, field_manager, dry_run, _operation)

    def _merge_for_update(self, rt: ResourceType, old: Obj, obj: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            new = clone(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            return new
        if subresource not in (None, ""):
            raise E.method_not_allowed(f"subresource {subresource} does not support update")
        new = obj
        new["apiVersion"] = rt.api_version
        new["kind"] = rt.kind
        meta = _meta(new)
        ometa = old["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "namespace"):
            if k in ometa:
                meta[k] = ometa[k]
            else:
                meta.pop(k, None)
        if "status" in rt.subresources and rt.status_resets_spec:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        if ometa.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(ometa.get("finalizers") or [])
            if added:
                raise E.invalid(rt, ometa["name"], [Cause(
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers {sorted(added)!r}".replace("'", '"'), "metadata.finalizers")])
        return new

    def _commit_update(self, rt: ResourceType, old: Obj, new: Obj, manager: str | None, dry_run: bool,
                       operation: str) -> Obj:
        meta = new["metadata"]
        if _same_but_volatile(old, new):
            return clone(old)  # no-op update: no new resourceVersion, no event
        if rt.tracks_generation or rt.key == "/pods":
            if old.get("spec") != new.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            else:
                meta["generation"] = old["metadata"].get("generation", 1)
        meta.setdefault("managedFields", old["metadata"].get("managedFields"))
        if meta.get("managedFields") is None:
            meta.pop("managedFields", None)
        if operation == "Update":
            self._managed_fields(rt, old, new, manager)
        if dry_run:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new
        meta["resourceVersion"] = str(self.store.next_rv())
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and self._removable(rt, new):
            self.store.remove(rt.key, new)
        else:
            self.store.put(rt.key, new, event="MODIFIED", old=old)
        return clone(new)

    def bind(self, namespace: str, name: str, node_name: str, *, uid: str | None = None,
             annotations: dict[str, str] | None = None, dry_run: bool = False) -> Obj:
        """``POST pods/binding``: set ``spec.nodeName`` and ``PodScheduled=True`` (kubernetes-dra.md §4.1, §8.2).

        Like the apiserver's BindingREST this bypasses pod update validation (``spec.nodeName`` is otherwise
        immutable) and refuses pods already bound or being deleted. The scheduler and the HTTP front end share it.
        """
        rt = self.registry.get("", "v1", "pods") or core("pods")
        with self.store.lock:
            cur = self.store.get(rt.key, namespace, name)
            if cur is None:
                raise E.not_found(rt, name)
            meta = cur["metadata"]
            if uid and uid != meta.get("uid"):
                raise E.conflict(rt, name, f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                           f"{meta.get('uid')}")
            if meta.get("deletionTimestamp"):
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": pod '
                               f"{name} is being deleted, cannot be assigned to a host",
                               {"name": name, "kind": "pods/binding"})
            bound = (cur.get("spec") or {}).get("nodeName")
            if bound:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": pod '
                               f'{name} is already assigned to node "{bound}"', {"name": name, "kind": "pods/binding"})
            new = clone(cur)
            new.setdefault("spec", {})["nodeName"] = node_name
            if annotations:
                new["metadata"].setdefault("annotations", {}).update(annotations)
            status = new.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": self.now()})
            status["conditions"] = conds
            return self._commit_update(rt, cur, new, None, dry_run, "Update")

    def _removable(self, rt: ResourceType, obj: Obj) -> bool:
        """Whether a deleting object with no finalizers left may disappear now."""
        if rt.key == "/pods":
            return int(obj["metadata"].get("deletionGracePeriodSeconds") or 0) == 0
        if rt.key == "/namespaces":
            return not (obj.get("spec") or {}).get("finalizers")
        return True

    # -- patch ---------------------------------------------------------------------------------------
    def patch(self, rt: ResourceType, namespace: str | None, name: str, patch_type: str, body: Any, *,
              subresource: str | None = None, field_manager: str | None = None, force: bool = False,
              dry_run: bool = False) -> tuple[Obj, bool]:
        ns = namespace or "" if rt.namespaced else ""
        for _attempt in range(5):
            old = self.store.get(rt.key, ns, name)
            if patch_type == APPLY_PATCH:
                if not field_manager:
                    raise E.bad_request("PATCH request with apply content-type requires a field manager")
                if not isinstance(body, dict):
                    raise E.bad_request("apply patch must be an object")
                if old is None:
                    if subresource:
                        raise E.not_found(rt, name)
                    applied, conflicts = P.server_side_apply(None, body, manager=field_manager, force=force,
                                                             schema=P.schema_for(rt.api_version, rt.kind),
                                                             now=self.now())
                    applied.setdefault("metadata", {})["name"] = name
                    if rt.namespaced:
                        applied["metadata"]["namespace"] = ns
                    created = self.create(rt, ns or None, applied, dry_run=dry_run)
                    return created, True
                base = clone(old)
                new, conflicts = P.server_side_apply(base, body, manager=field_manager, force=force,
                                                     schema=P.schema_for(rt.api_version, rt.kind), now=self.now(),
                                                     subresource=subresource,
                                                     status_subresource="status" in rt.subresources)
                if conflicts:
                    raise _apply_conflict(rt, name, conflicts)
                operation = "Apply"
            else:
                if old is None:
                    raise E.not_found(rt, name)
                base = clone(old)
                try:
                    if patch_type == JSON_PATCH:
                        new = P.json_patch(base, body)
                    elif patch_type == MERGE_PATCH:
                        new = P.merge_patch(base, body)
                    elif patch_type == STRATEGIC_PATCH:
                        schema = P.schema_for(rt.api_version, rt.kind)
                        if schema is None:
                            raise E.ApiError(415, "UnsupportedMediaType",
                                             "the body of the request was in an unknown format - accepted media "
                                             "types include: application/json-patch+json, "
                                             "application/merge-patch+json, application/apply-patch+yaml")
                        new = P.strategic_merge_patch(base, body, schema)
                    else:
                        raise E.unsupported_media_type(patch_type)
                except P.PatchError as exc:
                    code = int(getattr(exc, "code", 422 if patch_type == JSON_PATCH else 400))
                    raise E.ApiError(code, "Invalid" if code == 422 else "BadRequest", str(exc)) from exc
                operation = "Update"
            new.setdefault("metadata", {})["resourceVersion"] = (
                (new.get("metadata") or {}).get("resourceVersion") or old["metadata"]["resourceVersion"])
            # A patch never conflicts on its own base; it retries if someone wrote in between.
            try:
                out = self.update(rt, ns or None, name, new, subresource=subresource, field_manager=field_manager,
                                  dry_run=dry_run, _operation=operation)
            except ApiError as exc:
                if exc.code == 409 and exc.reason == "Conflict" and _attempt < 4:
                    body_rv = _body_rv(body)
                    if body_rv is None:
                        continue
                raise
            return out, False
        raise E.conflict(rt, name)

    # -- delete --------------------------------------------------------------------------------------
    def delete(self, rt: ResourceType, namespace: str | None, name: str, *,
               grace_period_seconds: int | None = None, propagation_policy: str | None = None,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> Obj:
        ns = namespace or "" if rt.namespaced else ""
        with self.store.lock:
            cur = self.store.get(rt.key, ns, name)
            if cur is None:
                raise E.not_found(rt, name)
            if preconditions:
                if preconditions.get("uid") and preconditions["uid"] != cur["metadata"]["uid"]:
                    raise E.conflict(rt, name, f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                               f"UID in object meta: {cur['metadata']['uid']}")
                want = preconditions.get("resourceVersion")
                if want and want != cur["metadata"]["resourceVersion"]:
                    raise E.conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: {want}, "
                                               f"ResourceVersion in object meta: "
                                               f"{cur['metadata']['resourceVersion']}")
        self._admit(AdmissionRequest("DELETE", rt, ns, name, None, cur, dry_run=dry_run))
        with self.store.lock:
            cur = self.store.get(rt.key, ns, name)
            if cur is None:
                raise E.not_found(rt, name)
            new = clone(cur)
            meta = new["metadata"]
            fins = list(meta.get("finalizers") or [])
            policy = propagation_policy
            if policy == "Foreground" and "foregroundDeletion" not in fins:
                fins.append("foregroundDeletion")
            elif policy == "Orphan" and "orphan" not in fins:
                fins.append("orphan")
            if fins:
                meta["finalizers"] = fins
            if rt.key == "/namespaces":
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = self.now()
                    meta["deletionGracePeriodSeconds"] = 0
                new.setdefault("status", {})["phase"] = "Terminating"
                return self._write_deleting(rt, cur, new, dry_run)
            if rt.key == "/pods":
                grace = _pod_grace(cur, grace_period_seconds)
                if not (cur.get("spec") or {}).get("nodeName") or _pod_terminal(cur):
                    grace = 0
                if meta.get("deletionTimestamp"):
                    prev = int(meta.get("deletionGracePeriodSeconds") or 0)
                    if grace >= prev:
                        return clone(cur) if not fins or fins == cur["metadata"].get("finalizers") \
                            else self._write_deleting(rt, cur, new, dry_run)
                meta["deletionTimestamp"] = rfc3339(self.clock.now() + dt.timedelta(seconds=grace))
                meta["deletionGracePeriodSeconds"] = grace
                if grace > 0 or fins:
                    return self._write_deleting(rt, cur, new, dry_run)
                return self._remove(rt, new, dry_run)
            if fins:
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = self.now()
                    meta["deletionGracePeriodSeconds"] = 0
                return self._write_deleting(rt, cur, new, dry_run)
            return self._remove(rt, new, dry_run)

    def _write_deleting(self, rt: ResourceType, old: Obj, new: Obj, dry_run: bool) -> Obj:
        if dry_run:
            return new
        if _same_but_volatile(old, new):
            return clone(old)
        new["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.put(rt.key, new, event="MODIFIED", old=old)
        return clone(new)

    def _remove(self, rt: ResourceType, obj: Obj, dry_run: bool) -> Obj:
        if dry_run:
            return obj
        obj["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.remove(rt.key, obj)
        return clone(obj)

    def delete_collection(self, rt: ResourceType, namespace: str | None, *, label_selector: str | None = None,
                          field_selector: str | None = None, grace_period_seconds: int | None = None,
                          propagation_policy: str | None = None, dry_run: bool = False) -> builtins.list[Obj]:
        items, _ = self.list(rt, namespace, label_selector=label_selector, field_selector=field_selector)
        out = []
        for it in items:
            try:
                out.append(self.delete(rt, it["metadata"].get("namespace"), it["metadata"]["name"],
                                       grace_period_seconds=grace_period_seconds,
                                       propagation_policy=propagation_policy, dry_run=dry_run))
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return out

    # -- watch ---------------------------------------------------------------------------------------
    def watch(self, rt: ResourceType, namespace: str | None = None, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              copy_objects: bool = True) -> Watch:
        match = matcher(rt, label_selector, field_selector)
        since: int | None
        if resource_version in (None, "", "0"):
            since = None
        else:
            try:
                since = int(str(resource_version))
            except ValueError as exc:
                raise E.bad_request(f"invalid resource version: {resource_version}") from exc
        try:
            sub, backlog = self.store.subscribe(rt.key, namespace if rt.namespaced else None, since)
        except TooOld as exc:
            raise E.expired(str(exc)) from exc
        return Watch(self, rt, sub, backlog, match, copy_objects)

    # -- events --------------------------------------------------------------------------------------
    def record_event(self, involved: Obj, reason: str, message: str, *, type: str = "Normal",
                     component: str = "", host: str = "", action: str = "") -> None:
        """Emit a core/v1 Event like client-go's recorder (aggregating repeats by count)."""
        meta = involved.get("metadata", {})
        ns = meta.get("namespace") or "default"
        key = (str(meta.get("uid", "")), reason, message, component, type)
        now = self.clock.now()
        evs = core("events")
        with self._event_lock:
            existing = self._event_index.get(key)
            try:
                if existing is not None:
                    ev = self.store.get(evs.key, existing[0], existing[1])
                    if ev is not None:
                        ev = clone(ev)
                        ev["count"] = int(ev.get("count", 1)) + 1
                        ev["lastTimestamp"] = rfc3339(now)
                        ev["metadata"].pop("resourceVersion", None)
                        self.update(evs, existing[0], existing[1], ev)
                        return
                name = f"{meta.get('name', 'unknown')}.{uuid.uuid4().int & ((1 << 64) - 1):x}"
                ev = {
                    "metadata": {"name": name, "namespace": ns},
                    "involvedObject": {k: v for k, v in {
                        "kind": involved.get("kind"), "namespace": meta.get("namespace"),
                        "name": meta.get("name"), "uid": meta.get("uid"),
                        "apiVersion": involved.get("apiVersion"),
                        "resourceVersion": meta.get("resourceVersion")}.items() if v},
                    "reason": reason, "message": message, "type": type,
                    "source": {k: v for k, v in {"component": component, "host": host}.items() if v},
                    "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now), "count": 1,
                    "eventTime": None, "reportingComponent": component, "reportingInstance": host,
                }
                if action:
                    ev["action"] = action
                self.create(evs, ns, ev)
                self._event_index[key] = (ns, name)
            except ApiError:
                pass  # events are best effort, as in client-go


def _apply_conflict(rt: ResourceType, name: str, conflicts: builtins.list[Any]) -> ApiError:
    details: dict[str, Any] = {"name": name, "kind": rt.plural, "causes": P.conflict_causes(conflicts)}
    if rt.group:
        details["group"] = rt.group
    return ApiError(409, "Conflict", P.conflict_message(conflicts), details)


def _body_rv(body: Any) -> str | None:
    if isinstance(body, dict):
        rv = (body.get("metadata") or {}).get("resourceVersion")
        return str(rv) if rv else None
    return None


def _pod_grace(pod: Obj, requested: int | None) -> int:
    if requested is not None:
        return max(0, int(requested))
    val = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return 30 if val is None else int(val)


def _pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _qos_class(pod: Obj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        if lim or req:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


__all__ = [
    "APPLY_PATCH", "JSON_PATCH", "MERGE_PATCH", "PATCH_TYPES", "STRATEGIC_PATCH", "AdmissionRequest", "Api",
    "ApiError", "Cause", "Clock", "SystemClock", "Watch", "WatchEvent", "core", "field", "parse_time", "rfc3339",
    "rfc3339_micro",
]
