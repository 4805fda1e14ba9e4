"""MPS control daemons of the emulated GPU plugin (``MPSSupport``; reference nvidia-dra-driver.md §12.5, §6.2).

On Prepare of a claim whose GPU config selects ``sharing.strategy: MPS``, the real plugin creates one
Deployment per claim and device set in its own namespace, named ``mps-control-daemon-<claimUID>-<first 5 hex
of sha256(",".join(UUIDs))>``, pinned to its node, running ``nvidia-cuda-mps-control -d`` from the driver image,
and then waits with back-off (1 s doubling, 4 attempts) for exactly one ready replica whose single container is
Ready; when that does not happen Prepare fails with ``MPS control daemon is not yet ready: <last reason>`` and
the kubelet retries. Containers of the claim get ``CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps`` (plus bind mounts of
the daemon's pipe and shm directories, which the twin cannot express — docs/twin-fidelity.md). Unprepare
deletes the Deployment with foreground propagation.

Everything goes through the twin's API with the official client, exactly as the real plugin's client-go
calls; the Deployment controller, ReplicaSet controller and the kubelet then run the daemon pod, whose
container (the driver image) runs :func:`run_mps_control` below.

Twin differences: the waits between attempts are watches that end early when the Deployment changes (the real
plugin sleeps the full step); no jitter; the Deployment is our own rendering of the facts in §12.5 (labels,
``nodeName``, ``hostPID``, privileged, container name, command, ``CUDA_VISIBLE_DEVICES``, ``FEATURE_GATES``,
host-path volumes under ``<plugins dir>/gpu.nvidia.com/mps/<id>``), not the upstream template.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.driver import gates as gate_table
from checks.driver import logs
from checks.driver.configs import MpsConfig, OpaqueConfigError
from kubetwin.kubelet.seam import ContainerContext

PIPE_DIRECTORY = "/tmp/nvidia-mps"
"""``CUDA_MPS_PIPE_DIRECTORY`` the CDI edits give workload containers (§6.2)."""
NAME_PREFIX = "mps-control-daemon-"
CONTAINER = "mps-control-daemon"
CONTROL_BINARY = "nvidia-cuda-mps-control"


@dataclass(frozen=True)
class Backoff:
    """``wait.Backoff`` of the plugin's readiness check (src ``cmd/gpu-kubelet-plugin/sharing.go``)."""

    duration_s: float = 1.0
    """First wait between attempts."""
    factor: float = 2.0
    """Growth per attempt."""
    steps: int = 4
    """Attempts in total."""
    cap_s: float = 10.0
    """Longest single wait."""

    def delays(self) -> list[float]:
        """Waits between consecutive attempts (``steps - 1`` of them)."""
        out, d = [], self.duration_s
        for _ in range(max(0, self.steps - 1)):
            out.append(min(d, self.cap_s))
            d *= self.factor
        return out


def daemon_id(claim_uid: str, uuids: Sequence[str]) -> str:
    """``<claimUID>-<5 hex>`` — the hash is over the device UUIDs joined by commas (§12.5)."""
    digest = hashlib.sha256(",".join(uuids).encode()).hexdigest()
    return f"{claim_uid}-{digest[:5]}"


def _script(cfg: MpsConfig, uuids: Sequence[str]) -> str:
    """Our own start script: start the control daemon, apply the claim's defaults, keep the log open."""
    lines = ["set -e", f"{CONTROL_BINARY} -d{' -M' if cfg.multi_user else ''}"]
    if cfg.default_active_thread_percentage is not None:
        lines.append(f"echo set_default_active_thread_percentage {cfg.default_active_thread_percentage} "
                     f"| {CONTROL_BINARY}")
    limits: dict[str, str] = {}
    if cfg.default_pinned_device_memory_limit is not None:
        limits = {u: cfg.default_pinned_device_memory_limit for u in uuids}
    limits.update(cfg.default_per_device_pinned_memory_limit)
    for dev, limit in sorted(limits.items()):
        lines.append(f"echo set_default_device_pinned_mem_limit {dev} {limit} | {CONTROL_BINARY}")
    lines.append("tail -n +1 -f /driver-root/var/log/nvidia-mps/control.log")
    return "\n".join(lines)


@dataclass
class MpsDaemons:
    """Start, check and stop the per-claim MPS control-daemon Deployments of one node's plugin."""

    api_client: Any
    """``kubernetes.client.ApiClient`` of the plugin (its service account)."""
    namespace: str
    """The driver's namespace (``NAMESPACE`` env of the plugin container)."""
    node: str
    """Node the daemons are pinned to."""
    image: str
    """``IMAGE_NAME``: the driver image."""
    gates: Mapping[str, bool]
    """Explicit gates; the complete effective map is rendered into the daemon's ``FEATURE_GATES``."""
    image_pull_policy: str = ""
    """``IMAGE_PULL_POLICY``; empty = the Kubernetes default."""
    service_account: str = ""
    """``SERVICE_ACCOUNT_NAME``; empty = the namespace default."""
    image_pull_secrets: Sequence[str] = ()
    """``IMAGE_PULL_SECRETS`` names."""
    plugins_dir: str = "/var/lib/kubelet/plugins"
    """``KUBELET_PLUGINS_DIRECTORY_PATH``: the daemons' pipe/shm/log dirs live under it."""
    driver_root: str = "/"
    """``NVIDIA_DRIVER_ROOT`` mounted into the daemon at ``/driver-root``."""
    backoff: Backoff = field(default_factory=Backoff)
    """Readiness back-off."""
    log: Callable[[logs.LogLine], None] = lambda _line: None
    """The plugin's logger."""
    started: dict[str, str] = field(default_factory=dict)
    """Deployment name → daemon id, for daemons this process started (the real plugin's ``rootDir`` check)."""

    def name(self, claim_uid: str, uuids: Sequence[str]) -> str:
        return NAME_PREFIX + daemon_id(claim_uid, uuids)

    def deployment(self, claim_uid: str, uuids: Sequence[str], cfg: MpsConfig) -> dict[str, Any]:
        """The Deployment body for a claim's daemon."""
        ident = daemon_id(claim_uid, uuids)
        name = NAME_PREFIX + ident
        root = f"{self.plugins_dir.rstrip('/')}/gpu.nvidia.com/mps/{ident}"
        labels = {"app": name}
        container: dict[str, Any] = {
            "name": CONTAINER, "image": self.image, "securityContext": {"privileged": True},
            "command": ["sh", "-c"], "args": [_script(cfg, uuids)],
            "env": [{"name": "CUDA_VISIBLE_DEVICES", "value": ",".join(uuids)},
                    {"name": "FEATURE_GATES", "value": gate_table.render_env(gate_table.all_gates(self.gates))}],
            "volumeMounts": [{"name": "driver-root", "mountPath": "/driver-root"},
                             {"name": "mps-shm-directory", "mountPath": "/dev/shm"},
                             {"name": "mps-pipe-directory", "mountPath": "/driver-root/tmp/nvidia-mps"},
                             {"name": "mps-log-directory", "mountPath": "/driver-root/var/log/nvidia-mps"}],
        }
        if self.image_pull_policy:
            container["imagePullPolicy"] = self.image_pull_policy
        spec: dict[str, Any] = {
            "nodeName": self.node, "hostPID": True, "containers": [container],
            "volumes": [{"name": "driver-root", "hostPath": {"path": self.driver_root}},
                        {"name": "mps-shm-directory", "hostPath": {"path": f"{root}/shm"}},
                        {"name": "mps-pipe-directory", "hostPath": {"path": f"{root}/pipe"}},
                        {"name": "mps-log-directory", "hostPath": {"path": f"{root}/log"}}],
        }
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        if self.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in self.image_pull_secrets]
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace, "labels": dict(labels)},
            "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}},
        }

    def _apps(self) -> Any:
        from kubernetes import client as k8s

        return k8s.AppsV1Api(self.api_client)

    def _read(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self._apps().read_namespaced_deployment(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise OpaqueConfigError(f"failed to get deployment: {exc.reason}") from exc
        return dict(self.api_client.sanitize_for_serialization(obj))

    def start(self, claim_uid: str, uuids: Sequence[str], cfg: MpsConfig) -> str:
        """Create the daemon's Deployment unless it exists (``Start``); returns its name."""
        from kubernetes.client.exceptions import ApiException

        name = self.name(claim_uid, uuids)
        self.started[name] = daemon_id(claim_uid, uuids)
        if self._read(name) is not None:
            return name
        self.log(logs.LogLine(0, f"Starting MPS control daemon for '{daemon_id(claim_uid, uuids)}', with settings: "
                              f"{_settings(cfg)}", "sharing.go", 228))
        try:
            self._apps().create_namespaced_deployment(self.namespace, self.deployment(claim_uid, uuids, cfg))
        except ApiException as exc:
            if exc.status != 409:
                raise OpaqueConfigError(f"error starting MPS control daemon: failed to create deployment: "
                                  f"{exc.reason}") from exc
        return name

    def _check(self, name: str) -> str | None:
        """One ``AssertReady`` attempt: None when ready, else the reason (the real texts)."""
        from kubernetes import client as k8s

        dep = self._read(name)
        if dep is None:
            return f'failed to get deployment: deployments.apps "{name}" not found'
        if ((dep.get("status") or {}).get("readyReplicas") or 0) != 1:
            return "waiting for MPS control daemon to come online"
        selector = ",".join(f"{k}={v}" for k, v in sorted(dep["spec"]["selector"]["matchLabels"].items()))
        pods = self.api_client.sanitize_for_serialization(
            k8s.CoreV1Api(self.api_client).list_namespaced_pod(self.namespace, label_selector=selector))
        items = pods.get("items") or []
        if len(items) != 1:
            return f"unexpected number of pods in deployment: {len(items)}"
        statuses = (items[0].get("status") or {}).get("containerStatuses") or []
        if len(statuses) != 1:
            return "unexpected number of container statuses in pod"
        if not statuses[0].get("ready"):
            return "control daemon not yet ready"
        return None

    def _wait_change(self, name: str, seconds: float) -> None:
        """Wait up to ``seconds`` for the Deployment to report a ready replica (a watch, not a sleep)."""
        from kubernetes import watch

        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in w.stream(self._apps().list_namespaced_deployment, self.namespace,  # type: ignore[no-untyped-call]
                                  field_selector=f"metadata.name={name}",
                                  timeout_seconds=max(1, math.ceil(seconds)), _request_timeout=seconds + 10):
                obj = self.api_client.sanitize_for_serialization(event["object"])
                if ((obj.get("status") or {}).get("readyReplicas") or 0) >= 1:
                    return
        finally:
            w.stop()  # type: ignore[no-untyped-call]

    def assert_ready(self, name: str) -> None:
        """``AssertReady``: up to ``backoff.steps`` checks; raises ``MPS control daemon is not yet ready: …``."""
        delays = self.backoff.delays()
        for attempt in range(self.backoff.steps):
            reason = self._check(name)
            if reason is None:
                return
            if attempt < len(delays):
                self._wait_change(name, delays[attempt])
        raise OpaqueConfigError(f"MPS control daemon is not yet ready: {reason}")

    def stop(self, claim_uid: str, uuids: Sequence[str]) -> None:
        """``Stop``: delete the Deployment (foreground) if this plugin started it."""
        from kubernetes import client as k8s
        from kubernetes.client.exceptions import ApiException

        name = self.name(claim_uid, uuids)
        ident = self.started.pop(name, None)
        if ident is None:
            return
        self.log(logs.LogLine(0, f"Stopping MPS control daemon for '{ident}'", "sharing.go", 434))
        try:
            self._apps().delete_namespaced_deployment(
                name, self.namespace, body=k8s.V1DeleteOptions(propagation_policy="Foreground"))
        except ApiException as exc:
            if exc.status != 404:
                self.started[name] = ident
                raise OpaqueConfigError(f"error stopping MPS control daemon: failed to delete deployment: "
                                  f"{exc.reason}") from exc


def _settings(cfg: MpsConfig) -> str:
    """A Go ``%+v``-like rendering of the MPS config for the start log line."""
    return (f"&{{DefaultActiveThreadPercentage:{cfg.default_active_thread_percentage} "
            f"DefaultPinnedDeviceMemoryLimit:{cfg.default_pinned_device_memory_limit} "
            f"DefaultPerDevicePinnedMemoryLimit:map{dict(sorted(cfg.default_per_device_pinned_memory_limit.items()))} "
            f"MultiUser:{str(cfg.multi_user).lower()}}}")


def run_mps_control(ctx: ContainerContext) -> int:
    """The daemon container: ``nvidia-cuda-mps-control -d`` + the defaults from the script, then stay up.

    It prints what the script's ``tail -f control.log`` would show (approximate texts, not verbatim), is
    Ready once running (the twin kubelet does not run the startup probe), and exits 0 on SIGTERM.
    """
    script = " ".join(ctx.argv)
    devices = ctx.env.get("CUDA_VISIBLE_DEVICES", "")
    ctx.stdout.write(f"Starting control daemon for devices {devices}\n")
    for line in script.splitlines():
        if line.startswith("echo set_default_"):
            ctx.stdout.write(line.split("|", 1)[0].removeprefix("echo ").strip() + "\n")
    ctx.stdout.write("startup complete\n")
    ctx.stop.wait()
    ctx.stdout.write("Control daemon exiting\n")
    return 0


__all__ = ["CONTROL_BINARY", "PIPE_DIRECTORY", "Backoff", "MpsDaemons", "daemon_id", "run_mps_control"]
