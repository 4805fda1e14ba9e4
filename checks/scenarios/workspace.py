"""A labelled namespace on a cluster and the operations the checks and the notebooks run in it.

A :class:`Workspace` is one run's (or one check's) handle: objects it creates carry the run's labels, waits
are watch-based (:mod:`checks.kube.wait`) with timeouts scaled by one factor, and logs are read once a whole
line is there. The pytest checks get it as ``ctx`` (:class:`checks.suite.context.CheckContext` adds the
suite's settings and the per-check record); the notebooks open one with :meth:`Workspace.open`. Both reach
the cluster only through :mod:`checks.kube`, the same code path for a real Lambda cluster and for a twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.labels import cleanup, labels_for, namespace_name
from checks.scenarios.readers import is_unschedulable, slice_devices

Obj = dict[str, Any]


def connect(kubeconfig: str, context: str = "") -> ClusterClient:
    """A :class:`ClusterClient` from a notebook's ``kubeconfig`` path and ``context`` parameters."""
    return ClusterClient(ClusterTarget(Path(kubeconfig), context or None))


def _has_line(text: str) -> bool:
    return "\n" in text


@dataclass
class Workspace:
    """A labelled namespace for one run or one check, with the operations that run in it."""

    cluster: ClusterClient
    """Where."""
    namespace: str
    """The namespace objects are created in (namespaced kinds)."""
    labels: dict[str, str]
    """Labels every created object carries (run id + check name): what the label sweep finds."""
    run_id: str = ""
    """Run id (the value of the run label); '' when the labels say it."""
    timeout_scale: float = 1.0
    """Factor applied to every wait timeout (slow clusters, fast tests)."""

    @classmethod
    def open(cls, cluster: ClusterClient, run_id: str, check: str, *, timeout_scale: float = 1.0) -> Workspace:
        """Create the namespace ``namespace_name(run_id, check)``, labelled; return its workspace."""
        ns = namespace_name(run_id, check)
        labels = labels_for(run_id, check)
        K.create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        return cls(cluster, ns, labels, run_id, timeout_scale)

    def timeout(self, seconds: float) -> float:
        """``seconds`` scaled by :attr:`timeout_scale`."""
        return seconds * self.timeout_scale

    def cleanup(self, timeout_s: float = 120.0) -> int:
        """Delete everything labelled with the run id; returns how many objects were removed."""
        return cleanup(self.cluster, self.run_id, timeout=timeout_s).count

    # -- objects -------------------------------------------------------------------------------------------
    def apply(self, *objs: Obj) -> list[Obj]:
        """Create objects in this namespace (cluster-scoped ones as they are), each with the labels added."""
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

    def delete_all(self, plural: str, names_: list[str], *, timeout: float = 60) -> None:
        """Delete the named objects, then wait until each is gone (finalizers included)."""
        for n in names_:
            self.delete(plural, n, wait=False)
        for n in names_:
            self.gone(plural, n, timeout=timeout)

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
        return W.wait_for(source, is_unschedulable, timeout=self.timeout(timeout),
                          what=f"pod {self.namespace}/{name} PodScheduled=False/Unschedulable")

    def scheduling_outcome(self, name: str, *, timeout: float = 60, ready: bool = True) -> Obj:
        """Wait until pod ``name`` is either Ready (``ready``; else just scheduled) or Unschedulable."""

        def decided(p: Obj) -> bool:
            if is_unschedulable(p):
                return True
            return W.pod_is_ready(p) if ready else W.condition_status(p, "PodScheduled") == "True"

        source = W.source_for(self.cluster, "pods", self.namespace, field_selector=f"metadata.name={name}")
        return W.wait_for(source, decided, timeout=self.timeout(timeout),
                          what=f"pod {self.namespace}/{name} {'Ready' if ready else 'scheduled'} or Unschedulable")

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

    def gpu_slices(self) -> list[Obj]:
        return K.list_(self.cluster, "resourceslices", field_selector=f"spec.driver={names.GPU_DRIVER}")

    def gpu_devices(self) -> list[Obj]:
        """Devices of the GPU driver across all slices, in slice order (counter-only slices have none)."""
        return slice_devices(self.gpu_slices())


__all__ = ["Workspace", "connect"]
