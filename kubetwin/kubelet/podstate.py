"""What the kubelet remembers per pod and per container between syncs, and its timing settings.

Kept apart from the sync logic so the status writer, the DRA manager and the container starter all read the same
bookkeeping without importing the :class:`~kubetwin.kubelet.kubelet.Kubelet` itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from kubetwin.kubelet.runtime import Container
from kubetwin.kubelet.seam import PreparedDevice


@dataclass(frozen=True)
class KubeletConfig:
    """Timing knobs of the twin's kubelet."""

    backoff_initial_s: float = 10.0
    """First crash-loop back-off (kubelet: 10 s)."""
    backoff_max_s: float = 300.0
    """Back-off cap (kubelet: 5 min)."""
    prepare_backoff_initial_s: float = 1.0
    """First retry delay after a failed DRA prepare (pod-sync back-off)."""
    prepare_backoff_max_s: float = 30.0
    """Cap of the DRA prepare retry delay."""
    api_host: str = "127.0.0.1"
    """KUBERNETES_SERVICE_HOST given to containers."""
    api_port: int = 443
    """KUBERNETES_SERVICE_PORT given to containers (the twin's HTTPS port once known)."""
    pleg_relist_s: float = 0.5
    """How long after a container started its status may still show it not running: the kubelet learns of the
    start from its PLEG (generic PLEG relists every 1 s), not from the start call. Earlier when the container
    writes output or exits (so ``kubectl wait --for=condition=Ready`` then ``kubectl logs`` sees the first
    line, as on a real node where the relist lags the process). 0 reports starts at once."""
    dra_wipe_delay_s: float = 30.0
    """How long after a DRA plugin deregisters the kubelet deletes that driver's ResourceSlices of the node
    unless the plugin registers again (kubelet's DRA plugin manager wiping delay: a rolling plugin update keeps
    its slices, an uninstall removes them; kubernetes-dra.md §1.5)."""


@dataclass
class ContainerState:
    """Per-container bookkeeping across restarts."""

    current: Container | None = None
    restart_count: int = 0
    last: dict[str, Any] | None = None
    """The terminated state of the latest finished instance."""
    backoff_s: float = 0.0
    start_error: str = ""
    waiting: tuple[str, str] = ("ContainerCreating", "")
    started_once: bool = False
    completed: bool = False
    """An init container that finished successfully (never rerun)."""
    kill_at: dt.datetime | None = None
    """A failed liveness/startup probe asked for a restart: SIGKILL at this time if SIGTERM was not enough."""


@dataclass
class PodState:
    """One pod the kubelet runs: its latest object, containers, prepared claims and owned conditions."""

    uid: str
    ns: str
    name: str
    pod: dict[str, Any]
    containers: dict[str, ContainerState] = field(default_factory=dict)
    prepared: bool = False
    prepared_claims: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """pod-claim name → (claim uid, claim name, driver)."""
    devices: dict[str, tuple[PreparedDevice, ...]] = field(default_factory=dict)
    """claim uid → devices prepared for it."""
    prepare_backoff_s: float = 0.0
    conds: dict[str, dict[str, Any]] = field(default_factory=dict)
    start_time: str = ""
    pod_ip: str = ""
    terminating_since: dt.datetime | None = None
    kill_at: dt.datetime | None = None
    finished: bool = False
    removed: bool = False
    loopback: str = "127.0.0.1"
    """The pod's own loopback address (``localhost`` in its ``/etc/hosts``; emulated servers bind there)."""
    served: set[int] = field(default_factory=set)
    """Container ports emulated programs of this pod bound through ``serve_address``."""


def find_container(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The (init) container spec called ``name``, copied; None if the pod has none."""
    for c in (pod["spec"].get("initContainers") or []) + (pod["spec"].get("containers") or []):
        if c.get("name") == name:
            return dict(c)
    return None


def inits_pending(st: PodState) -> bool:
    return any(not (st.containers.get(c["name"]) or ContainerState()).completed
               for c in st.pod["spec"].get("initContainers") or [])


def is_first_pending_init(st: PodState, name: str) -> bool:
    for c in st.pod["spec"].get("initContainers") or []:
        if not (st.containers.get(c["name"]) or ContainerState()).completed:
            return bool(c["name"] == name)
    return False


def pod_loopback(uid: str) -> str:
    """A loopback address of its own for a pod (``127.a.b.c``, never ``127.0.0.1``), stable for its uid: pods share
    the host's network namespace, so per-pod addresses keep two pods' servers on one port apart."""
    h = hashlib.sha256(uid.encode()).digest()
    return f"127.{h[0] % 254 + 1}.{h[1]}.{h[2] % 253 + 2}"


def hexid(s: str) -> str:
    """A stable 64-hex id (container and image ids)."""
    return hashlib.sha256(s.encode()).hexdigest()


def go_duration(seconds: float) -> str:
    """Go's time.Duration String for whole/fractional seconds and minutes (``10s``, ``1m20s``, ``5m0s``)."""
    if seconds < 60:
        return f"{seconds:g}s"
    m, s = divmod(seconds, 60)
    return f"{int(m)}m{s:g}s"


__all__ = ["ContainerState", "KubeletConfig", "PodState", "find_container", "go_duration", "hexid",
           "inits_pending", "is_first_pending_init", "pod_loopback"]
