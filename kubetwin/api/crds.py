"""CustomResourceDefinitions: serve the kinds they define (kubernetes-dra.md §8; helm's CRD handling).

A real apiserver's apiextensions controllers notice a new CRD, start serving its versions, and report
``NamesAccepted`` and ``Established`` in its status; helm installs the chart's CRDs and waits for
``Established`` before creating custom resources. :class:`CrdController` does the same asynchronously over
:meth:`Api.watch`, so the ordering that matters to clients (registered *before* Established) holds. Deleting a
CRD stops serving its kinds and deletes its custom resources (the real server keeps the CRD Terminating until
they are gone; the twin removes it at once — see docs/twin-fidelity.md).
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

from kubetwin.api.core import Api, WatchEvent
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def crd_resource_types(crd: Obj) -> list[ResourceType]:
    """The kinds a CRD serves: one :class:`ResourceType` per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind = str(names.get("kind") or "")
    plural = str(names.get("plural") or "")
    group = str(spec.get("group") or "")
    if not (kind and plural and group):
        return []
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True) or not v.get("name"):
            continue
        subs = (v.get("subresources") or {})
        sub_names = frozenset(s for s in ("status", "scale") if s in subs)
        out.append(ResourceType(
            group=group, version=str(v["name"]), kind=kind, plural=plural,
            singular=str(names.get("singular") or kind.lower()),
            namespaced=(spec.get("scope") or "Namespaced") == "Namespaced",
            subresources=sub_names,
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            tracks_generation=True,
            status_resets_spec="status" in sub_names,
        ))
    return out


def _accepted_names(crd: Obj) -> Obj:
    names = copy.deepcopy((crd.get("spec") or {}).get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    return names


def _storage_version(crd: Obj) -> str | None:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("storage"):
            return str(v.get("name"))
    return None


class CrdController:
    """Keeps the :class:`Registry` and CRD status in step with the stored CRDs."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.crd_rt = api.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        self._served: dict[str, list[ResourceType]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None or self.crd_rt is None:
            return
        self._stop.clear()
        watch = self.api.watch(self.crd_rt)
        self._thread = threading.Thread(target=self._run, args=(watch,), name="twin-crd-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self, watch: Any) -> None:
        try:
            while not self._stop.is_set():
                ev: WatchEvent | None = watch.next(timeout=0.2)
                if ev is None:
                    if watch.stopped:
                        return
                    continue
                try:
                    self.handle(ev)
                except ApiError as exc:  # a racing writer; the next event brings the CRD again
                    log.debug("crd controller: %s", exc)
        finally:
            watch.stop()

    def handle(self, ev: WatchEvent) -> None:
        """React to one CRD event (public so tests and the composer can drive it synchronously)."""
        crd = ev.object
        name = str(crd["metadata"]["name"])
        if ev.type == "DELETED" or crd["metadata"].get("deletionTimestamp"):
            self._unserve(name, delete_objects=True)
            return
        wanted = crd_resource_types(crd)
        old = self._served.get(name, [])
        for rt in old:
            if rt not in wanted:
                self.api.registry.unregister(rt)
        for rt in wanted:
            self.api.registry.register(rt)
        self._served[name] = wanted
        self._set_status(crd)

    def _unserve(self, name: str, *, delete_objects: bool) -> None:
        rts = self._served.pop(name, [])
        if delete_objects and rts:
            rt = rts[0]
            items, _ = self.api.list(rt)
            for it in items:
                meta = it["metadata"]
                cur = self.api.store.get(rt.key, meta.get("namespace", "") or "", meta["name"])
                if cur is None:
                    continue
                with self.api.store.lock:  # the CRD is gone: its objects go with it, finalizers or not
                    gone = copy.deepcopy(cur)
                    gone["metadata"]["resourceVersion"] = str(self.api.store.next_rv())
                    self.api.store.remove(rt.key, gone)
        for rt in rts:
            self.api.registry.unregister(rt)

    def _set_status(self, crd: Obj) -> None:
        assert self.crd_rt is not None
        status = copy.deepcopy(crd.get("status") or {})
        now = self.api.now()
        want_conds = {
            "NamesAccepted": ("True", "NoConflicts", "no conflicts found"),
            "Established": ("True", "InitialNamesAccepted", "the initial names have been accepted"),
        }
        conds = [c for c in status.get("conditions") or [] if c.get("type") not in want_conds]
        existing = {c.get("type"): c for c in status.get("conditions") or []}
        for typ, (st, reason, msg) in want_conds.items():
            prev = existing.get(typ)
            if prev and prev.get("status") == st and prev.get("reason") == reason:
                conds.append(prev)
            else:
                conds.append({"type": typ, "status": st, "reason": reason, "message": msg,
                              "lastTransitionTime": now})
        new_status: Obj = {"conditions": conds, "acceptedNames": _accepted_names(crd)}
        stored = list(status.get("storedVersions") or [])
        sv = _storage_version(crd)
        if sv and sv not in stored:
            stored.append(sv)
        new_status["storedVersions"] = stored
        if new_status == status:
            return
        new = copy.deepcopy(crd)
        new["status"] = new_status
        self.api.update(self.crd_rt, None, str(crd["metadata"]["name"]), new, subresource="status")
