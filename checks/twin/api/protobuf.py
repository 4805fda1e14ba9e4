"""Decode the few Kubernetes protobuf request bodies real clients send to the twin.

client-go based tools ask for protobuf for built-in kinds; most send JSON anyway, but helm's release storage
writes its ``Secret`` (and, with the configmap driver, ``ConfigMap``) bodies as
``application/vnd.kubernetes.protobuf``. The twin answers in JSON (clients decode by the response's
Content-Type) and decodes only these request kinds; anything else gets ``415`` as from a server without
that serializer. Field numbers follow ``k8s.io/api/core/v1/generated.proto`` and
``k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto``.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"k8s\x00"

Obj = dict[str, Any]


class ProtobufError(ValueError):
    """The body is not a protobuf-encoded object the twin can read."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited; fixed widths skipped."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            yield num, v
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated field")
            yield num, buf[i:i + n]
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")


def _s(v: int | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _map(entry: int | bytes, value: Callable[[bytes], Any]) -> tuple[str, Any]:
    assert isinstance(entry, bytes)
    k, val = "", value(b"")
    for n, v in fields(entry):
        if n == 1:
            k = _s(v)
        elif n == 2 and isinstance(v, bytes):
            val = value(v)
    return k, val


def _time(buf: int | bytes) -> str:
    assert isinstance(buf, bytes)
    secs = 0
    for n, v in fields(buf):
        if n == 1 and isinstance(v, int):
            secs = v
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_ref(buf: bytes) -> Obj:
    names = {1: "kind", 3: "name", 4: "uid", 5: "apiVersion"}
    out: Obj = {}
    for n, v in fields(buf):
        if n in names:
            out[names[n]] = _s(v)
        elif n == 6:
            out["controller"] = bool(v)
        elif n == 7:
            out["blockOwnerDeletion"] = bool(v)
    return out


def object_meta(buf: bytes) -> Obj:
    """``ObjectMeta`` (managedFields are dropped: the server recomputes them)."""
    strings = {1: "name", 2: "generateName", 3: "namespace", 4: "selfLink", 5: "uid", 6: "resourceVersion"}
    out: Obj = {}
    for n, v in fields(buf):
        if n in strings:
            out[strings[n]] = _s(v)
        elif n == 7:
            out["generation"] = v
        elif n in (8, 9):
            out["creationTimestamp" if n == 8 else "deletionTimestamp"] = _time(v)
        elif n == 10:
            out["deletionGracePeriodSeconds"] = v
        elif n in (11, 12):
            k, val = _map(v, lambda b: b.decode())
            out.setdefault("labels" if n == 11 else "annotations", {})[k] = val
        elif n == 13 and isinstance(v, bytes):
            out.setdefault("ownerReferences", []).append(_owner_ref(v))
        elif n == 14:
            out.setdefault("finalizers", []).append(_s(v))
    return out


def _secret(buf: bytes) -> Obj:
    out: Obj = {}
    for n, v in fields(buf):
        if n == 1 and isinstance(v, bytes):
            out["metadata"] = object_meta(v)
        elif n == 2:
            k, val = _map(v, lambda b: base64.b64encode(b).decode())
            out.setdefault("data", {})[k] = val
        elif n == 3:
            out["type"] = _s(v)
        elif n == 4:
            k, val = _map(v, lambda b: b.decode())
            out.setdefault("stringData", {})[k] = val
        elif n == 5:
            out["immutable"] = bool(v)
    return out


def _configmap(buf: bytes) -> Obj:
    out: Obj = {}
    for n, v in fields(buf):
        if n == 1 and isinstance(v, bytes):
            out["metadata"] = object_meta(v)
        elif n == 2:
            k, val = _map(v, lambda b: b.decode())
            out.setdefault("data", {})[k] = val
        elif n == 3:
            k, val = _map(v, lambda b: base64.b64encode(b).decode())
            out.setdefault("binaryData", {})[k] = val
        elif n == 4:
            out["immutable"] = bool(v)
    return out


def _delete_options(buf: bytes) -> Obj:
    out: Obj = {}
    for n, v in fields(buf):
        if n == 1:
            out["gracePeriodSeconds"] = v
        elif n == 4:
            out["propagationPolicy"] = _s(v)
        elif n == 5:
            out.setdefault("dryRun", []).append(_s(v))
    return out


DECODERS: dict[tuple[str, str], Callable[[bytes], Obj]] = {
    ("v1", "Secret"): _secret,
    ("v1", "ConfigMap"): _configmap,
    ("v1", "DeleteOptions"): _delete_options,
    ("meta.k8s.io/v1", "DeleteOptions"): _delete_options,
}
"""(apiVersion, kind) → decoder of the ``raw`` message; a registry so adding a kind is one entry."""


def decode(body: bytes) -> Obj:
    """A protobuf-encoded object (``k8s\\x00`` + ``runtime.Unknown``) as its JSON dict."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for n, v in fields(body[len(MAGIC):]):
        if n == 1 and isinstance(v, bytes):
            for tn, tv in fields(v):
                if tn == 1:
                    api_version = _s(tv)
                elif tn == 2:
                    kind = _s(tv)
        elif n == 2 and isinstance(v, bytes):
            raw = v
    dec = DECODERS.get((api_version, kind))
    if dec is None:
        raise ProtobufError(f"no protobuf decoder for {api_version}/{kind}")
    out = dec(raw)
    if kind != "DeleteOptions":
        out["apiVersion"], out["kind"] = api_version, kind
    return out
