"""DaemonSet controller: one pod per eligible node, pinned there, rolled when the template changes.

Eligibility uses the scheduler's own node rules (:mod:`kubetwin.predicates`). Simplifications are listed in
docs/twin-fidelity.md ("Controllers and kubelet").
"""

from __future__ import annotations

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
from kubetwin.predicates import pod_affinity_matches, untolerated_taint

__all__ = ["DaemonSetController"]

Obj = dict[str, Any]
PODS = core("pods")
NODES = core("nodes")
DS = core("daemonsets")
REVISIONS = core("controllerrevisions")


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
        ns, _ = key
        ds = self.live(DS, key)
        if ds is None:
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
        if not delete_if_present(self.api, PODS, p["metadata"]["namespace"], p["metadata"]["name"]):
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
        write_status(self.api, DS, ds, status)


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
