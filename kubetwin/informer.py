"""A small shared informer and work queue for the twin's controllers and kubelets.

Same contract as client-go's: list, then watch from the list's resourceVersion, keep a cache, call handlers;
on ``410 Expired`` (history trimmed) relist and emit the differences so handlers never miss a change. Cached
objects are the store's own dicts (no copy, for speed with thousands of pods): treat them as read-only and
``copy.deepcopy`` before changing one.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubetwin.api.core import Api
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import ResourceType

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Handler = Callable[[str, Obj, Obj | None], None]
"""``handler(event_type, obj, old)`` with event_type ADDED | MODIFIED | DELETED (old is the cached previous)."""


def key_of(obj: Obj) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


class Informer:
    """Cache of one kind (optionally filtered) kept current by a watch thread."""

    def __init__(self, api: Api, rt: ResourceType, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None, name: str = "") -> None:
        self.api = api
        self.rt = rt
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._name = name or f"informer-{rt.plural}"
        self._cache: dict[tuple[str, str], Obj] = {}
        self._lock = threading.RLock()
        self._handlers: list[Handler] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()
        """Set once the initial list is in the cache and handlers saw it."""

    def add_handler(self, handler: Handler) -> None:
        """Handlers run on the informer thread: keep them short (enqueue a key) and never raise."""
        self._handlers.append(handler)

    # -- cache ---------------------------------------------------------------------------------------
    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._cache.get((namespace if self.rt.namespaced else "", name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            if namespace is None:
                return list(self._cache.values())
            return [o for (ns, _), o in self._cache.items() if ns == namespace]

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_synced(self, timeout: float = 10.0) -> bool:
        return self.synced.wait(timeout)

    def _emit(self, etype: str, obj: Obj, old: Obj | None) -> None:
        for h in self._handlers:
            try:
                h(etype, obj, old)
            except Exception:
                log.exception("%s handler failed", self._name)

    def _relist(self) -> str:
        items, rv = self.api.list(self.rt, self._namespace, label_selector=self._label_selector,
                                  field_selector=self._field_selector, copy_objects=False)
        fresh = {key_of(o): o for o in items}
        with self._lock:
            old_cache = self._cache
            self._cache = dict(fresh)
        for k, o in old_cache.items():
            if k not in fresh:
                self._emit("DELETED", o, o)
        for k, o in fresh.items():
            prev = old_cache.get(k)
            if prev is None:
                self._emit("ADDED", o, None)
            elif prev.get("metadata", {}).get("resourceVersion") != o.get("metadata", {}).get("resourceVersion"):
                self._emit("MODIFIED", o, prev)
        return rv

    def _run(self) -> None:
        rv = self._relist()
        self.synced.set()
        while not self._stop.is_set():
            try:
                w = self.api.watch(self.rt, self._namespace, resource_version=rv,
                                   label_selector=self._label_selector, field_selector=self._field_selector,
                                   copy_objects=False)
            except ApiError as exc:
                if exc.code == 410:
                    rv = self._relist()
                    continue
                raise
            try:
                while not self._stop.is_set():
                    ev = w.next(timeout=0.2)
                    if ev is None:
                        if w.stopped:
                            break
                        continue
                    rv = str(ev.object.get("metadata", {}).get("resourceVersion") or rv)
                    k = key_of(ev.object)
                    with self._lock:
                        prev = self._cache.get(k)
                        if ev.type == "DELETED":
                            self._cache.pop(k, None)
                        else:
                            self._cache[k] = ev.object
                    self._emit(ev.type, ev.object, prev)
                rv = w.last_rv or rv
            finally:
                w.stop()


class WorkQueue:
    """Deduplicating queue of keys with delayed adds (client-go's rate-limited workqueue, minus the limiter).

    A key added while queued is not added twice; a key added while being processed is processed again
    afterwards, so a worker never misses a change that raced with its sync.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._mono = monotonic
        self._cond = threading.Condition()
        self._ready: list[Any] = []
        self._queued: set[Any] = set()
        self._processing: set[Any] = set()
        self._dirty: set[Any] = set()
        self._delayed: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._closed = False

    def add(self, key: Any) -> None:
        with self._cond:
            if not self._closed:
                self._push(key)

    def _push(self, key: Any) -> None:
        """With the lock held: make ``key`` ready unless it already is; a key being processed is only marked
        to run again once :meth:`done` is called."""
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: Any, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._mono() + delay, next(self._seq), key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any | None:
        """Next key to process (call :meth:`done` after), or None on timeout/close."""
        deadline = None if timeout is None else self._mono() + timeout
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = self._mono()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, k = heapq.heappop(self._delayed)
                    self._push(k)
                if self._ready:
                    k = self._ready.pop(0)
                    self._queued.discard(k)
                    self._processing.add(k)
                    return k
                wait = None if deadline is None else deadline - now
                if self._delayed:
                    until = self._delayed[0][0] - now
                    wait = until if wait is None else min(wait, until)
                if wait is not None and wait <= 0:
                    if deadline is not None and now >= deadline:
                        return None
                    continue
                self._cond.wait(wait if wait is None else min(wait, 0.5))

    def done(self, key: Any) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._push(key)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


__all__ = ["Handler", "Informer", "WorkQueue", "key_of"]
