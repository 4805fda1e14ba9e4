"""NVLink fabric / IMEX facts of a twin node: what NVML's fabric info and ``/proc/devices`` say there.

The compute-domain kubelet plugin decides from these whether its node is in an NVLink clique (channel devices
injected into workloads, IMEX daemon run) or falls back to "no clique" (claims succeed without channel nodes,
the daemon idles) — reference nvidia-dra-driver.md §11.5. Facts per Lambda instance type:

* Types with compute domains (``compute_domains: true`` in params: the B200 types) get a fabric with a non-zero
  cluster UUID and clique ``<clusterUUID>.1`` — the twin's assumption that makes them IMEX-capable; not yet
  measured on Lambda (docs/twin-fidelity.md).
* Other NVSwitch boards (8×H100, 8×A100) report state Completed with an all-zero cluster UUID, as observed on
  Lambda H100 SXM5 hosts (``observed/h100x2-fabric-probe.txt``): "cluster UUID is zero" → no clique.
* Everything else: fabric info NOT_SUPPORTED → "NVLink fabric not supported by driver" → no clique.

``/proc/devices`` lists ``242 nvidia-caps-imex-channels`` on every NVIDIA 580 host observed, so the plugin starts
everywhere; a twin option can take it away to show the start failure.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Final

from checks.catalog import Instance

IMEX_MAJOR: Final = 242
"""``nvidia-caps-imex-channels`` major in ``/proc/devices`` on the observed Lambda H100 hosts."""
ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"

STATE_NOT_SUPPORTED: Final = "not-supported"
"""``nvmlDeviceGetGpuFabricInfo`` returns ERROR_NOT_SUPPORTED."""
STATE_COMPLETED: Final = "completed"
"""Registration completed (``GPU_FABRIC_STATE_COMPLETED``, status SUCCESS)."""


@dataclass(frozen=True)
class FabricFacts:
    """One node's NVLink fabric as the CD plugin reads it (the same for all GPUs of the node)."""

    state: str = STATE_NOT_SUPPORTED
    """:data:`STATE_NOT_SUPPORTED` or :data:`STATE_COMPLETED`."""
    cluster_uuid: str = ZERO_UUID
    """NVLink cluster UUID (all zeros: NVLink-capable but not in a multi-node domain)."""
    clique: int = 0
    """Clique id within the cluster."""
    imex_major: int | None = IMEX_MAJOR
    """Major of ``nvidia-caps-imex-channels`` in ``/proc/devices``; None = the driver registers no such device."""

    @property
    def clique_id(self) -> str:
        """The plugin's clique ID ``<clusterUUID>.<clique>``, or ``""`` for the no-clique fallback."""
        if self.state != STATE_COMPLETED or self.cluster_uuid == ZERO_UUID:
            return ""
        return f"{self.cluster_uuid}.{self.clique}"


_NS: Final = uuid.UUID("0b6c6f1e-3f7a-5a59-9d1e-6b1f4c2a7e10")


def instance_fabric(instance: Instance, *, imex: bool | None = None) -> FabricFacts:
    """The fabric a twin node of ``instance`` has; ``imex`` overrides the instance's default (module doc)."""
    capable = instance.compute_domains if imex is None else imex
    if capable:
        return FabricFacts(STATE_COMPLETED, str(uuid.uuid5(_NS, instance.instance_type)), 1)
    if instance.interconnect.nvswitch:
        return FabricFacts(STATE_COMPLETED, ZERO_UUID, 0)
    return FabricFacts()


_lock = threading.Lock()
_nodes: dict[str, FabricFacts] = {}


def set_node_fabric(node: str, facts: FabricFacts) -> None:
    """Record ``node``'s fabric (the twin sets it before the node's plugins can start)."""
    with _lock:
        _nodes[node] = facts


def node_fabric(node: str) -> FabricFacts:
    """The fabric recorded for ``node`` (default: not supported, IMEX major present)."""
    with _lock:
        return _nodes.get(node, FabricFacts())


__all__ = ["IMEX_MAJOR", "FabricFacts", "instance_fabric", "node_fabric", "set_node_fabric"]
