"""The GPU plugin's NVML health monitor (``NVMLDeviceHealthCheck``, reference §7) on emulated GPUs.

Real NVML XID events cannot be produced on a Lambda node; the twin offers them through its node: the node
carries :data:`checks.kube.labels.HEALTH_INJECTION_LABEL` and an event is written as the JSON annotation
:data:`checks.kube.labels.HEALTH_EVENT_ANNOTATION`. The monitor watches its own Node (the plugin's RBAC allows
it) and turns each new event into what the real monitor does:

* XID not in the skip list → taint ``gpu.nvidia.com/xid=<n>:NoSchedule`` on the devices of that GPU;
* XID in the skip list (13, 31, 43, 45, 68, 109 plus ``ADDITIONAL_XIDS_TO_IGNORE``, malformed entries ignored)
  → the same taint with effect ``None`` (not dropped);
* GPU lost → ``gpu.nvidia.com/gpu-lost`` (no value) ``NoSchedule`` on **all** monitored devices;

one taint per key per device (a newer event overwrites value/effect), never removed until the plugin restarts,
and the slice republished as one slice with all devices. The log lines are §7's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.driver import logs, names
from checks.driver.slices import GpuFacts
from checks.kube.labels import HEALTH_EVENT_ANNOTATION


def ignored_xids(env_value: str) -> frozenset[int]:
    """The hard-coded skip list plus ``ADDITIONAL_XIDS_TO_IGNORE`` (comma-separated; bad entries ignored)."""
    extra = set()
    for part in env_value.split(","):
        part = part.strip()
        if part.isdigit():
            extra.add(int(part))
    return frozenset(names.IGNORED_XIDS) | frozenset(extra)


@dataclass
class HealthMonitor:
    """Device taints from health events, kept for the life of the plugin process."""

    gpus: Sequence[GpuFacts]
    """The node's GPUs (monitored: their full-GPU devices)."""
    ignored: frozenset[int]
    """XIDs whose taint gets effect ``None``."""
    republish: Callable[[dict[str, list[dict[str, Any]]]], None]
    """Called with device name → taints after every event."""
    log: Callable[[logs.LogLine], None]
    """Plugin log."""
    taints: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Device name → taint key → taint."""
    last_seq: int = 0
    """Last injected event handled."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def devices_of(self, uuid: str) -> list[str]:
        """The full-GPU device with this UUID (twin: static MIG devices are not monitored, fidelity notes)."""
        return [names.gpu_device_name(g.minor) for g in self.gpus if g.uuid == uuid]

    def all_devices(self) -> list[str]:
        return [names.gpu_device_name(g.minor) for g in self.gpus]

    def handle(self, event: Mapping[str, Any]) -> None:
        """Apply one injected event (ignores repeats of an already handled ``seq``)."""
        with self.lock:
            seq = int(event.get("seq") or 0)
            if seq <= self.last_seq:
                return
            self.last_seq = seq
            kind = str(event.get("event") or "xid")
            uuid = str(event.get("uuid") or "")
            if kind == "gpu-lost":
                devices, key, value, effect, xid = self.all_devices(), names.TAINT_GPU_LOST, "", "NoSchedule", None
            else:
                xid = int(event.get("xid") or 0)
                devices = self.devices_of(uuid)
                key, value = names.TAINT_XID, str(xid)
                effect = "None" if xid in self.ignored else "NoSchedule"
            for dev in devices:
                taint: dict[str, Any] = {"key": key, "effect": effect}
                if value:
                    taint["value"] = value
                self.taints.setdefault(dev, {})[key] = taint
            for line in logs.health_event(kind, uuid or "unknown", xid, key, value, effect, len(devices)):
                self.log(line)
            snapshot = {d: list(t.values()) for d, t in self.taints.items()}
        self.republish(snapshot)


def watch_node(client: Any, node: str, monitor: HealthMonitor, stop: threading.Event) -> None:
    """Follow the Node's injection annotation until ``stop`` (a watch, re-opened when the server ends it)."""
    from kubernetes import client as k8s
    from kubernetes import watch

    core = k8s.CoreV1Api(client)
    while not stop.is_set():
        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for ev in w.stream(  # type: ignore[no-untyped-call]
                    core.list_node, field_selector=f"metadata.name={node}", timeout_seconds=5,
                               _request_timeout=10):
                if stop.is_set():
                    break
                obj = ev.get("object")
                annotations = getattr(getattr(obj, "metadata", None), "annotations", None) or {}
                raw = annotations.get(HEALTH_EVENT_ANNOTATION)
                if not raw:
                    continue
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    monitor.handle(event)
        except Exception:  # the API went away (twin stopping) or a watch hiccup: retry
            stop.wait(0.5)
        finally:
            w.stop()  # type: ignore[no-untyped-call]


def apply_taints(bodies: list[dict[str, Any]], taints: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Slice bodies with each tainted device's ``taints`` set (the republish after a health event)."""
    for body in bodies:
        for dev in (body.get("spec") or {}).get("devices") or []:
            if dev.get("name") in taints:
                dev["taints"] = [dict(t) for t in taints[dev["name"]]]
    return bodies


__all__ = ["HealthMonitor", "apply_taints", "ignored_xids", "watch_node"]
