"""Plumbing the twin's controllers share: shared informers, a worker loop, owner references, selectors."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubetwin.api.core import Api
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import ResourceType
from kubetwin.api.selectors import label_selector_matches
from kubetwin.informer import Informer, WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class SharedInformers:
    """One informer per kind shared by every controller (add handlers before :meth:`start`)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._informers: dict[str, Informer] = {}
        self._started = False

    def get(self, rt: ResourceType) -> Informer:
        inf = self._informers.get(rt.key)
        if inf is None:
            inf = Informer(self.api, rt, name=f"shared-{rt.plural}")
            self._informers[rt.key] = inf
            if self._started:
                inf.start()
        return inf

    def start(self) -> None:
        self._started = True
        for inf in list(self._informers.values()):
            inf.start()
        for inf in list(self._informers.values()):
            inf.wait_synced()

    def stop(self) -> None:
        for inf in self._informers.values():
            inf.stop()


class Controller:
    """A work-queue driven controller: handlers enqueue keys, one worker thread calls :meth:`sync`."""

    name = "controller"

    def __init__(self, api: Api, informers: SharedInformers) -> None:
        self.api = api
        self.informers = informers
        self.queue = WorkQueue(api.monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expectations: dict[Any, set[tuple[str, str, str]]] = {}

    def sync(self, key: Any) -> None:
        raise NotImplementedError

    def live(self, rt: ResourceType, key: tuple[str, str]) -> Obj | None:
        """The cached object at ``key`` (namespace, name) unless it is gone or being deleted: what most syncs
        start from (a deleted owner is left to the garbage collector)."""
        obj = self.informers.get(rt).get(*key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        return obj

    # -- expectations (client-go's ControllerExpectations) --------------------------------------------
    # A controller that just created or deleted pods must not act again on a cache that has not seen those
    # writes yet, or it would create twice as many pods.
    def expect(self, key: Any, op: str, ns: str, name: str) -> None:
        self._expectations.setdefault(key, set()).add((op, ns, name))

    def expectations_met(self, key: Any, informer: Informer) -> bool:
        pending = self._expectations.get(key)
        if not pending:
            return True
        for op, ns, name in list(pending):
            obj = informer.get(ns, name)
            seen = obj is not None if op == "create" else (obj is None or bool(obj["metadata"].get(
                "deletionTimestamp")))
            if seen:
                pending.discard((op, ns, name))
        if pending:
            self.queue.add_after(key, 0.05)
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                self.sync(key)
            except ApiError as exc:
                if exc.code not in (404, 409):
                    log.warning("%s: sync %s: %s", self.name, key, exc.message)
                self.queue.add_after(key, 0.2)
            except Exception:
                log.exception("%s: sync %s failed", self.name, key)
                self.queue.add_after(key, 1.0)
            finally:
                self.queue.done(key)

    def enqueue_obj(self, etype: str, obj: Obj, old: Obj | None) -> None:
        m = obj["metadata"]
        self.queue.add((m.get("namespace", ""), m["name"]))

    def enqueue_owner(self, kind: str) -> Callable[[str, Obj, Obj | None], None]:
        """Handler for dependents: enqueue their controlling owner of ``kind``."""
        def handler(etype: str, obj: Obj, old: Obj | None) -> None:
            for o in (obj, old):
                ref = controller_ref(o) if o else None
                if ref and ref.get("kind") == kind:
                    self.queue.add((obj["metadata"].get("namespace", ""), ref["name"]))
        return handler


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_ref(owner: Obj, *, controller: bool = True) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": True}


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return bool(ref and ref.get("uid") == owner["metadata"]["uid"])


def match_selector(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """A controller's ``spec.selector``: an empty selector matches everything, a None one nothing."""
    return selector is not None and label_selector_matches(selector, labels or {})


def pod_from_template(owner: Obj, template: Obj, *, generate_name: str, extra_labels: dict[str, str] | None = None
                      ) -> Obj:
    """A pod as controllers create them: template metadata + spec, controller ownerReference."""
    meta = copy.deepcopy(template.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    labels.update(extra_labels or {})
    pod_meta: Obj = {"generateName": generate_name, "labels": labels,
                     "ownerReferences": [owner_ref(owner)]}
    if meta.get("annotations"):
        pod_meta["annotations"] = meta["annotations"]
    if meta.get("finalizers"):
        pod_meta["finalizers"] = meta["finalizers"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def pod_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def pod_active(pod: Obj) -> bool:
    return (not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


def resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = int(s[:-1])
        q, r = divmod(pct * total, 100)
        return q + (1 if round_up and r else 0)
    return int(s)


def safe_encode(n: int) -> str:
    """apimachinery's rand.SafeEncodeString of a decimal number (hash suffixes like ``5d4b7c9f8``)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[ord(ch) % len(alphabet)] for ch in str(n))


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A pod-template-hash in the real alphabet (fnv32a over the template, SafeEncodeString)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(fnv32a(data))


def write_status(api: Api, rt: ResourceType, obj: Obj, status: Obj) -> None:
    """Write ``status`` through the status subresource unless unchanged; a deleted or since-changed object is
    left to the next sync (404/409 ignored)."""
    if obj.get("status") == status:
        return
    body = copy.deepcopy(obj)
    body["status"] = status
    try:
        api.update(rt, obj["metadata"]["namespace"], obj["metadata"]["name"], body, subresource="status")
    except ApiError as exc:
        if exc.code not in (404, 409):
            raise


def delete_if_present(api: Api, rt: ResourceType, namespace: str | None, name: str, **options: Any) -> bool:
    """Delete; an object that is already gone (404) is not an error. Returns whether this call deleted it."""
    try:
        api.delete(rt, namespace, name, **options)
    except ApiError as exc:
        if exc.code != 404:
            raise
        return False
    return True


__all__ = [
    "Controller", "SharedInformers", "controller_ref", "delete_if_present", "fnv32a", "match_selector", "owned_by",
    "owner_ref", "pod_active", "pod_from_template", "pod_ready", "resolve_int_or_percent", "safe_encode",
    "template_hash", "write_status",
]
