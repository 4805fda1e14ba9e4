"""Versioned in-memory object store: the twin's etcd.

One global, monotonically increasing resourceVersion across every kind (as etcd revisions are), a bounded
event history so watches can resume from a resourceVersion (and get ``410 Expired`` when it is too old), and
per-subscriber queues so a slow watcher never blocks writers. Semantics (validation, finalizers, deletion
rules) live in :mod:`kubetwin.api.core`; this module only stores and fans out.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

Obj = dict[str, Any]
NsName = tuple[str, str]


@dataclass(frozen=True)
class StoreEvent:
    """A committed change. ``obj`` is the stored object (shared: copy before mutating)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    obj: Obj
    old: Obj | None = None


_T = TypeVar("_T")
_ATOMIC = frozenset({str, int, float, bool, type(None)})


def clone(obj: _T) -> _T:
    """A deep copy of a JSON-shaped value, several times faster than :func:`copy.deepcopy`.

    Why: every read and write of the API copies whole objects (the store's dicts are shared and must never be
    mutated by callers), and ``copy.deepcopy``'s memo and dispatch made those copies the twin's largest cost
    with a thousand pods. Plain dicts, lists and scalars are copied directly; anything else (a subclass, a
    set, a datetime someone stored) goes through ``copy.deepcopy`` so the result is still fully independent.
    Unlike ``deepcopy`` a sub-object referenced twice is copied twice, which JSON values never notice.
    """
    t = type(obj)
    if t is dict:
        d = cast("dict[Any, Any]", obj)
        return cast(_T, {k: v if type(v) in _ATOMIC else clone(v) for k, v in d.items()})
    if t is list:
        lst = cast("list[Any]", obj)
        return cast(_T, [v if type(v) in _ATOMIC else clone(v) for v in lst])
    if t in _ATOMIC:
        return obj
    return copy.deepcopy(obj)


class TooOld(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(eq=False)
class Subscription:
    """A watcher's queue of events for one kind (optionally one namespace)."""

    key: str
    namespace: str | None
    _events: deque[StoreEvent] = field(default_factory=deque)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def push(self, ev: StoreEvent) -> None:
        with self._cond:
            self._events.append(ev)
            self._cond.notify()

    def pop(self, timeout: float | None) -> StoreEvent | None:
        """Next event, or None after ``timeout`` seconds (or when closed and drained)."""
        with self._cond:
            if not self._events and not self.closed:
                self._cond.wait(timeout)
            if self._events:
                return self._events.popleft()
            return None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Store:
    """Objects keyed by (resource key, namespace, name)."""

    def __init__(self, history: int = 50_000) -> None:
        self.lock = threading.RLock()
        self._rv = 0
        self._data: dict[str, dict[NsName, Obj]] = {}
        self._history: deque[StoreEvent] = deque(maxlen=history)
        self._subs: dict[str, set[Subscription]] = {}
        self._oldest_rv = 0

    # -- reads ---------------------------------------------------------------------------------------
    def current_rv(self) -> int:
        with self.lock:
            return self._rv

    def get(self, key: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            return self._data.get(key, {}).get((namespace, name))

    def list(self, key: str, namespace: str | None = None) -> tuple[builtins.list[Obj], int]:
        with self.lock:
            bucket = self._data.get(key, {})
            if namespace is None:
                items = [bucket[k] for k in sorted(bucket)]
            else:
                items = [bucket[k] for k in sorted(bucket) if k[0] == namespace]
            return items, self._rv

    def list_at(self, key: str, namespace: str | None, rv: int) -> builtins.list[Obj]:
        """The objects of ``key`` as they were at resourceVersion ``rv`` (a consistent snapshot for paginated
        lists): today's state with every retained change after ``rv`` undone. :class:`TooOld` when the history
        no longer reaches back to ``rv`` (etcd's compaction)."""
        with self.lock:
            if rv > self._rv:
                raise TooOld(rv, self._oldest_rv)
            if rv < self._oldest_rv:
                raise TooOld(rv, self._oldest_rv)
            snap = dict(self._data.get(key, {}))
            for ev in reversed(self._history):
                if ev.rv <= rv:
                    break
                if ev.key != key:
                    continue
                k = (_ns(ev.obj), str(ev.obj["metadata"]["name"]))
                if ev.type == "ADDED":
                    snap.pop(k, None)
                elif ev.old is not None:
                    snap[k] = ev.old
            return [snap[k] for k in sorted(snap) if namespace is None or k[0] == namespace]

    def keys(self) -> builtins.list[str]:
        with self.lock:
            return list(self._data)

    # -- writes --------------------------------------------------------------------------------------
    def next_rv(self) -> int:
        """Reserve the next resourceVersion (call under ``lock``; the write must follow)."""
        self._rv += 1
        return self._rv

    def _emit(self, ev: StoreEvent) -> None:
        if len(self._history) == self._history.maxlen and self._history:
            self._oldest_rv = self._history[0].rv
        self._history.append(ev)
        for sub in tuple(self._subs.get(ev.key, ())):
            if sub.namespace is None or sub.namespace == _ns(ev.obj):
                sub.push(ev)

    def put(self, key: str, obj: Obj, *, event: str, old: Obj | None = None) -> Obj:
        """Store ``obj`` (whose metadata.resourceVersion the caller has set from :meth:`next_rv`)."""
        with self.lock:
            meta = obj["metadata"]
            self._data.setdefault(key, {})[(meta.get("namespace", ""), meta["name"])] = obj
            self._emit(StoreEvent(int(meta["resourceVersion"]), event, key, obj, old))
            return obj

    def remove(self, key: str, obj: Obj) -> Obj:
        """Drop ``obj`` (already carrying its final resourceVersion) and emit DELETED."""
        with self.lock:
            meta = obj["metadata"]
            old = self._data.get(key, {}).pop((meta.get("namespace", ""), meta["name"]), None)
            self._emit(StoreEvent(int(meta["resourceVersion"]), "DELETED", key, obj, old))
            return obj

    # -- watches -------------------------------------------------------------------------------------
    def subscribe(self, key: str, namespace: str | None, since_rv: int | None
                  ) -> tuple[Subscription, builtins.list[StoreEvent]]:
        """Register a watcher; returns it plus the backlog to replay.

        ``since_rv=None`` means "current state first": the backlog is a synthetic ADDED per object.
        Otherwise the backlog is every retained change after ``since_rv``; :class:`TooOld` if history no
        longer reaches back that far.
        """
        with self.lock:
            sub = Subscription(key, namespace)
            if since_rv is None:
                items, _rv = self.list(key, namespace)
                backlog = [StoreEvent(int(o["metadata"]["resourceVersion"]), "ADDED", key, o) for o in items]
            else:
                if since_rv < self._oldest_rv:
                    raise TooOld(since_rv, self._oldest_rv)
                backlog = [ev for ev in self._history if ev.rv > since_rv and ev.key == key
                           and (namespace is None or _ns(ev.obj) == namespace)]
            self._subs.setdefault(key, set()).add(sub)
            return sub, backlog

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            self._subs.get(sub.key, set()).discard(sub)
        sub.close()

    def close_all(self) -> None:
        with self.lock:
            subs: Iterable[Subscription] = [s for group in self._subs.values() for s in group]
            self._subs.clear()
        for s in subs:
            s.close()


def _ns(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace", "") or "")
