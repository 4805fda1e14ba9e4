"""Label and field selectors as the apiserver parses them (kubernetes-dra.md §8.5).

Parse errors are ``400 BadRequest`` like a real server, so a typo in a check's selector fails loudly on the
twin exactly as it would on a cluster instead of silently matching everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetwin.api.errors import ApiError, bad_request
from kubetwin.api.resources import ResourceType

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


@dataclass(frozen=True)
class Requirement:
    """One clause: ``key op values``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        val = labels.get(self.key)
        if self.op == "=":
            return has and val == self.values[0]
        if self.op == "!=":
            return not has or val != self.values[0]
        if self.op == "in":
            return has and val in self.values
        if self.op == "notin":
            return not has or val not in self.values
        if self.op == "exists":
            return has
        return not has  # "!"


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for clause in _split_top(text):
        m = re.fullmatch(rf"(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<vals>[^)]*)\)", clause)
        if m:
            values = tuple(v.strip() for v in m.group("vals").split(",") if v.strip())
            reqs.append(Requirement(m.group("key"), m.group("op"), values))
            continue
        m = re.fullmatch(rf"(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<val>{_VALUE})", clause)
        if m:
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append(Requirement(m.group("key"), op, (m.group("val"),)))
            continue
        m = re.fullmatch(rf"!\s*({_KEY})", clause)
        if m:
            reqs.append(Requirement(m.group(1), "!"))
            continue
        m = re.fullmatch(rf"({_KEY})", clause)
        if m:
            reqs.append(Requirement(m.group(1), "exists"))
            continue
        raise bad_request(f"unable to parse requirement: {clause!r}")
    return reqs


def labels_match(reqs: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``) select these labels?

    An empty selector selects everything. What a *missing* selector means differs by field (a controller's
    selects nothing, a webhook's ``objectSelector`` everything), so callers decide that before calling.
    Unknown operators are left to validation and select as if absent.
    """
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        has = key in labels
        if (op == "In" and not (has and labels[key] in vals)) or (op == "NotIn" and has and labels[key] in vals) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def selector_from_match_labels(match_labels: dict[str, str] | None,
                               match_expressions: list[dict[str, Any]] | None = None) -> list[Requirement]:
    """A ``metav1.LabelSelector`` as requirements (used by controllers)."""
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((match_labels or {}).items())]
    op_map = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in match_expressions or []:
        reqs.append(Requirement(expr["key"], op_map[expr["operator"]], tuple(expr.get("values") or ())))
    return reqs


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


def parse_field_selector(rt: ResourceType, text: str | None) -> list[FieldRequirement]:
    if not text:
        return []
    reqs = []
    for clause in _split_top(text):
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*)", clause)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{clause}'")
        fname, op, value = m.group(1), m.group(2), m.group(3)
        probe: dict[str, Any] = {"metadata": {}}
        if rt.field_value(probe, fname) is None:
            raise ApiError(400, "BadRequest",
                           f'field label not supported: {fname}' if rt.group == "" else
                           f'"{fname}" is not a known field selector: only "metadata.name", '
                           f'"metadata.namespace"')
        reqs.append(FieldRequirement(fname, "!=" if op == "!=" else "=", value))
    return reqs


def fields_match(rt: ResourceType, reqs: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    for r in reqs:
        val = rt.field_value(obj, r.field) or ""
        if (val == r.value) != (r.op == "="):
            return False
    return True


def matcher(rt: ResourceType, label_selector: str | None,
            field_selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """One predicate for both selectors; parse errors raise 400 before any data is read."""
    lreqs = parse_label_selector(label_selector)
    freqs = parse_field_selector(rt, field_selector)
    if not lreqs and not freqs:
        return lambda _obj: True
    return lambda obj: labels_match(lreqs, obj) and fields_match(rt, freqs, obj)
