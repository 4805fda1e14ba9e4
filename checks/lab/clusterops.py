"""What the cluster notebooks share: open the cluster from parameters, install a driver configuration, make
a labelled namespace, wait for a pod's scheduling outcome, clean up.

The notebooks call these so that the code they run is the suite's code (same builders, same DriverConfig
values, same helm path, same watch-based waits) and so it is typed and tested outside a notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.driver import names
from checks.kube import helm
from checks.kube import objects as O
from checks.kube import wait as W
from checks.kube.cluster import Cluster, ClusterTarget
from checks.kube.labels import cleanup, labels_for, namespace_name
from checks.suite.driverconfig import RELEASE, UPSTREAM_CHART, DriverConfig
from checks.suite.helpers import slice_devices

Obj = dict[str, Any]


def connect(kubeconfig: str, context: str = "") -> Cluster:
    """A :class:`Cluster` from the notebook's ``kubeconfig`` path and ``context`` parameters."""
    return Cluster(ClusterTarget(Path(kubeconfig), context or None))


def install_driver(cluster: Cluster, cfg: DriverConfig, *, chart: str = "", chart_version: str = "",
                   driver_root: str = "/", adopt: bool = False, timeout_s: float = 180.0) -> helm.ReleaseStatus:
    """``helm upgrade --install`` the driver with ``cfg`` and wait for the plugin pods (helm --wait is not
    enough, nvidia-dra-driver.md §14.2)."""
    return helm.upgrade_install(cluster, RELEASE, chart or UPSTREAM_CHART, names.NAMESPACE,
                                cfg.values(driver_root=driver_root),
                                helm.InstallOptions(version=chart_version or None, adopt=adopt,
                                                    wait_timeout_s=timeout_s))


def uninstall_driver(cluster: Cluster, *, adopt: bool = False) -> bool:
    """Remove the release installed by :func:`install_driver`."""
    return helm.uninstall(cluster, RELEASE, names.NAMESPACE, adopt=adopt)


def wait_slice_devices(cluster: Cluster, predicate: Any, *, timeout_s: float, what: str) -> list[Obj]:
    """Wait until the gpu.nvidia.com devices published in ResourceSlices satisfy ``predicate``; return them."""
    found: list[Obj] = []

    def ready(state: W.State) -> bool:
        devs = slice_devices(state.values())
        if devs and predicate(devs):
            found[:] = devs
            return True
        return False

    source = W.source_for(cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}")
    W.wait_until(source, ready, timeout=timeout_s, what=what)
    return found


@dataclass
class Workspace:
    """A labelled namespace for one notebook run."""

    cluster: Cluster
    """Where."""
    run_id: str
    """Run id (label value)."""
    namespace: str
    """Namespace name."""
    labels: dict[str, str]
    """Labels every created object carries."""

    @classmethod
    def open(cls, cluster: Cluster, run_id: str, check: str) -> Workspace:
        ns = namespace_name(run_id, check)
        labels = labels_for(run_id, check)
        O.create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        return cls(cluster, run_id, ns, labels)

    def add(self, obj: Obj) -> Obj:
        """Create ``obj`` in this namespace."""
        return O.create(self.cluster, obj, self.namespace)

    def cleanup(self, timeout_s: float = 120.0) -> int:
        """Delete everything labelled with the run id; returns how many objects were removed."""
        return cleanup(self.cluster, self.run_id, timeout=timeout_s).count


def is_unschedulable(pod: Obj) -> bool:
    """PodScheduled=False with reason Unschedulable: the scheduler tried and found no fit."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled":
            return bool(c.get("status") == "False" and c.get("reason") == "Unschedulable")
    return False


def scheduling_message(pod: Obj) -> str:
    """The PodScheduled condition's message ('' when none)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled":
            return str(c.get("message") or "")
    return ""


def wait_scheduling_outcome(cluster: Cluster, namespace: str, pod: str, *, timeout_s: float,
                            ready: bool = True) -> Obj:
    """Wait until pod ``pod`` is either Ready (``ready``; else just scheduled) or Unschedulable; return it."""

    def decided(p: Obj) -> bool:
        if is_unschedulable(p):
            return True
        return W.pod_is_ready(p) if ready else W.condition_status(p, "PodScheduled") == "True"

    source = W.source_for(cluster, "pods", namespace, field_selector=f"metadata.name={pod}")
    return W.wait_for(source, decided, timeout=timeout_s,
                      what=f"pod {namespace}/{pod} {'Ready' if ready else 'scheduled'} or Unschedulable")


def allocated_devices(claim: Obj) -> list[str]:
    """Device names in a claim's allocation (empty when unallocated)."""
    alloc = (claim.get("status") or {}).get("allocation") or {}
    return [str(r.get("device")) for r in (alloc.get("devices") or {}).get("results") or []]


def delete_and_wait(cluster: Cluster, namespace: str, plural: str, names_: list[str], *, timeout_s: float) -> None:
    """Delete the named objects and wait until each is gone (finalizers included)."""
    for n in names_:
        O.delete(cluster, plural, n, namespace)
    for n in names_:
        W.wait_deleted(cluster, plural, n, namespace, timeout=timeout_s)


__all__ = ["Workspace", "allocated_devices", "connect", "delete_and_wait", "install_driver", "is_unschedulable",
           "scheduling_message", "uninstall_driver", "wait_scheduling_outcome", "wait_slice_devices"]
