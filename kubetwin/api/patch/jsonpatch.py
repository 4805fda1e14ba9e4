"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386), and the error every patch algorithm raises.

Pure functions over decoded JSON (inputs never mutated), as the package docstring says."""

from __future__ import annotations

import copy
from typing import Any

JSON = Any
"""A JSON value as decoded by :mod:`json`."""

MISSING: Any = object()


class PatchError(Exception):
    """A patch that cannot be decoded (``code`` 400) or applied (``code`` 422).

    The caller turns it into a ``Status`` with that code; the message follows the apiserver's wording.
    """

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'JSON pointer "{path}" must start with "/"', 400)
    return [_unescape(t) for t in path[1:].split("/")]


def _list_index(tokens: list[str], token: str, size: int, *, allow_end: bool, op: str, path: str) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{op} operation does not apply: doc is missing path: \"{path}\": invalid index "
                         f"{token!r}")
    idx = int(token)
    limit = size if allow_end else size - 1
    if idx > limit:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": '
                         f"index out of range: {idx}")
    return idx


def _parent(doc: JSON, tokens: list[str], op: str, path: str) -> JSON:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    if not isinstance(cur, dict | list):
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return cur


def _get(doc: JSON, path: str, op: str) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
        return parent[last]
    return parent[_list_index(tokens, last, len(parent), allow_end=False, op=op, path=path)]


def _add(doc: JSON, path: str, value: JSON, op: str = "add") -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_list_index(tokens, last, len(parent), allow_end=True, op=op, path=path), value)
    return doc


def _remove(doc: JSON, path: str, op: str = "remove") -> JSON:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
        del parent[last]
    else:
        del parent[_list_index(tokens, last, len(parent), allow_end=False, op=op, path=path)]
    return doc


def json_patch(obj: JSON, ops: JSON) -> JSON:
    """Apply an RFC 6902 patch (``application/json-patch+json``) and return the new document.

    A body that is not a list of operations is a decode error (400); an operation that does not apply
    (missing path, failed ``test``) is 422, as in the apiserver's ``applyJSPatch``.
    """
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400)
    doc = copy.deepcopy(obj)
    for raw in ops:
        if not isinstance(raw, dict) or "op" not in raw:
            raise PatchError("unexpected kind: missing op", 400)
        op = raw["op"]
        if op not in ("add", "remove", "replace", "move", "copy", "test"):
            raise PatchError(f"Unexpected kind: {op}", 400)
        path = raw.get("path")
        if not isinstance(path, str):
            raise PatchError(f"{op} operation does not apply: missing path", 400)
        if op in ("add", "replace", "test") and "value" not in raw:
            raise PatchError(f"{op} operation does not apply: missing value", 400)
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(raw["value"]))
        elif op == "remove":
            doc = _remove(doc, path)
        elif op == "replace":
            _get(doc, path, "replace")
            tokens = _pointer(path)
            if not tokens:
                doc = copy.deepcopy(raw["value"])
            else:
                parent = _parent(doc, tokens, "replace", path)
                if isinstance(parent, dict):
                    parent[tokens[-1]] = copy.deepcopy(raw["value"])
                else:
                    parent[int(tokens[-1])] = copy.deepcopy(raw["value"])
        elif op == "test":
            try:
                current = _get(doc, path, "test")
            except PatchError:
                current = MISSING
            if current is MISSING or not json_equal(current, raw["value"]):
                raise PatchError(f"testing value {path} failed: test failed")
        else:  # move / copy
            src = raw.get("from")
            if not isinstance(src, str):
                raise PatchError(f"{op} operation does not apply: missing from path", 400)
            value = copy.deepcopy(_get(doc, src, op))
            if op == "move":
                if path.startswith(src + "/"):
                    raise PatchError(f'move operation does not apply: cannot move "{src}" into its own '
                                     f'child "{path}"')
                doc = _remove(doc, src, op)
            doc = _add(doc, path, value, op)
    return doc


def json_equal(a: JSON, b: JSON) -> bool:
    """JSON equality: ``1 == 1.0`` but ``True != 1`` (bools are not numbers in JSON)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float))) and a == b


# ---------------------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


def merge_patch(obj: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out: dict[str, Any] = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


