"""ReplicaSet and Deployment controllers: a Deployment owns ReplicaSets named ``<deploy>-<pod-template-hash>``,
each ReplicaSet keeps its pods.

They keep the status fields ``kubectl get``/``rollout status``/``wait`` read and emit the real controllers' events
(``SuccessfulCreate``, ``SuccessfulDelete``, ``ScalingReplicaSet``). Simplifications are listed in
docs/twin-fidelity.md ("Controllers and kubelet").
"""

from __future__ import annotations

import copy
from typing import Any

from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from kubetwin.controllers.base import (
    Controller,
    SharedInformers,
    delete_if_present,
    owned_by,
    owner_ref,
    pod_active,
    pod_from_template,
    pod_ready,
    resolve_int_or_percent,
    template_hash,
    write_status,
)

__all__ = ["DeploymentController", "ReplicaSetController"]

Obj = dict[str, Any]
PODS = core("pods")
RS = core("replicasets")
DEPLOY = core("deployments")


class ReplicaSetController(Controller):
    """Keeps ``replicas`` active pods from the template (not-ready and newest deleted first)."""

    name = "replicaset-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(RS).add_handler(self.enqueue_obj)
        informers.get(PODS).add_handler(self.enqueue_owner("ReplicaSet"))

    def sync(self, key: Any) -> None:
        ns, name = key
        rs = self.live(RS, key)
        if rs is None:
            return
        if not self.expectations_met(key, self.informers.get(PODS)):
            return
        pods = [p for p in self.informers.get(PODS).list(ns) if owned_by(p, rs)]
        active = [p for p in pods if pod_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        if len(active) < want:
            for _ in range(want - len(active)):
                pod = pod_from_template(rs, rs["spec"]["template"], generate_name=f"{name}-")
                created = self.api.create(PODS, ns, pod)
                self.expect(key, "create", ns, created["metadata"]["name"])
                self.api.record_event(rs, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                      component="replicaset-controller")
        elif len(active) > want:
            # Delete not-ready / newest first (the real ranking, roughly).
            victims = sorted(active, key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]),
                             reverse=False)[: len(active) - want]
            for p in victims:
                self.expect(key, "delete", ns, p["metadata"]["name"])
                delete_if_present(self.api, PODS, ns, p["metadata"]["name"])
                self.api.record_event(rs, "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                                      component="replicaset-controller")
        ready = sum(1 for p in active if pod_ready(p))
        labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        status: Obj = {"replicas": len(active),
                       "fullyLabeledReplicas": sum(1 for p in active if all(
                           (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
                       "readyReplicas": ready, "availableReplicas": ready,
                       "terminatingReplicas": sum(1 for p in pods if p["metadata"].get("deletionTimestamp")),
                       "observedGeneration": rs["metadata"].get("generation", 1)}
        for k in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas", "terminatingReplicas"):
            if not status[k]:
                del status[k]
        write_status(self.api, RS, rs, status)


class DeploymentController(Controller):
    """Deployment → ReplicaSets named ``<deploy>-<pod-template-hash>``; RollingUpdate and Recreate."""

    name = "deployment-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(DEPLOY).add_handler(self.enqueue_obj)
        informers.get(RS).add_handler(self.enqueue_owner("Deployment"))

    def sync(self, key: Any) -> None:
        ns, name = key
        d = self.live(DEPLOY, key)
        if d is None:
            return
        spec = d["spec"]
        want = int(spec.get("replicas", 1))
        template = spec["template"]
        h = template_hash(template)
        owned = [r for r in self.informers.get(RS).list(ns) if owned_by(r, d)]
        new = next((r for r in owned if (r["metadata"].get("labels") or {}).get("pod-template-hash") == h), None)
        revisions = [int((r["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
                     for r in owned]
        if new is None:
            rev = str(max(revisions, default=0) + 1)
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            sel = copy.deepcopy(spec.get("selector") or {})
            sel.setdefault("matchLabels", {})["pod-template-hash"] = h
            body = {"metadata": {"name": f"{name}-{h}", "namespace": ns,
                                 "labels": dict(tmpl["metadata"]["labels"]),
                                 "annotations": {"deployment.kubernetes.io/desired-replicas": str(want),
                                                 "deployment.kubernetes.io/max-replicas": str(want),
                                                 "deployment.kubernetes.io/revision": rev},
                                 "ownerReferences": [owner_ref(d)]},
                    "spec": {"replicas": 0, "selector": sel, "template": tmpl,
                             "minReadySeconds": spec.get("minReadySeconds", 0)}}
            try:
                new = self.api.create(RS, ns, body)
            except ApiError as exc:
                if exc.code != 409:
                    raise
                new = self.api.get(RS, ns, f"{name}-{h}")
            if (d["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") != rev:
                self.api.patch(DEPLOY, ns, name, "application/merge-patch+json",
                               {"metadata": {"annotations": {"deployment.kubernetes.io/revision": rev}}})
        old = [r for r in owned if r["metadata"]["uid"] != new["metadata"]["uid"]]
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            for r in old:
                if int(r["spec"].get("replicas", 0)):
                    self._scale(d, r, 0)
            if any(int((r.get("status") or {}).get("replicas", 0)) for r in old):
                return self._status(d, new, old)
            if int(new["spec"].get("replicas", 0)) != want:
                self._scale(d, new, want)
            return self._status(d, new, old)
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), want, round_up=True)
        unavail = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), want, round_up=False)
        if surge == 0 and unavail == 0:
            unavail = 1
        new_n = int(new["spec"].get("replicas", 0))
        total = new_n + sum(int(r["spec"].get("replicas", 0)) for r in old)
        if new_n > want:
            self._scale(d, new, want)
            new_n = want
        elif new_n < want:
            room = want + surge - total
            if room > 0 or not old:
                target = min(want, new_n + max(room, 0)) if old else want
                if target != new_n:
                    self._scale(d, new, target)
                    new_n = target
        # Scale old down as far as availability allows.
        avail = sum(int((r.get("status") or {}).get("availableReplicas", 0)) for r in [new, *old])
        min_avail = want - unavail
        budget = max(0, avail - min_avail)
        for r in sorted(old, key=lambda r: r["metadata"]["creationTimestamp"]):
            cur = int(r["spec"].get("replicas", 0))
            unavailable_old = cur - int((r.get("status") or {}).get("availableReplicas", 0))
            cut = min(cur, budget + max(0, unavailable_old))
            if cut > 0:
                self._scale(d, r, cur - cut)
                budget = max(0, budget - cut)
        self._status(d, new, old)

    def _scale(self, d: Obj, rs: Obj, to: int) -> None:
        frm = int(rs["spec"].get("replicas", 0))
        if frm == to:
            return
        body = {"spec": {"replicas": to},
                "metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas":
                                             str(d["spec"].get("replicas", 1))}}}
        self.api.patch(RS, rs["metadata"]["namespace"], rs["metadata"]["name"], "application/merge-patch+json", body)
        verb = "up" if to > frm else "down"
        self.api.record_event(d, "ScalingReplicaSet",
                              f"Scaled {verb} replica set {rs['metadata']['name']} from {frm} to {to}",
                              component="deployment-controller")

    def _status(self, d: Obj, new: Obj, old: list[Obj]) -> None:
        rss = [self.informers.get(RS).get(r["metadata"]["namespace"], r["metadata"]["name"]) or r
               for r in [new, *old]]
        st = [r.get("status") or {} for r in rss]
        want = int(d["spec"].get("replicas", 1))
        replicas = sum(int(s.get("replicas", 0)) for s in st)
        ready = sum(int(s.get("readyReplicas", 0)) for s in st)
        avail = sum(int(s.get("availableReplicas", 0)) for s in st)
        updated = int((rss[0].get("status") or {}).get("replicas", 0))
        now = self.api.now()
        prev = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}

        def cond(t: str, ok: bool, reason: str, msg: str) -> Obj:
            s = "True" if ok else "False"
            p = prev.get(t)
            ltt = p["lastTransitionTime"] if p and p["status"] == s else now
            lut = p["lastUpdateTime"] if p and p["status"] == s and p.get("reason") == reason else now
            return {"type": t, "status": s, "lastUpdateTime": lut, "lastTransitionTime": ltt, "reason": reason,
                    "message": msg}

        unav = resolve_int_or_percent(((d["spec"].get("strategy") or {}).get("rollingUpdate") or {})
                                      .get("maxUnavailable", "25%"), want, round_up=False)
        available = avail >= want - unav
        complete = updated == want and avail >= want and replicas == want
        rsname = new["metadata"]["name"]
        conds = [cond("Available", available, "MinimumReplicasAvailable" if available else
                      "MinimumReplicasUnavailable", "Deployment has minimum availability." if available else
                      "Deployment does not have minimum availability."),
                 cond("Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                      f'ReplicaSet "{rsname}" has successfully progressed.' if complete else
                      f'ReplicaSet "{rsname}" is progressing.')]
        status: Obj = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": replicas,
                       "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": avail,
                       "unavailableReplicas": max(0, want - avail), "conditions": conds}
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not status[k]:
                del status[k]
        write_status(self.api, DEPLOY, d, status)
