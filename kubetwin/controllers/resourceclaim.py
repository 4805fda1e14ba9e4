"""The resourceclaim controller of kube-controller-manager, for the twin (kubernetes-dra.md §5).

Why: template claims, ``pod.status.resourceClaimStatuses``, reservation cleanup and deallocation are what
let a DRA workload start and free its devices; checks observe the generated names, annotations, owner
references and the order of writes, so they must match the real controller.

It reconciles on every pod or claim event with a full pass (the twin's scale makes that cheap):

* pods (not being deleted): create missing claims from templates (``<pod>-<claim>-<5 chars>``, controller
  ownerReference, annotation ``resource.kubernetes.io/pod-claim-name``), write
  ``status.resourceClaimStatuses``; for bound pods add a missing reservation on allocated claims;
* claims: drop ``reservedFor`` entries of pods that are gone, replaced, finished, or deleted while never
  scheduled; when that empties ``reservedFor`` clear the allocation in the same status update and then
  remove the ``delete-protection`` finalizer; release deleting claims without consumers; delete
  generated claims whose pod is gone or done.

Entry points: ``ResourceClaimController(api).start()`` / ``.stop()``; ``sync_all()`` runs one pass.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from kubetwin.api.core import Api
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from kubetwin.passloop import PassLoop

__all__ = ["POD_CLAIM_ANNOTATION", "ResourceClaimController", "generate_name"]

Obj = dict[str, Any]
POD_CLAIM_ANNOTATION = "resource.kubernetes.io/pod-claim-name"
DELETE_PROTECTION = "resource.kubernetes.io/delete-protection"
_COMPONENT = "resource_claim"

PODS = core("pods")
CLAIMS = core("resourceclaims")
TEMPLATES = core("resourceclaimtemplates")


def _meta(o: Obj) -> dict[str, Any]:
    return o.get("metadata") or {}


def generate_name(pod_name: str, claim_name: str) -> str:
    """``generateName`` for a claim from a template, truncated proportionally past 57 chars (§5)."""
    base = f"{pod_name}-{claim_name}-"
    if len(base) <= 57:
        return base
    return pod_name[: len(pod_name) * 57 // len(base)] + "-" + claim_name[: len(claim_name) * 57 // len(base)]


def _pod_done(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _owner_pod_uid(claim: Obj) -> str | None:
    for o in _meta(claim).get("ownerReferences") or []:
        if o.get("kind") == "Pod" and o.get("apiVersion") == "v1" and o.get("controller"):
            return str(o.get("uid"))
    return None


class ResourceClaimController:
    """See module docstring."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._loop = PassLoop(api, "resourceclaim-controller", (PODS, CLAIMS), self.sync_all, error_delay_s=0.2)
        self._lock = threading.Lock()

    def start(self) -> list[threading.Thread]:
        return self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    # -- reconcile -------------------------------------------------------------------------------------

    def sync_all(self) -> None:
        # The store's own objects, uncopied: a full pass over a thousand pods must not deep-copy each one
        # (the sync functions only read them and copy before any change).
        with self._lock:
            pods, _ = self.api.list(PODS, copy_objects=False)
            for pod in pods:
                self._sync_pod(pod)
            claims, _ = self.api.list(CLAIMS, copy_objects=False)
            for claim in claims:
                self._sync_claim(claim)

    def _sync_pod(self, pod: Obj) -> None:
        md = _meta(pod)
        if md.get("deletionTimestamp") or _pod_done(pod):
            return
        ns = str(md.get("namespace"))
        statuses = list((pod.get("status") or {}).get("resourceClaimStatuses") or [])
        by_name = {s.get("name"): s for s in statuses}
        changed = False
        for pc in (pod.get("spec") or {}).get("resourceClaims") or []:
            tmpl = pc.get("resourceClaimTemplateName")
            if not tmpl:
                continue
            recorded = by_name.get(pc.get("name"))
            if recorded and recorded.get("resourceClaimName"):
                existing = self.api.try_get(CLAIMS, ns, str(recorded["resourceClaimName"]))
                if existing is not None and _owner_pod_uid(existing) == md.get("uid"):
                    continue
            claim_name = self._find_or_create(pod, str(pc.get("name")), str(tmpl))
            if claim_name is None:
                continue
            entry = {"name": pc.get("name"), "resourceClaimName": claim_name}
            if recorded is None:
                statuses.append(entry)
            else:
                statuses[statuses.index(recorded)] = entry
            changed = True
        if changed:
            self._write_pod_statuses(pod, statuses)
        if (pod.get("spec") or {}).get("nodeName"):
            self._reserve_for_bound_pod(pod, {s.get("name"): s for s in statuses})

    def _find_or_create(self, pod: Obj, pod_claim: str, template: str) -> str | None:
        md = _meta(pod)
        ns = str(md.get("namespace"))
        claims, _ = self.api.list(CLAIMS, ns, copy_objects=False)
        for c in claims:
            if _owner_pod_uid(c) == md.get("uid") and (_meta(c).get("annotations") or {}).get(
                    POD_CLAIM_ANNOTATION) == pod_claim:
                return str(_meta(c).get("name"))
        tmpl = self.api.try_get(TEMPLATES, ns, template)
        if tmpl is None:
            self.api.record_event(
                pod, "FailedResourceClaimCreation",
                f'PodResourceClaim {pod_claim}: resource claim template "{template}": '
                f'resourceclaimtemplate.resource.k8s.io "{template}" not found',
                type="Warning", component=_COMPONENT)
            return None
        tspec = tmpl.get("spec") or {}
        tmeta = tspec.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[POD_CLAIM_ANNOTATION] = pod_claim
        body: Obj = {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {
                "generateName": generate_name(str(md.get("name")), pod_claim),
                "namespace": ns,
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": md.get("name"), "uid": md.get("uid"),
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": copy.deepcopy(tspec.get("spec") or {}),
        }
        if tmeta.get("labels"):
            body["metadata"]["labels"] = dict(tmeta["labels"])
        try:
            created = self.api.create(CLAIMS, ns, body)
        except ApiError as e:
            self.api.record_event(pod, "FailedResourceClaimCreation", f"PodResourceClaim {pod_claim}: {e.message}",
                                  type="Warning", component=_COMPONENT)
            return None
        return str(_meta(created).get("name"))

    def _write_pod_statuses(self, pod: Obj, statuses: list[Obj]) -> None:
        ns, name = str(_meta(pod).get("namespace")), str(_meta(pod).get("name"))
        for _ in range(5):
            cur = self.api.try_get(PODS, ns, name)
            if cur is None or _meta(cur).get("uid") != _meta(pod).get("uid"):
                return
            st = copy.deepcopy(cur.get("status") or {})
            st["resourceClaimStatuses"] = statuses
            cur["status"] = st
            try:
                self.api.update(PODS, ns, name, cur, subresource="status", field_manager="ResourceClaimController")
                return
            except ApiError as e:
                if e.code != 409:
                    return

    def _reserve_for_bound_pod(self, pod: Obj, statuses: dict[Any, Obj]) -> None:
        md = _meta(pod)
        ns = str(md.get("namespace"))
        names = []
        for pc in (pod.get("spec") or {}).get("resourceClaims") or []:
            n = pc.get("resourceClaimName") or (statuses.get(pc.get("name")) or {}).get("resourceClaimName")
            if n:
                names.append(str(n))
        ext = ((pod.get("status") or {}).get("extendedResourceClaimStatus") or {}).get("resourceClaimName")
        if ext:
            names.append(str(ext))
        for n in names:
            claim = self.api.try_get(CLAIMS, ns, n)
            if claim is None or _meta(claim).get("deletionTimestamp"):
                continue
            st = claim.get("status") or {}
            if not st.get("allocation") or any(r.get("uid") == md.get("uid") for r in st.get("reservedFor") or []):
                continue
            st = copy.deepcopy(st)
            st["reservedFor"] = [*(st.get("reservedFor") or []),
                                 {"resource": "pods", "name": md.get("name"), "uid": md.get("uid")}]
            claim["status"] = st
            try:
                self.api.update(CLAIMS, ns, n, claim, subresource="status")
            except ApiError:
                continue

    def _consumer_gone(self, ns: str, ref: Obj) -> bool:
        if ref.get("resource") != "pods" or ref.get("apiGroup"):
            return False
        pod = self.api.try_get(PODS, ns, str(ref.get("name")))
        if pod is None or _meta(pod).get("uid") != ref.get("uid"):
            return True
        if _pod_done(pod):
            return True
        return bool(_meta(pod).get("deletionTimestamp")) and not (pod.get("spec") or {}).get("nodeName")

    def _sync_claim(self, claim: Obj) -> None:
        md = _meta(claim)
        ns, name = str(md.get("namespace")), str(md.get("name"))
        st = claim.get("status") or {}
        reserved = list(st.get("reservedFor") or [])
        keep = [r for r in reserved if not self._consumer_gone(ns, r)]
        has_fin = DELETE_PROTECTION in (md.get("finalizers") or [])
        deleting = bool(md.get("deletionTimestamp"))
        release = has_fin and not keep and ((len(keep) != len(reserved)) or deleting)
        if len(keep) != len(reserved) or (release and st.get("allocation")):
            new_st = copy.deepcopy(st)
            if keep:
                new_st["reservedFor"] = keep
            else:
                new_st.pop("reservedFor", None)
            if release:
                new_st.pop("allocation", None)
            claim = copy.deepcopy(claim)
            claim["status"] = new_st
            try:
                claim = self.api.update(CLAIMS, ns, name, claim, subresource="status")
            except ApiError:
                return
        if release and DELETE_PROTECTION in (_meta(claim).get("finalizers") or []):
            claim = copy.deepcopy(claim)
            claim["metadata"]["finalizers"] = [f for f in claim["metadata"]["finalizers"] if f != DELETE_PROTECTION]
            try:
                claim = self.api.update(CLAIMS, ns, name, claim)
            except ApiError:
                return
        owner = _owner_pod_uid(claim)
        if owner is None or keep or _meta(claim).get("deletionTimestamp"):
            return
        pod_name = next((o.get("name") for o in md.get("ownerReferences") or [] if o.get("uid") == owner), None)
        pod = self.api.try_get(PODS, ns, str(pod_name)) if pod_name else None
        if pod is None or _meta(pod).get("uid") != owner or _pod_done(pod):
            try:
                self.api.delete(CLAIMS, ns, name)
            except ApiError:
                return
