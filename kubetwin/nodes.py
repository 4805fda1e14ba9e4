"""Nodes of a kubetwin cluster, shaped like kubeadm nodes, and their heartbeats.

A node carries the well-known ``kubernetes.io/*`` labels plus whatever labels its embedder adds (dra-lab adds
the instance type and the NVIDIA GPU labels the driver's chart selects on). No extended-resource capacity: on a
DRA cluster devices exist only as ResourceSlice devices.

Heartbeats: a :class:`NodeAgent` renews the node's Lease in ``kube-node-lease`` and refreshes the Ready
condition's ``lastHeartbeatTime``, as the kubelet's node-status loop does.
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
from kubetwin.api.resources import core

NODES = core("nodes")
LEASES = core("leases")

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

    def __init__(self, api: Api, node: dict[str, Any], *, lease_interval_s: float = 10.0) -> None:
        self.api = api
        self.node = node
        self.name = str(node["metadata"]["name"])
        self._interval = lease_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        self._renew()
        self._thread = threading.Thread(target=self._run, name=f"node-heartbeat-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(ApiError):
                self._renew()

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
