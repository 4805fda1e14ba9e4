"""The scheduler's DynamicResources plugin steps that need no scheduler state: which claims a pod waits for
(PreEnqueue), DRA-mapped extended resources and their special claim (kubernetes-dra.md §7), and DeviceTaintRule
taints folded into the slices the allocator sees (§1.7).

Why apart from :mod:`kubetwin.scheduler.scheduler`: that module is the scheduling loop (queue, backoff, node
filters, binding, status); these are the DRA-specific reads and objects it consults, each a pure function of
the API's current objects.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from kubetwin.api.core import Api
from kubetwin.api.resources import core
from kubetwin.scheduler.dra.allocator import Features
from kubetwin.scheduler.quantity import parse_quantity

__all__ = ["CLAIMS", "CLASSES", "EXTENDED_CLAIM_ANNOTATION", "SLICES", "TAINT_RULES", "ExtendedRequest",
           "device_classes", "extended_claim", "extended_requests", "pod_claims", "slices_with_rule_taints"]

Obj = dict[str, Any]
EXTENDED_CLAIM_ANNOTATION = "resource.kubernetes.io/extended-resource-claim"
IMPLICIT_EXTENDED_PREFIX = "deviceclass.resource.kubernetes.io/"

CLAIMS = core("resourceclaims")
SLICES = core("resourceslices")
CLASSES = core("deviceclasses")
TAINT_RULES = core("devicetaintrules")


class ExtendedRequest(NamedTuple):
    """One extended resource a container asks for that a DeviceClass serves."""

    container_index: int
    """Index into init containers followed by containers (the special claim's request names use it)."""
    container_name: str
    resource: str
    """The extended resource name as the container requests it."""
    device_class: str
    devices: int
    """How many (the request's ``count``)."""


def _meta(o: Obj) -> dict[str, Any]:
    return o.get("metadata") or {}


def pod_claims(api: Api, pod: Obj) -> list[Obj] | None:
    """PreEnqueue (kubernetes-dra.md §4.1): the pod's claims, or None while one is missing, being deleted, or
    (for a template claim) not yet owned by this pod — then the pod waits without a condition or an event."""
    ns = str(_meta(pod).get("namespace", ""))
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
    claims: list[Obj] = []
    for pc in (pod.get("spec") or {}).get("resourceClaims") or []:
        name = pc.get("resourceClaimName")
        if not name and pc.get("resourceClaimTemplateName"):
            st = statuses.get(pc.get("name"))
            if st is None:
                return None
            name = st.get("resourceClaimName")
            if not name:
                continue  # intentionally no claim
        if not name:
            continue
        claim = api.try_get(CLAIMS, ns, str(name))
        if claim is None or _meta(claim).get("deletionTimestamp"):
            return None
        if pc.get("resourceClaimTemplateName"):
            owners = _meta(claim).get("ownerReferences") or []
            if not any(o.get("uid") == _meta(pod).get("uid") and o.get("controller") for o in owners):
                return None
        claims.append(claim)
    return claims


def device_classes(api: Api) -> dict[str, Obj]:
    """DeviceClasses by name."""
    items, _ = api.list(CLASSES)
    return {str(_meta(c).get("name")): c for c in items}


def extended_requests(pod: Obj, classes: dict[str, Obj], features: Features) -> list[ExtendedRequest]:
    """(container index, container name, resource, class, count) for DRA-mapped extended resources
    (kubernetes-dra.md §7); the newest class wins a name, ties by smaller class name."""
    if not features.extended_resource:
        return []
    by_name: dict[str, Obj] = {}
    for c in sorted(classes.values(), key=lambda c: str(_meta(c).get("name"))):
        ern = (c.get("spec") or {}).get("extendedResourceName")
        if not ern:
            continue
        cur = by_name.get(ern)
        if cur is None or str(_meta(c).get("creationTimestamp", "")) > str(_meta(cur).get("creationTimestamp", "")):
            by_name[ern] = c
    out: list[ExtendedRequest] = []
    spec = pod.get("spec") or {}
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    for i, c in enumerate(containers):
        res = c.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for rname in sorted(merged):
            cls_name: str | None = None
            if rname.startswith(IMPLICIT_EXTENDED_PREFIX) and rname[len(IMPLICIT_EXTENDED_PREFIX):] in classes:
                cls_name = rname[len(IMPLICIT_EXTENDED_PREFIX):]
            elif rname in by_name:
                cls_name = str(_meta(by_name[rname]).get("name"))
            if cls_name is not None:
                out.append(ExtendedRequest(i, str(c.get("name")), rname, cls_name,
                                           int(parse_quantity(str(merged[rname])))))
    return out


def slices_with_rule_taints(api: Api, features: Features) -> list[Obj]:
    """Slices with DeviceTaintRule taints applied as if they were in the slice (§1.7); the rules are
    served from 1.37 (v1), earlier only with off-by-default beta/alpha APIs."""
    slices, _ = api.list(SLICES)
    if not features.device_taints or features.minor < 37:
        return slices
    rules, _ = api.list(TAINT_RULES)
    rules = [r for r in rules if (r.get("spec") or {}).get("deviceSelector") is not None]
    if not rules:
        return slices
    out = []
    for sl in slices:
        sp = sl.get("spec") or {}
        changed = False
        devices = []
        for d in sp.get("devices") or []:
            extra = []
            for r in rules:
                sel = r["spec"]["deviceSelector"]
                if all(sel.get(k) in (None, v) for k, v in (("driver", sp.get("driver")),
                                                             ("pool", (sp.get("pool") or {}).get("name")),
                                                             ("device", d.get("name")))):
                    extra.append(dict(r["spec"].get("taint") or {}))
            if extra:
                d = {**d, "taints": [*(d.get("taints") or []), *extra]}
                changed = True
            devices.append(d)
        if changed:
            sl = {**sl, "metadata": {**(sl.get("metadata") or {}), "resourceVersion": ""},
                  "spec": {**sp, "devices": devices}}
        out.append(sl)
    return out


def extended_claim(pod: Obj, reqs: list[ExtendedRequest]) -> Obj:
    """The special claim that serves a pod's DRA-mapped extended resources on one node (kubernetes-dra.md §7);
    created at PreBind with a generated name. ``_requestMappings`` is for the pod status, not the API."""
    per_container: dict[int, int] = {}
    requests = []
    mappings = []
    for ci, cname, rname, cls, count in reqs:
        j = per_container.get(ci, 0)
        per_container[ci] = j + 1
        rq = f"container-{ci}-request-{j}"
        requests.append({"name": rq, "exactly": {"deviceClassName": cls, "allocationMode": "ExactCount",
                                                  "count": count}})
        mappings.append({"containerName": cname, "resourceName": rname, "requestName": rq})
    requests.sort(key=lambda r: str(r["name"]))
    md = _meta(pod)
    return {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "<extended-resources>", "namespace": md.get("namespace"),
                     "generateName": f"{md.get('name')}-extended-resources-",
                     "annotations": {EXTENDED_CLAIM_ANNOTATION: "true"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": md.get("name"),
                                          "uid": md.get("uid"), "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"devices": {"requests": requests}},
        "_requestMappings": mappings,
    }
