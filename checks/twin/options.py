"""How to build a twin of a Lambda instance: the one settings type for it (the runner, the lab and tests use it).

Kept free of kubetwin imports so that choosing options (``dra-lab check --twin-mig``, notebook parameters) does
not load the embedded cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubetwin.kubelet.kubelet import KubeletConfig


@dataclass(frozen=True)
class TwinOptions:
    """Knobs of a twin beyond the instance type."""

    kube_version: str = "1.36"
    """Kubernetes minor the twin reports and behaves as."""
    mig_enabled: tuple[int, ...] = ()
    """GPU indexes whose MIG mode is on at boot (Ampere needs it for DynamicMIG partitions)."""
    feature_gates: tuple[tuple[str, bool], ...] = ()
    """DRA feature gates set explicitly over the Kubernetes version's defaults, as kubeadm's ``featureGates``
    (Lambda CI on 1.35: ``DRAExtendedResource=true,DRAPartitionableDevices=true``)."""
    port: int = 0
    """API server port on 127.0.0.1 (0 = a free one)."""
    kubelet: KubeletConfig | None = None
    """Kubelet timings (None: the kubelet's defaults; tests shorten the crash-loop back-off)."""
    scheduler: bool = True
    """Run the scheduler (off only for tests that bind pods by hand)."""
    server: bool = True
    """Serve HTTPS (off for in-process-only tests; then there is no kubeconfig)."""
    lease_interval_s: float = 10.0
    """Node Lease renewal period."""
    imex: bool | None = None
    """Whether the node's GPUs are in an NVLink clique with IMEX channels (None: the instance's default — the
    compute-domain types, see :mod:`checks.twin.nvidia.fabric`)."""


__all__ = ["TwinOptions"]
