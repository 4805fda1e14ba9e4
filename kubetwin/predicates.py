"""Where a pod (or a device) may land: node selectors, node affinity, taints and tolerations.

Why one module: the scheduler's filters, the DaemonSet controller's "should this node run a daemon pod" and
the DRA allocator's device taints and per-device node selection all answer these questions, and on a real
cluster they answer them with the same core/v1 helpers (``NodeSelector`` matching, ``Toleration.ToleratesTaint``).
Three copies had drifted apart on inputs the API server rejects; one copy cannot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["BLOCKING_EFFECTS", "node_matches_selector", "pod_affinity_matches", "tolerated", "tolerates",
           "untolerated_taint"]

BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
"""Taint effects that keep new pods (and device allocations) away; ``PreferNoSchedule`` only scores."""


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """core/v1 ``Toleration.ToleratesTaint`` (kubernetes-dra.md §3.11 for device taints): an empty effect or
    key matches any; ``Equal`` (the default) compares values, ``Exists`` ignores them."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("key") and toleration.get("key") != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Equal":
        return bool((toleration.get("value") or "") == (taint.get("value") or ""))
    return op == "Exists"


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Some toleration tolerates ``taint``."""
    return any(tolerates(t, taint) for t in tolerations)


def untolerated_taint(taints: Iterable[Mapping[str, Any]],
                      tolerations: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first ``NoSchedule``/``NoExecute`` taint no toleration tolerates (the scheduler names it), else None."""
    for taint in taints:
        if taint.get("effect") in BLOCKING_EFFECTS and not tolerated(tolerations, taint):
            return taint
    return None


def _node_field(node: Mapping[str, Any], key: str) -> str | None:
    if key == "metadata.name":
        return str((node.get("metadata") or {}).get("name", ""))
    return None


def _requirement_matches(req: Mapping[str, Any], value: str | None) -> bool:
    op = req.get("operator")
    values = req.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            v, ref = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return v > ref if op == "Gt" else v < ref
    return False


def node_matches_selector(node: Mapping[str, Any], selector: Mapping[str, Any] | None) -> bool:
    """``v1.NodeSelector`` semantics (terms ORed, requirements ANDed; an empty term matches nothing; no selector
    matches every node)."""
    if selector is None:
        return True
    labels = (node.get("metadata") or {}).get("labels") or {}
    for term in selector.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        fields_ = term.get("matchFields") or []
        if not exprs and not fields_:
            continue
        if all(_requirement_matches(r, labels.get(r.get("key"))) for r in exprs) and all(
            _requirement_matches(r, _node_field(node, str(r.get("key")))) for r in fields_
        ):
            return True
    return False


def pod_affinity_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The pod's ``nodeSelector`` labels and its required node affinity both match ``node`` (the scheduler's
    NodeAffinity filter)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    return not required or node_matches_selector(node, required)
