"""Nodes of a kubetwin cluster, shaped like kubeadm nodes, and their heartbeats.

A node carries the well-known ``kubernetes.io/*`` labels plus whatever labels its embedder adds (dra-lab adds
the instance type and the NVIDIA GPU labels the driver's chart selects on). No extended-resource capacity: on a
DRA cluster devices exist only as ResourceSlice devices.

Heartbeats: a :class:`NodeAgent` renews the node's Lease in ``kube-node-lease`` and refreshes the Ready
condition's ``lastHeartbeatTime``, as the kubelet's node-status loop does. Under an injected ``node-notready``
fault (kubetwin.api.faults) the heartbeat stops and the agent writes what the node lifecycle controller writes
once the grace period has passed (at once here): every condition ``Unknown`` with reason ``NodeStatusUnknown``
and "Kubelet stopped posting node status.", plus the ``node.kubernetes.io/unreachable`` NoSchedule and
NoExecute taints; when the fault is turned off the heartbeat resumes, Ready is True again and the taints go.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetwin.api.core import Api, rfc3339, rfc3339_micro
from kubetwin.api.errors import ApiError
from kubetwin.api.faults import Faults
from kubetwin.api.resources import core

NODES = core("nodes")
LEASES = core("leases")

UNREACHABLE = "node.kubernetes.io/unreachable"
"""The taint key the node lifecycle controller puts on a node whose Ready condition is Unknown."""

KUBELET_VERSION = {"1.34": "v1.34.2", "1.35": "v1.35.1", "1.36": "v1.36.0", "1.37": "v1.37.0"}
"""Kubelet version reported per twin Kubernetes minor."""
CONTAINER_RUNTIME = "containerd://2.1.4"
OS_IMAGE = "Ubuntu 22.04.5 LTS"
KERNEL = "6.8.0-60-generic"


@dataclass(frozen=True)
class NodeSpec:
    """Identity of one twin node."""

    name: str
    """Node name."""
    internal_ip: str
    """InternalIP address (also the kubelet's hostIP for pods)."""
    pod_cidr: str
    """Pod CIDR, e.g. ``10.244.0.0/24``."""
    cpu_arch: str = "amd64"
    """``kubernetes.io/arch`` and ``nodeInfo.architecture``."""
    vcpus: int = 8
    """CPU capacity."""
    memory_gib: int = 32
    """Memory capacity (allocatable is this less the kubelet's 100Mi hard eviction threshold)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels added to the well-known ones (instance type, device labels)."""


def node_object(spec: NodeSpec, *, kube_version: str = "1.36", now: str = "1970-01-01T00:00:00Z") -> dict[str, Any]:
    """The Node a kubelet with this identity would register."""
    mem_kib = spec.memory_gib * 1024 * 1024
    alloc_kib = mem_kib - 100 * 1024  # kubelet's default hard eviction threshold (memory.available<100Mi)
    labels = {
        "beta.kubernetes.io/arch": spec.cpu_arch, "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": spec.cpu_arch, "kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux",
        **spec.labels,
    }
    cond = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
    return {
        "metadata": {"name": spec.name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": spec.pod_cidr, "podCIDRs": [spec.pod_cidr]},
        "status": {
            "capacity": {"cpu": str(spec.vcpus), "memory": f"{mem_kib}Ki", "pods": "110",
                         "ephemeral-storage": "1073741824Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"},
            "allocatable": {"cpu": str(spec.vcpus), "memory": f"{alloc_kib}Ki", "pods": "110",
                            "ephemeral-storage": "989560464834", "hugepages-1Gi": "0", "hugepages-2Mi": "0"},
            "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                            "lastTransitionTime": now} for t, s, r, m in cond],
            "addresses": [{"type": "InternalIP", "address": spec.internal_ip},
                          {"type": "Hostname", "address": spec.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _hex(spec.name, 32), "systemUUID": _uuid(spec.name), "bootID": _uuid(spec.name + "boot"),
                "kernelVersion": KERNEL, "osImage": OS_IMAGE, "containerRuntimeVersion": CONTAINER_RUNTIME,
                "kubeletVersion": KUBELET_VERSION.get(kube_version, f"v{kube_version}.0"),
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": spec.cpu_arch,
            },
            "images": [],
        },
    }


class NodeAgent:
    """Registers one node and keeps its heartbeat (Lease + Ready condition) fresh."""

    def __init__(self, api: Api, node: dict[str, Any], *, lease_interval_s: float = 10.0,
                 faults: Faults | None = None) -> None:
        self.api = api
        self.node = node
        self.name = str(node["metadata"]["name"])
        self._interval = lease_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._faults = faults or Faults()
        self._unknown = False
        """Whether this agent has marked the node unknown (an injected node-notready)."""
        self._faults.subscribe(self._wake.set)

    def register(self) -> dict[str, Any]:
        body = copy.deepcopy(self.node)
        status = body.pop("status")
        try:
            created = self.api.create(NODES, None, body)
        except ApiError as exc:
            if exc.code != 409:
                raise
            created = self.api.get(NODES, None, self.name)
        now = self.api.now()
        for c in status["conditions"]:
            c["lastHeartbeatTime"] = c["lastTransitionTime"] = now
        created["status"] = status
        return self.api.update(NODES, None, self.name, created, subresource="status")

    def start(self) -> None:
        self.register()
        self._beat()
        self._thread = threading.Thread(target=self._run, name=f"node-heartbeat-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            with contextlib.suppress(ApiError):
                self._beat()

    def _beat(self) -> None:
        """Renew the heartbeat, or, under an injected node-notready, stop it and mark the node unknown."""
        if self._faults.node_notready(self.name):
            if not self._unknown:
                self._mark_unknown()
                self._unknown = True
            return
        if self._unknown:
            self._mark_ready()
            self._unknown = False
        self._renew()

    def _mark_unknown(self) -> None:
        """What the node lifecycle controller writes for a node whose kubelet stopped posting status."""
        now = rfc3339(self.api.clock.now())
        node = self.api.get(NODES, None, self.name)
        for c in (node.get("status") or {}).get("conditions") or []:
            c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                     lastTransitionTime=now)
        node = self.api.update(NODES, None, self.name, node, subresource="status")
        taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != UNREACHABLE]
        taints += [{"key": UNREACHABLE, "effect": "NoSchedule"},
                   {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}]
        node["spec"]["taints"] = taints
        self.api.update(NODES, None, self.name, node)

    def _mark_ready(self) -> None:
        """The kubelet posts status again: its conditions as at registration, the unreachable taints removed."""
        now = rfc3339(self.api.clock.now())
        node = self.api.get(NODES, None, self.name)
        fresh = {c["type"]: c for c in self.node["status"]["conditions"]}
        conds = []
        for c in (node.get("status") or {}).get("conditions") or []:
            conds.append({**c, **{k: v for k, v in fresh.get(c["type"], {}).items()
                                  if k in ("status", "reason", "message")},
                          "lastHeartbeatTime": now, "lastTransitionTime": now})
        node["status"]["conditions"] = conds
        node = self.api.update(NODES, None, self.name, node, subresource="status")
        taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != UNREACHABLE]
        if taints:
            node["spec"]["taints"] = taints
        else:
            node["spec"].pop("taints", None)
        self.api.update(NODES, None, self.name, node)

    def _renew(self) -> None:
        now = self.api.clock.now()
        lease = self.api.try_get(LEASES, "kube-node-lease", self.name)
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": rfc3339_micro(now)}
        if lease is None:
            node = self.api.get(NODES, None, self.name)
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node["metadata"]["uid"]}]
            with contextlib.suppress(ApiError):
                self.api.create(LEASES, "kube-node-lease", {"metadata": {"name": self.name,
                                                                         "ownerReferences": owner},
                                                            "spec": spec})
        else:
            lease["spec"].update(spec)
            self.api.update(LEASES, "kube-node-lease", self.name, lease)
        node = self.api.get(NODES, None, self.name)
        for c in (node.get("status") or {}).get("conditions") or []:
            c["lastHeartbeatTime"] = rfc3339(now)
        self.api.update(NODES, None, self.name, node, subresource="status")


def _hex(seed: str, n: int) -> str:
    import hashlib

    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _uuid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


__all__ = ["NodeAgent", "NodeSpec", "node_object"]
