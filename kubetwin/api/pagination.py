"""Chunked lists: ``limit`` and ``continue`` (kubernetes-dra.md §8.4), as the apiserver's etcd3 store serves them.

A list with ``limit=N`` returns at most N items (after selectors) and, when more remain, ``metadata.continue``:
an opaque token holding the list's resourceVersion and the key after which to resume. Continuing reads the
same consistent snapshot (the store undoes later changes from its history), so pages never skip or repeat an
object changed in between; a token whose resourceVersion the history no longer reaches gets
``410 Expired`` (etcd's compaction; client-go's pager then falls back to a full list).
``remainingItemCount`` is set only without selectors, like the real server, which cannot count matches it
has not read. Tokens look like the real ones (base64 JSON with ``v``, ``rv``, ``start``) but are only
meaningful to this twin.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetwin.api import errors as E
from kubetwin.api.resources import ResourceType
from kubetwin.api.selectors import matcher
from kubetwin.api.store import Store, TooOld

Obj = dict[str, Any]

EXPIRED_MESSAGE = ("The provided continue parameter is too old to display a consistent list result. You can start "
                   "a new list without the continue parameter.")
"""The apiserver's 410 text for a continue token past compaction."""


@dataclass(frozen=True)
class ListPage:
    """One chunk of a list."""

    items: list[Obj]
    """The chunk's objects (the store's own: serialise, never mutate)."""
    resource_version: str
    """The snapshot's resourceVersion (the first chunk's, on every chunk)."""
    continue_token: str | None
    """Token for the next chunk; None on the last one."""
    remaining: int | None
    """``remainingItemCount``: objects after this chunk (None with selectors or on the last chunk)."""


def encode_token(rv: int, start: tuple[str, str]) -> str:
    """A continue token: resume after object ``start`` (namespace, name) of the snapshot at ``rv``."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": "/".join(start) + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[int, tuple[str, str]]:
    """(rv, start key) of a token; 400 for anything this twin did not issue."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv, start = int(data["rv"]), str(data["start"]).removesuffix("\x00")
        if data.get("v") != "meta.k8s.io/v1" or rv <= 0:
            raise ValueError("unknown version")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise E.bad_request(f"continue key is not valid: {exc}") from exc
    ns, _, name = start.rpartition("/")
    return rv, (ns, name)


def list_page(store: Store, rt: ResourceType, namespace: str | None, *, label_selector: str | None,
              field_selector: str | None, limit: int | None, token: str | None) -> ListPage:
    """The chunk of ``rt`` objects that ``limit``/``token`` ask for (no limit and no token: everything)."""
    match: Callable[[Obj], bool] = matcher(rt, label_selector, field_selector)
    ns = namespace if rt.namespaced else None
    if token:
        rv, after = decode_token(token)
        try:
            everything = store.list_at(rt.key, ns, rv)
        except TooOld as exc:
            raise E.expired(EXPIRED_MESSAGE) from exc
        items = [o for o in everything if _key(o) > after]
    else:
        items, rv = store.list(rt.key, ns)
    if not limit or limit <= 0:
        return ListPage([o for o in items if match(o)], str(rv), None, None)
    out: list[Obj] = []
    i = 0
    while i < len(items) and len(out) < limit:
        if match(items[i]):
            out.append(items[i])
        i += 1
    rest = items[i:]
    if not rest or ((label_selector or field_selector) and not any(match(o) for o in rest)):
        return ListPage(out, str(rv), None, None)
    nxt = encode_token(rv, _key(out[-1]) if out else _key(items[i - 1]))
    remaining = None if (label_selector or field_selector) else len(rest)
    return ListPage(out, str(rv), nxt, remaining)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


__all__ = ["EXPIRED_MESSAGE", "ListPage", "decode_token", "encode_token", "list_page"]
