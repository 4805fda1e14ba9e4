"""What a check works with: its own namespace on the cluster, labelled objects, waits, logs, UUIDs.

A check never talks to a cluster directly; it asks its :class:`CheckContext`, which reaches the cluster only
through :mod:`checks.kube` — the same code path for a real Lambda cluster and for the twin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.cluster import Cluster
from checks.suite.settings import SuiteSettings

Obj = dict[str, Any]

GPU_UUID = re.compile(r"\(UUID: (GPU-[0-9a-fA-F-]+)\)")
MIG_UUID = re.compile(r"\(UUID: (MIG-[0-9a-fA-F-]+)\)")


def smi_uuids(text: str) -> list[str]:
    """UUIDs printed by ``nvidia-smi -L`` (GPU and MIG lines, in order) — nvidia-dra-driver.md §6.3."""
    out = []
    for line in text.splitlines():
        m = GPU_UUID.search(line) or MIG_UUID.search(line)
        if m:
            out.append(m.group(1))
    return out


def gpu_uuids(text: str) -> list[str]:
    return [u for u in smi_uuids(text) if u.startswith("GPU-")]


def mig_uuids(text: str) -> list[str]:
    return [u for u in smi_uuids(text) if u.startswith("MIG-")]


def _has_line(text: str) -> bool:
    return "\n" in text


def unschedulable(pod: Obj) -> bool:
    """``PodScheduled=False`` with reason ``Unschedulable`` (kubernetes-dra.md §4.2)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            return True
    return False


def condition_message(pod: Obj, cond_type: str) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == cond_type:
            return str(cond.get("message") or "")
    return ""


@dataclass
class CheckContext:
    """One check's handle on the cluster."""

    cluster: Cluster
    """The cluster under test."""
    settings: SuiteSettings
    """Suite settings (timeouts, stress sizes, run id)."""
    namespace: str
    """The check's own namespace (created before, deleted after the check)."""
    labels: dict[str, str]
    """Labels every object of this check carries (run id + check name)."""
    record: dict[str, Any] = field(default_factory=dict)
    """Data the check wants in results.json (timings, UUIDs, measurements)."""

    # -- objects -------------------------------------------------------------------------------------------
    def apply(self, *objs: Obj) -> list[Obj]:
        """Create objects in this check's namespace (cluster-scoped ones as they are), labelled."""
        out = []
        for obj in objs:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("labels", {}).update(self.labels)
            res = K.resource_for(obj)
            out.append(K.create(self.cluster, obj, self.namespace if res.namespaced else None))
        return out

    def get(self, plural: str, name: str) -> Obj:
        res = K.resource_for(plural)
        return K.get(self.cluster, plural, name, self.namespace if res.namespaced else None)

    def list_(self, plural: str, *, label_selector: str | None = None, all_namespaces: bool = False) -> list[Obj]:
        res = K.resource_for(plural)
        ns = None if (all_namespaces or not res.namespaced) else self.namespace
        return K.list_(self.cluster, plural, ns, label_selector=label_selector)

    def delete(self, plural: str, name: str, *, wait: bool = True, timeout: float = 60,
               grace_period_s: int | None = None) -> None:
        res = K.resource_for(plural)
        ns = self.namespace if res.namespaced else None
        K.delete(self.cluster, plural, name, ns, grace_period_s=grace_period_s)
        if wait:
            W.wait_deleted(self.cluster, plural, name, ns, timeout=self.timeout(timeout))

    def timeout(self, seconds: float) -> float:
        return self.settings.timeout(seconds)

    # -- waits ---------------------------------------------------------------------------------------------
    def pod_ready(self, name: str, timeout: float = 60) -> Obj:
        return W.wait_pod_ready(self.cluster, self.namespace, name, timeout=self.timeout(timeout))

    def pods_ready(self, label_selector: str, count: int, timeout: float = 120) -> list[Obj]:
        return W.wait_pods_ready(self.cluster, self.namespace, label_selector, count=count,
                                 timeout=self.timeout(timeout))

    def pod_phase(self, name: str, phases: tuple[str, ...], timeout: float = 60) -> Obj:
        source = W.source_for(self.cluster, "pods", self.namespace, field_selector=f"metadata.name={name}")
        return W.wait_for(source, lambda p: (p.get("status") or {}).get("phase") in phases,
                          timeout=self.timeout(timeout), what=f"pod {self.namespace}/{name} phase in {phases}")

    def pod_unschedulable(self, name: str, timeout: float = 60) -> Obj:
        """Wait until the scheduler reports the pod Unschedulable; returns the pod."""
        source = W.source_for(self.cluster, "pods", self.namespace, field_selector=f"metadata.name={name}")
        return W.wait_for(source, unschedulable, timeout=self.timeout(timeout),
                          what=f"pod {self.namespace}/{name} PodScheduled=False/Unschedulable")

    def claim_allocated(self, name: str, timeout: float = 60) -> Obj:
        return W.wait_claim_allocated(self.cluster, self.namespace, name, timeout=self.timeout(timeout))

    def event(self, involved: str, reason: str, timeout: float = 60) -> Obj:
        """Wait for an event with ``reason`` about the object ``involved``; returns the event."""
        source = W.source_for(self.cluster, "events", self.namespace,
                              field_selector=f"involvedObject.name={involved}")
        return W.wait_for(source, lambda e: e.get("reason") == reason, timeout=self.timeout(timeout),
                          what=f"event {reason} for {self.namespace}/{involved}")

    def gone(self, plural: str, name: str | None = None, *, label_selector: str | None = None,
             timeout: float = 60) -> None:
        res = K.resource_for(plural)
        W.wait_deleted(self.cluster, plural, name, self.namespace if res.namespaced else None,
                       label_selector=label_selector, timeout=self.timeout(timeout))

    # -- what workloads saw ----------------------------------------------------------------------------------
    def logs(self, pod: str, container: str | None = None, *, timeout: float = 30) -> str:
        """The container's output once it has printed at least one whole line (or ended).

        Waiting on the followed log stream rather than reading once closes a race real clusters have too: a
        pod is Ready when its containers start, possibly before ``nvidia-smi -L`` has printed.
        """
        K.log_until(self.cluster, self.namespace, pod, container, _has_line, timeout=self.timeout(timeout))
        return K.pod_log(self.cluster, self.namespace, pod, container)

    def uuids(self, pod: str, container: str | None = None) -> list[str]:
        """GPU/MIG UUIDs the container's ``nvidia-smi -L`` printed."""
        return smi_uuids(self.logs(pod, container))

    def claims(self) -> list[Obj]:
        return self.list_("resourceclaims")

    def pod_claims(self, pod: Obj) -> list[Obj]:
        """The ResourceClaims a pod uses (generated ones via ``status.resourceClaimStatuses``)."""
        out = []
        status = {s["name"]: s.get("resourceClaimName") for s in
                  (pod.get("status") or {}).get("resourceClaimStatuses") or []}
        for rc in (pod.get("spec") or {}).get("resourceClaims") or []:
            name = rc.get("resourceClaimName") or status.get(rc["name"])
            if name:
                out.append(self.get("resourceclaims", name))
        return out

    def allocated_devices(self, claim: Obj) -> list[str]:
        alloc = (claim.get("status") or {}).get("allocation") or {}
        return [r["device"] for r in (alloc.get("devices") or {}).get("results") or []]

    def gpu_slices(self) -> list[Obj]:
        return K.list_(self.cluster, "resourceslices", field_selector=f"spec.driver={names.GPU_DRIVER}")

    def gpu_devices(self) -> list[Obj]:
        """Devices of the GPU driver across all slices, in slice order (counter-only slices have none)."""
        devs: list[Obj] = []
        for s in sorted(self.gpu_slices(), key=lambda s: s["metadata"]["name"]):
            for d in (s.get("spec") or {}).get("devices") or []:
                devs.append({**d, "_node": (s.get("spec") or {}).get("nodeName"), "_pool": s["spec"]["pool"]["name"]})
        return devs
