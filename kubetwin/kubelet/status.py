"""Pod status as the kubelet reports it: phase, owned conditions with real transition times, container statuses.

Only the kubelet-owned parts are merged into the latest pod and written through the ``status`` subresource, so the
scheduler's and the resourceclaim controller's status fields survive (conflicts are retried on a fresh read).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

from kubetwin.api.core import Api, rfc3339
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from kubetwin.informer import Informer
from kubetwin.kubelet import images
from kubetwin.kubelet.podstate import ContainerState, PodState, hexid, inits_pending, is_first_pending_init

PODS = core("pods")
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
_COND_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def pod_phase(st: PodState) -> str:
    """The pod phase from its containers' states and ``restartPolicy``."""
    spec = st.pod["spec"]
    policy = spec.get("restartPolicy", "Always")
    inits = spec.get("initContainers") or []
    if policy == "Never" and any(
            (cs := st.containers.get(c["name"])) and cs.current is None and cs.last
            and cs.last.get("exitCode") != 0 and not cs.completed for c in inits):
        return "Failed"
    mains = spec.get("containers") or []
    states = [st.containers.get(c["name"]) for c in mains]
    if any(cs is None or (cs.current is None and cs.last is None) for cs in states):
        return "Pending"
    if any(cs is not None and cs.current is not None for cs in states):
        return "Running"
    codes = [int((cs.last or {}).get("exitCode", 1)) for cs in states if cs is not None]
    if policy == "Always":
        return "Running"
    if policy == "OnFailure":
        return "Succeeded" if all(c == 0 for c in codes) else "Running"
    return "Succeeded" if all(c == 0 for c in codes) else "Failed"


class StatusWriter:
    """Builds and writes one node's pod statuses."""

    def __init__(self, api: Api, informer: Informer, node_ip: str, now: Callable[[], dt.datetime],
                 probed: Callable[[PodState, dict[str, Any], ContainerState], tuple[bool, bool]]) -> None:
        self.api = api
        self._informer = informer
        self._node_ip = node_ip
        self._now = now
        self._probed = probed
        """(started, ready) of a running container: the startup and readiness probes' verdicts."""

    def set_condition(self, st: PodState, ctype: str, ok: bool, reason: str = "", message: str = "") -> None:
        status = "True" if ok else "False"
        prev = st.conds.get(ctype)
        ltt = prev["lastTransitionTime"] if prev and prev["status"] == status else rfc3339(self._now())
        c: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": ltt}
        if ctype != "PodReadyToStartContainers" or not ok:
            if not ok and reason:
                c["reason"] = reason
            if not ok and message:
                c["message"] = message
        if ok and reason == "PodCompleted":
            c["reason"] = reason
        if ctype == "PodReadyToStartContainers":
            c.pop("lastProbeTime", None)
        st.conds[ctype] = c

    def container_status(self, st: PodState, c: dict[str, Any], *, init: bool, terminal: bool) -> dict[str, Any]:
        cs = st.containers.get(c["name"]) or ContainerState()
        image = images.normalize_image(str(c.get("image", "")))
        out: dict[str, Any] = {"name": c["name"], "image": image, "imageID": "",
                               "restartCount": cs.restart_count, "ready": False, "started": False}
        last_term = (cs.last or {}).get("terminated")
        if cs.current is not None and cs.current.running:
            out["state"] = {"running": {"startedAt": rfc3339(cs.current.started_at)}}
            out["containerID"] = cs.current.id
            started, ready = self._probed(st, c, cs)
            out["started"] = started
            out["ready"] = ready and not init
            if last_term:
                out["lastState"] = {"terminated": dict(last_term)}
        elif last_term and (cs.waiting[0] == "CrashLoopBackOff" and not terminal):
            out["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": cs.waiting[1]}}
            out["lastState"] = {"terminated": dict(last_term)}
            out["containerID"] = last_term.get("containerID")
        elif last_term:
            out["state"] = {"terminated": dict(last_term)}
            out["containerID"] = last_term.get("containerID")
            if init and cs.completed:
                out["ready"] = True
        else:
            reason = "PodInitializing" if (not init and st.prepared and inits_pending(st)) else "ContainerCreating"
            if init and st.prepared and not is_first_pending_init(st, c["name"]):
                reason = "PodInitializing"
            out["state"] = {"waiting": {"reason": reason}}
        if out.get("containerID"):
            out["imageID"] = f"{image.rsplit(':', 1)[0]}@sha256:{hexid(image)}"
        else:
            out.pop("imageID")
            out["imageID"] = ""
        if out.get("containerID") is None:
            out.pop("containerID", None)
        out["volumeMounts"] = [{"name": m.get("name"), "mountPath": m.get("mountPath")}
                               for m in c.get("volumeMounts") or []] or None
        if out["volumeMounts"] is None:
            del out["volumeMounts"]
        return out

    def write(self, st: PodState, *, terminal: bool = False) -> None:
        spec = st.pod["spec"]
        inits = spec.get("initContainers") or []
        mains = spec.get("containers") or []
        phase = pod_phase(st)
        if terminal and phase not in ("Succeeded", "Failed"):
            codes = [int((cs.last or {}).get("exitCode", 137)) for cs in
                     (st.containers.get(c["name"]) for c in mains) if cs is not None]
            phase = "Succeeded" if codes and all(c == 0 for c in codes) else "Failed"
        init_st = [self.container_status(st, c, init=True, terminal=terminal) for c in inits]
        main_st = [self.container_status(st, c, init=False, terminal=terminal) for c in mains]
        self.set_condition(st, "PodReadyToStartContainers", st.prepared and not terminal)
        pending_inits = [c["name"] for c in inits
                         if not (st.containers.get(c["name"]) or ContainerState()).completed]
        inits_ok = not pending_inits or phase == "Succeeded"
        self.set_condition(st, "Initialized", inits_ok, "ContainersNotInitialized",
                           f"containers with incomplete status: [{' '.join(pending_inits)}]")
        unready = [s["name"] for s in main_st if not s["ready"]]
        if phase == "Succeeded":
            self.set_condition(st, "Ready", False, "PodCompleted")
            self.set_condition(st, "ContainersReady", False, "PodCompleted")
        else:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            self.set_condition(st, "Ready", not unready, "ContainersNotReady", msg)
            self.set_condition(st, "ContainersReady", not unready, "ContainersNotReady", msg)
        for attempt in range(5):
            cur = self._informer.get(st.ns, st.name) if attempt == 0 else self.api.try_get(PODS, st.ns, st.name)
            if cur is None or cur["metadata"].get("uid") != st.uid:
                return
            status = copy.deepcopy(cur.get("status") or {})
            status["phase"] = phase
            conds = [c for c in status.get("conditions") or [] if c.get("type") not in OWNED_CONDITIONS]
            conds += [st.conds[t] for t in OWNED_CONDITIONS if t in st.conds]
            conds.sort(key=lambda c: _COND_ORDER.index(c["type"]) if c["type"] in _COND_ORDER else 99)
            status["conditions"] = conds
            status["hostIP"] = self._node_ip
            status["hostIPs"] = [{"ip": self._node_ip}]
            if st.pod_ip:
                status["podIP"] = st.pod_ip
                status["podIPs"] = [{"ip": st.pod_ip}]
            status["startTime"] = st.start_time
            if init_st:
                status["initContainerStatuses"] = init_st
            status["containerStatuses"] = main_st
            if status == cur.get("status"):
                return
            body = {"metadata": {"name": st.name, "namespace": st.ns,
                                 "resourceVersion": cur["metadata"]["resourceVersion"]}, "status": status}
            try:
                self.api.update(PODS, st.ns, st.name, body, subresource="status")
                return
            except ApiError as exc:
                if exc.code == 404:
                    return
                if exc.code != 409:
                    raise


__all__ = ["OWNED_CONDITIONS", "StatusWriter", "pod_phase"]
