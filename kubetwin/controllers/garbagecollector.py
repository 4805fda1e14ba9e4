"""Garbage collector: ownerReferences with background, foreground and orphan deletion (§8.2).

* Background: a dependent whose owners are all gone (or whose owner uid no longer matches) is deleted.
* Foreground: an owner deleted with ``propagationPolicy=Foreground`` carries the ``foregroundDeletion``
  finalizer; its dependents are deleted (themselves in the foreground), and the finalizer is removed once no
  dependent with ``blockOwnerDeletion: true`` is left.
* Orphan: the ``orphan`` finalizer makes the collector strip the owner's references from dependents, then drop
  the finalizer.

Dependents are tracked for every built-in namespaced kind plus nodes (leases) — custom resources registered
later are owners the collector can look up, but not dependents it watches (docs/twin-fidelity.md).
"""

from __future__ import annotations

import threading
from typing import Any

from kubetwin.api.errors import ApiError
from kubetwin.api.resources import ResourceType
from kubetwin.controllers.base import Controller, SharedInformers

Obj = dict[str, Any]
_SKIP = {"/events"}


class GarbageCollector(Controller):
    name = "garbage-collector"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        self._lock = threading.Lock()
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}
        self._kinds: dict[str, ResourceType] = {}
        for rt in api.registry.all():
            if rt.key in _SKIP or "list" not in rt.verbs or "watch" not in rt.verbs:
                continue
            self._kinds[rt.key] = rt
            informers.get(rt).add_handler(self._handler(rt))

    def _handler(self, rt: ResourceType) -> Any:
        def on(etype: str, obj: Obj, old: Obj | None) -> None:
            m = obj["metadata"]
            me = (rt.key, str(m.get("namespace") or ""), str(m["name"]))
            with self._lock:
                for ref in (old or {}).get("metadata", {}).get("ownerReferences") or []:
                    self._dependents.get(ref.get("uid", ""), set()).discard(me)
                if etype != "DELETED":
                    for ref in m.get("ownerReferences") or []:
                        self._dependents.setdefault(ref.get("uid", ""), set()).add(me)
                deps = list(self._dependents.get(str(m.get("uid")), ()))
            if m.get("ownerReferences") and etype != "DELETED":
                self.queue.add(me)
            if etype == "DELETED" or m.get("deletionTimestamp"):
                for d in deps:
                    self.queue.add(d)
                if m.get("deletionTimestamp"):
                    self.queue.add(me)
        return on

    def _owner(self, ref: Obj, namespace: str) -> Obj | None:
        rt = self.api.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            return None
        obj = self.api.try_get(rt, namespace if rt.namespaced else None, ref.get("name", ""))
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            return None
        return obj

    def sync(self, key: Any) -> None:
        rkey, ns, name = key
        rt = self._kinds.get(rkey)
        if rt is None:
            return
        obj = self.informers.get(rt).get(ns, name)
        if obj is None:
            return
        m = obj["metadata"]
        fins = m.get("finalizers") or []
        if m.get("deletionTimestamp") and ("orphan" in fins or "foregroundDeletion" in fins):
            self._finish_owner(rt, obj)
        refs = m.get("ownerReferences") or []
        if not refs or m.get("deletionTimestamp"):
            return
        owners = [(ref, self._owner(ref, ns)) for ref in refs]
        absent = [ref for ref, o in owners if o is None]
        present = [o for _ref, o in owners if o is not None]
        if not present:
            self._delete(rt, ns, name, m["uid"], "Background")
            return
        if all(o["metadata"].get("deletionTimestamp")
               and "foregroundDeletion" in (o["metadata"].get("finalizers") or []) for o in present):
            self._delete(rt, ns, name, m["uid"], "Foreground")
            return
        if absent:
            gone = {r.get("uid") for r in absent}
            body = {"metadata": {"ownerReferences": [r for r in refs if r.get("uid") not in gone],
                                 "uid": m["uid"]}}
            self.api.patch(rt, ns or None, name, "application/merge-patch+json", body)

    def _delete(self, rt: ResourceType, ns: str, name: str, uid: str, policy: str) -> None:
        try:
            self.api.delete(rt, ns or None, name, propagation_policy=policy, preconditions={"uid": uid})
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    def _finish_owner(self, rt: ResourceType, owner: Obj) -> None:
        m = owner["metadata"]
        uid = m["uid"]
        with self._lock:
            deps = list(self._dependents.get(uid, ()))
        live = []
        for dkey, dns, dname in deps:
            drt = self._kinds.get(dkey)
            d = self.informers.get(drt).get(dns, dname) if drt else None
            if d is not None and any(r.get("uid") == uid for r in d["metadata"].get("ownerReferences") or []):
                live.append((drt, d))
        fins = list(m.get("finalizers") or [])
        if "orphan" in fins:
            for drt, d in live:
                assert drt is not None
                refs = [r for r in d["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                self.api.patch(drt, d["metadata"].get("namespace") or None, d["metadata"]["name"],
                               "application/merge-patch+json", {"metadata": {"ownerReferences": refs or None}})
            fins.remove("orphan")
        elif "foregroundDeletion" in fins:
            blocking = False
            for drt, d in live:
                assert drt is not None
                ref = next(r for r in d["metadata"].get("ownerReferences") or [] if r.get("uid") == uid)
                if ref.get("blockOwnerDeletion"):
                    blocking = True
                if not d["metadata"].get("deletionTimestamp"):
                    self._delete(drt, d["metadata"].get("namespace") or "", d["metadata"]["name"],
                                 d["metadata"]["uid"], "Foreground")
            if blocking:
                self.queue.add_after((rt.key, m.get("namespace") or "", m["name"]), 0.2)
                return
            fins.remove("foregroundDeletion")
        else:
            return
        body = {"metadata": {"finalizers": fins or None, "resourceVersion": m["resourceVersion"]}}
        self.api.patch(rt, m.get("namespace") or None, m["name"], "application/merge-patch+json", body)


__all__ = ["GarbageCollector"]
