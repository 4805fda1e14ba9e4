"""ReplicaSet, Deployment, DaemonSet and Job controllers — the behaviour the specs and the driver's chart need.

Each keeps the status fields ``kubectl get``/``rollout status``/``wait`` read and emits the events the real
controllers emit (``SuccessfulCreate``, ``SuccessfulDelete``, ``ScalingReplicaSet``, ``Completed``,
``BackoffLimitExceeded``). Simplifications are listed in docs/twin-fidelity.md ("Controllers and kubelet").
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubetwin.api.errors import ApiError
from kubetwin.api.resources import ResourceType, core
from kubetwin.controllers.base import (
    Controller,
    SharedInformers,
    fnv32a,
    match_selector,
    owned_by,
    owner_ref,
    pod_active,
    pod_from_template,
    pod_ready,
    resolve_int_or_percent,
    safe_encode,
)
from kubetwin.predicates import pod_affinity_matches, untolerated_taint

Obj = dict[str, Any]
PODS = core("pods")
NODES = core("nodes")
RS = core("replicasets")
DEPLOY = core("deployments")
DS = core("daemonsets")
JOBS = core("jobs")
REVISIONS = core("controllerrevisions")


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A pod-template-hash in the real alphabet (fnv32a over the template, SafeEncodeString)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(fnv32a(data))


def _write_status(api: Any, rt: ResourceType, obj: Obj, status: Obj) -> None:
    if obj.get("status") == status:
        return
    body = copy.deepcopy(obj)
    body["status"] = status
    try:
        api.update(rt, obj["metadata"]["namespace"], obj["metadata"]["name"], body, subresource="status")
    except ApiError as exc:
        if exc.code not in (404, 409):
            raise


class ReplicaSetController(Controller):
    name = "replicaset-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(RS).add_handler(self.enqueue_obj)
        informers.get(PODS).add_handler(self.enqueue_owner("ReplicaSet"))

    def sync(self, key: Any) -> None:
        ns, name = key
        rs = self.informers.get(RS).get(ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
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
                try:
                    self.api.delete(PODS, ns, p["metadata"]["name"])
                except ApiError as exc:
                    if exc.code != 404:
                        raise
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
        _write_status(self.api, RS, rs, status)


class DeploymentController(Controller):
    """Deployment → ReplicaSets named ``<deploy>-<pod-template-hash>``; RollingUpdate and Recreate."""

    name = "deployment-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(DEPLOY).add_handler(self.enqueue_obj)
        informers.get(RS).add_handler(self.enqueue_owner("Deployment"))

    def sync(self, key: Any) -> None:
        ns, name = key
        d = self.informers.get(DEPLOY).get(ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
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
        _write_status(self.api, DEPLOY, d, status)


def _runs_daemon_pod(pod_spec: Obj, node: Obj) -> bool:
    """The node passes the template's node selector, required node affinity and taint tolerations."""
    taints = (node.get("spec") or {}).get("taints") or []
    return pod_affinity_matches(pod_spec, node) and untolerated_taint(taints, pod_spec.get("tolerations") or []) is None


_DS_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


class DaemonSetController(Controller):
    """One pod per matching node, pinned with a ``matchFields metadata.name`` affinity term (as the real one)."""

    name = "daemonset-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(DS).add_handler(self.enqueue_obj)
        informers.get(PODS).add_handler(self.enqueue_owner("DaemonSet"))
        informers.get(NODES).add_handler(self._on_node)

    def _on_node(self, etype: str, obj: Obj, old: Obj | None) -> None:
        for ds in self.informers.get(DS).list():
            self.queue.add((ds["metadata"]["namespace"], ds["metadata"]["name"]))

    def sync(self, key: Any) -> None:
        ns, name = key
        ds = self.informers.get(DS).get(ns, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        template = ds["spec"]["template"]
        h = template_hash(template)
        gen = str(ds["metadata"].get("generation", 1))
        self._revision(ds, template, h)
        if not self.expectations_met(key, self.informers.get(PODS)):
            return
        pods = [p for p in self.informers.get(PODS).list(ns) if owned_by(p, ds)]
        nodes = self.informers.get(NODES).list()
        ru = (ds["spec"].get("updateStrategy") or {})
        rolling = ru.get("type", "RollingUpdate") == "RollingUpdate"
        eligible = [n for n in nodes if _runs_daemon_pod(template.get("spec") or {}, n)]
        max_unavail = resolve_int_or_percent((ru.get("rollingUpdate") or {}).get("maxUnavailable", 1),
                                             len(eligible), round_up=True) or 1
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(_pinned_node(p), []).append(p)
        names = {n["metadata"]["name"] for n in eligible}
        for node_name, ps in by_node.items():
            if node_name not in names:
                for p in ps:
                    if not p["metadata"].get("deletionTimestamp"):
                        self._delete(ds, p)
        unavailable = sum(1 for n in eligible
                          if not any(pod_ready(p) and pod_active(p) for p in by_node.get(n["metadata"]["name"], [])))
        for n in eligible:
            nn = n["metadata"]["name"]
            ps = [p for p in by_node.get(nn, []) if not p["metadata"].get("deletionTimestamp")]
            live = [p for p in ps if (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")]
            for p in ps:
                if p not in live:
                    self._delete(ds, p)
            if not live:
                if any(p["metadata"].get("deletionTimestamp") for p in by_node.get(nn, [])):
                    continue  # wait for the old pod to go before replacing it
                self._create(ds, template, nn, h, gen)
                continue
            for extra in live[1:]:
                self._delete(ds, extra)
            p = live[0]
            outdated = rolling and (p["metadata"].get("labels") or {}).get("controller-revision-hash") != h
            if outdated and (not pod_ready(p) or unavailable < max_unavail):
                if pod_ready(p):
                    unavailable += 1
                self._delete(ds, p)
        self._status(ds, eligible, by_node, h)

    def _revision(self, ds: Obj, template: Obj, h: str) -> None:
        name = f"{ds['metadata']['name']}-{h}"
        if self.api.try_get(REVISIONS, ds["metadata"]["namespace"], name) is not None:
            return
        revs = [r for r in self.api.list(REVISIONS, ds["metadata"]["namespace"], copy_objects=False)[0]
                if owned_by(r, ds)]
        body = {"metadata": {"name": name, "labels": {"controller-revision-hash": h},
                             "ownerReferences": [owner_ref(ds)]},
                "data": {"spec": {"template": template}},
                "revision": max((int(r.get("revision", 0)) for r in revs), default=0) + 1}
        try:
            self.api.create(REVISIONS, ds["metadata"]["namespace"], body)
        except ApiError as exc:
            if exc.code != 409:
                raise

    def _create(self, ds: Obj, template: Obj, node: str, h: str, gen: str) -> None:
        pod = pod_from_template(ds, template, generate_name=f"{ds['metadata']['name']}-",
                                extra_labels={"controller-revision-hash": h, "pod-template-generation": gen})
        spec = pod["spec"]
        aff = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
        aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
        tols = spec.setdefault("tolerations", [])
        for t in _DS_TOLERATIONS:
            if t not in tols:
                tols.append(dict(t))
        created = self.api.create(PODS, ds["metadata"]["namespace"], pod)
        self.expect((ds["metadata"]["namespace"], ds["metadata"]["name"]), "create", ds["metadata"]["namespace"],
                    created["metadata"]["name"])
        self.api.record_event(ds, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                              component="daemonset-controller")

    def _delete(self, ds: Obj, p: Obj) -> None:
        self.expect((ds["metadata"]["namespace"], ds["metadata"]["name"]), "delete", p["metadata"]["namespace"],
                    p["metadata"]["name"])
        try:
            self.api.delete(PODS, p["metadata"]["namespace"], p["metadata"]["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
            return
        self.api.record_event(ds, "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                              component="daemonset-controller")

    def _status(self, ds: Obj, eligible: list[Obj], by_node: dict[str, list[Obj]], h: str) -> None:
        names = {n["metadata"]["name"] for n in eligible}
        scheduled = [nn for nn in names if any(pod_active(p) for p in by_node.get(nn, []))]
        ready = [nn for nn in names if any(pod_active(p) and pod_ready(p) for p in by_node.get(nn, []))]
        updated = [nn for nn in names if any(pod_active(p) and (p["metadata"].get("labels") or {})
                                             .get("controller-revision-hash") == h for p in by_node.get(nn, []))]
        mis = [nn for nn in by_node if nn not in names and any(pod_active(p) for p in by_node[nn])]
        status: Obj = {"currentNumberScheduled": len(scheduled), "desiredNumberScheduled": len(names),
                       "numberMisscheduled": len(mis), "numberReady": len(ready),
                       "numberAvailable": len(ready), "numberUnavailable": len(names) - len(ready),
                       "updatedNumberScheduled": len(updated),
                       "observedGeneration": ds["metadata"].get("generation", 1)}
        for k in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
            if not status[k]:
                del status[k]
        _write_status(self.api, DS, ds, status)


def _pinned_node(pod: Obj) -> str:
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = ((((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return ""


class JobController(Controller):
    """NonIndexed Jobs: completions, parallelism, backoffLimit, Complete/Failed conditions."""

    name = "job-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(JOBS).add_handler(self.enqueue_obj)
        informers.get(PODS).add_handler(self.enqueue_owner("Job"))

    def sync(self, key: Any) -> None:
        ns, name = key
        job = self.informers.get(JOBS).get(ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        uid = job["metadata"]["uid"]
        spec = job["spec"]
        if not spec.get("selector") and not spec.get("manualSelector"):
            # The API server sets these at create; the twin sets them on first sight (one extra revision).
            labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                      "controller-uid": uid, "job-name": name}
            body = copy.deepcopy(job)
            body["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            tm = body["spec"]["template"].setdefault("metadata", {})
            tm["labels"] = {**(tm.get("labels") or {}), **labels}
            self.api.update(JOBS, ns, name, body)
            return
        status = copy.deepcopy(job.get("status") or {})
        conds = status.get("conditions") or []
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds):
            return
        if not self.expectations_met(key, self.informers.get(PODS)):
            return
        pods = [p for p in self.informers.get(PODS).list(ns) if owned_by(p, job)
                and match_selector(spec.get("selector"), p["metadata"].get("labels"))]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if pod_active(p)]
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        now = self.api.now()
        status.setdefault("startTime", now)
        finished: Obj | None = None
        if failed > int(spec.get("backoffLimit", 6)):
            finished = {"type": "Failed", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit"}
        elif (completions is not None and succeeded >= int(completions)) or (
                completions is None and succeeded > 0 and not active):
            finished = {"type": "Complete", "reason": "", "message": ""}
        if finished is None and not spec.get("suspend"):
            remaining = (int(completions) - succeeded if completions is not None else parallelism) - len(active)
            for _ in range(max(0, min(parallelism - len(active), remaining))):
                pod = pod_from_template(job, spec["template"], generate_name=f"{name}-")
                created = self.api.create(PODS, ns, pod)
                self.expect(key, "create", ns, created["metadata"]["name"])
                active.append(created)
                self.api.record_event(job, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                      component="job-controller")
        if finished is not None:
            for p in active:
                with_suppress_404(lambda p=p: self.api.delete(PODS, ns, p["metadata"]["name"]))
            active = []
            if finished["type"] == "Complete":
                conds.append({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                              "message": "Reached expected number of succeeded pods",
                              "lastProbeTime": now, "lastTransitionTime": now})
                conds.append({"type": "Complete", "status": "True", "reason": "CompletionsReached",
                              "message": "Reached expected number of succeeded pods",
                              "lastProbeTime": now, "lastTransitionTime": now})
                status["completionTime"] = now
                self.api.record_event(job, "Completed", "Job completed", component="job-controller")
            else:
                conds.append({"type": "FailureTarget", "status": "True", "reason": finished["reason"],
                              "message": finished["message"], "lastProbeTime": now, "lastTransitionTime": now})
                conds.append({"type": "Failed", "status": "True", "reason": finished["reason"],
                              "message": finished["message"], "lastProbeTime": now, "lastTransitionTime": now})
                self.api.record_event(job, "BackoffLimitExceeded", finished["message"], type="Warning",
                                      component="job-controller")
            status["conditions"] = conds
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if pod_ready(p))
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["terminating"] = sum(1 for p in pods if p["metadata"].get("deletionTimestamp"))
        status["uncountedTerminatedPods"] = {}
        for k in ("active", "succeeded", "failed"):
            if not status[k]:
                del status[k]
        _write_status(self.api, JOBS, job, status)


def with_suppress_404(fn: Any) -> None:
    try:
        fn()
    except ApiError as exc:
        if exc.code != 404:
            raise


__all__ = ["DaemonSetController", "DeploymentController", "JobController", "ReplicaSetController", "template_hash"]
