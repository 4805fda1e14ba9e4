"""Watch streaming (``?watch=1`` and ``/watch/`` paths): chunked JSON event lines from the store's watch.

Bookmarks every ``bookmark_interval`` when asked, ``sendInitialEvents`` with the ``initial-events-end``
bookmark, ``timeoutSeconds``, Table rows for ``kubectl get -w``, and a 410 ``ERROR`` event for a too-old
``resourceVersion`` (§8.5). The stream ends on timeout, client close, or the server's shutdown.
"""

from __future__ import annotations

import contextlib
import json

from kubetwin.api.errors import ApiError
from kubetwin.api.request import ClientGone, Obj, q1, qbool, qint, wants_table
from kubetwin.api.resources import ResourceType
from kubetwin.api.verbs import Verbs


def serve_watch(h: Verbs, rt: ResourceType, ns: str | None, name: str | None, q: dict[str, list[str]]) -> None:
    fs = q1(q, "fieldSelector")
    if name is not None:
        fs = f"metadata.name={name}" + (f",{fs}" if fs else "")
    ls = q1(q, "labelSelector")
    rv = q1(q, "resourceVersion")
    bookmarks = qbool(q, "allowWatchBookmarks")
    timeout = qint(q, "timeoutSeconds")
    limit = float(timeout) if timeout is not None and timeout > 0 else h.twin.max_watch_seconds
    table = wants_table(h.headers.get("Accept") or "")
    initial: list[Obj] = []
    initial_end: str | None = None
    if qbool(q, "sendInitialEvents"):
        if not bookmarks or q1(q, "resourceVersionMatch") != "NotOlderThan":
            raise ApiError(
                422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: "
                "sendInitialEvents is allowed only with allowWatchBookmarks=true and "
                "resourceVersionMatch=NotOlderThan")
        initial, initial_end = h.api.list(rt, ns, label_selector=ls, field_selector=fs, copy_objects=False)
        rv = initial_end
    try:
        # Events are only serialised (or turned into table rows that reference them): no copy per event.
        w = h.api.watch(rt, ns, resource_version=rv, label_selector=ls, field_selector=fs,
                           copy_objects=False)
    except ApiError as err:
        if err.code != 410:
            raise
        h._start_stream("application/json")
        with contextlib.suppress(ClientGone):
            h._chunk(_event_line("ERROR", err.to_status()))
        h._end_stream()
        return
    h._start_stream("application/json")
    started = h.api.monotonic()
    last_sent = started
    try:
        for obj in initial:
            h._chunk(_event_line("ADDED", _watch_obj(h, rt, obj, q, table)))
        if initial_end is not None:
            h._chunk(_event_line("BOOKMARK", {
                "kind": rt.kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": initial_end,
                             "annotations": {"k8s.io/initial-events-end": "true"}}}))
        while not h.twin.stopping.is_set():
            now = h.api.monotonic()
            if now - started >= limit:
                break
            ev = w.next(timeout=min(0.5, limit - (now - started)))
            if ev is None:
                if w.stopped:
                    break
                if bookmarks and h.api.monotonic() - last_sent >= h.twin.bookmark_interval:
                    h._chunk(_event_line("BOOKMARK", {
                        "kind": rt.kind, "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": w.last_rv}}))
                    last_sent = h.api.monotonic()
                continue
            h._chunk(_event_line(ev.type, _watch_obj(h, rt, ev.object, q, table)))
            last_sent = h.api.monotonic()
    except ClientGone:
        pass
    finally:
        w.stop()
    h._end_stream()

def _watch_obj(h: Verbs, rt: ResourceType, obj: Obj, q: dict[str, list[str]], table: bool) -> Obj:
    if table:
        t = h._table(rt, [obj], q, str((obj.get("metadata") or {}).get("resourceVersion", "")))
        if t is not None:
            return t
    return obj

def _event_line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

