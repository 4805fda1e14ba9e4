"""Job controller (NonIndexed): completions, parallelism, backoffLimit, the Complete/Failed conditions and the
``Completed``/``BackoffLimitExceeded`` events. Simplifications are listed in docs/twin-fidelity.md ("Controllers
and kubelet").
"""

from __future__ import annotations

import copy
from typing import Any

from kubetwin.api.resources import core
from kubetwin.controllers.base import (
    Controller,
    SharedInformers,
    delete_if_present,
    match_selector,
    owned_by,
    pod_active,
    pod_from_template,
    pod_ready,
    write_status,
)

__all__ = ["JobController"]

Obj = dict[str, Any]
PODS = core("pods")
JOBS = core("jobs")


class JobController(Controller):
    """NonIndexed Jobs: completions, parallelism, backoffLimit, Complete/Failed conditions."""

    name = "job-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(JOBS).add_handler(self.enqueue_obj)
        informers.get(PODS).add_handler(self.enqueue_owner("Job"))

    def sync(self, key: Any) -> None:
        ns, name = key
        job = self.live(JOBS, key)
        if job is None:
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
                delete_if_present(self.api, PODS, ns, p["metadata"]["name"])
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
        write_status(self.api, JOBS, job, status)
