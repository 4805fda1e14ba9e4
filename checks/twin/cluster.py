"""``Twin``: one embedded cluster for one Lambda instance type — API, HTTPS server, controllers, scheduler,
the node and its kubelet — started and stopped as a unit.

Everything runs in this process except the containers (local processes under ``run_dir``); :meth:`Twin.stop`
kills every container and joins every thread, and a twin made without ``run_dir`` deletes its temporary one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.twin.api.core import Api
from checks.twin.api.errors import ApiError
from checks.twin.api.exec import ExecTarget
from checks.twin.api.resources import core
from checks.twin.api.server import ApiServer
from checks.twin.controllers.base import SharedInformers
from checks.twin.controllers.gc import GarbageCollector
from checks.twin.controllers.namespace import NamespaceController, ServiceAccountController
from checks.twin.controllers.workloads import (
    DaemonSetController,
    DeploymentController,
    JobController,
    ReplicaSetController,
)
from checks.twin.kubelet.kubelet import Kubelet, KubeletConfig
from checks.twin.nodes import NodeAgent, NodeSpec, node_name, node_object

log = logging.getLogger(__name__)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class TwinOptions:
    """Knobs of a twin beyond the instance type."""

    kubelet: KubeletConfig = field(default_factory=KubeletConfig)
    """Kubelet timings (tests shorten the crash-loop back-off)."""
    scheduler: bool = True
    """Start the scheduler (``checks.twin.scheduler``) if it is importable."""
    server: bool = True
    """Serve HTTPS (off for in-process-only tests; then there is no kubeconfig)."""
    lease_interval_s: float = 10.0
    """Node Lease renewal period."""
    mig_enabled: bool | tuple[int, ...] = False
    """MIG mode of the node's GPUs (all, or these indices) as the emulated NVIDIA driver sees them."""


class _Logs:
    """The ``pods/log`` source: routes to the kubelet of the pod's node."""

    def __init__(self, twin: Twin) -> None:
        self._twin = twin

    def _kubelet(self, namespace: str, pod: str) -> Kubelet | None:
        obj = self._twin.api.try_get(core("pods"), namespace, pod)
        node = (obj or {}).get("spec", {}).get("nodeName")
        return self._twin.kubelets.get(str(node)) if node else None

    def read(self, namespace: str, pod: str, container: str, *, previous: bool) -> bytes | None:
        k = self._kubelet(namespace, pod)
        return k.read(namespace, pod, container, previous=previous) if k else None

    def follow(self, namespace: str, pod: str, container: str, *, offset: int) -> Iterator[bytes]:
        k = self._kubelet(namespace, pod)
        if k is None:
            return iter(())
        return k.follow(namespace, pod, container, offset=offset)


class _Exec:
    """The ``pods/exec`` source: the running container's env and work dir from the kubelet of the pod's node."""

    def __init__(self, twin: Twin) -> None:
        self._twin = twin

    def exec_target(self, namespace: str, pod: str, container: str) -> ExecTarget | None:
        obj = self._twin.api.try_get(core("pods"), namespace, pod)
        node = (obj or {}).get("spec", {}).get("nodeName")
        k = self._twin.kubelets.get(str(node)) if node else None
        spec = k.exec_spec(namespace, pod, container) if k else None
        if spec is None:
            return None
        return ExecTarget(env=dict(spec.env), work_dir=spec.work_dir, emulated=spec.program is not None)


class Twin:
    """An embedded cluster of one Lambda instance type (context manager)."""

    def __init__(self, instance: str = "gpu_1x_a10", *, kube_version: str = "1.36", run_dir: Path | str | None = None,
                 port: int = 0, options: TwinOptions | None = None) -> None:
        from checks.catalog import load_instance

        self.instance = load_instance(instance)
        self.kube_version = kube_version
        self.options = options or TwinOptions()
        self._own_run_dir = run_dir is None
        # Absolute: container PATH entries (the injected nvidia-smi) and cwd-relative paths must not depend on
        # the directory a process runs in (a relative run dir made every container miss its nvidia-smi).
        self.run_dir = Path(run_dir).resolve() if run_dir else Path(tempfile.mkdtemp(prefix="dra-lab-twin-"))
        self._port = port
        self.api = Api()
        self.server: ApiServer | None = None
        self.informers = SharedInformers(self.api)
        self.controllers: list[Any] = []
        self.kubelets: dict[str, Kubelet] = {}
        self._agents: list[NodeAgent] = []
        self._started = False
        self._lock = threading.Lock()

    # -- accessors -----------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """Path of the kubeconfig for real clients (kubectl, helm, the Python client)."""
        return self.run_dir / "kubeconfig"

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the twin's HTTPS server is not running")
        return self.server.url

    @property
    def node_names(self) -> list[str]:
        return list(self.kubelets)

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for this twin (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Twin:
        with self._lock:
            if self._started:
                return self
            self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        api = self.api
        for ns in SYSTEM_NAMESPACES:
            with contextlib.suppress(ApiError):
                api.create(core("namespaces"), None, {"metadata": {"name": ns}})
        if self.options.server:
            self.server = ApiServer(api, port=self._port, kube_version=self.kube_version, log_source=_Logs(self),
                                exec_source=_Exec(self))
            self.server.start()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.server.write_kubeconfig(self.kubeconfig)
        inf = self.informers
        self.controllers = [NamespaceController(api, inf), ServiceAccountController(api, inf),
                            GarbageCollector(api, inf), ReplicaSetController(api, inf),
                            DeploymentController(api, inf), DaemonSetController(api, inf), JobController(api, inf)]
        inf.start()
        for c in self.controllers:
            c.start()
        self._install_webhooks()
        for extra in self._optional_components():
            extra.start()
            self.controllers.append(extra)
        name = node_name(self.instance.instance_type)
        spec = NodeSpec(name=name, internal_ip="10.0.0.2", pod_cidr="10.244.0.0/24")
        agent = NodeAgent(api, node_object(self.instance, spec, kube_version=self.kube_version),
                          lease_interval_s=self.options.lease_interval_s)
        agent.start()
        self._agents.append(agent)
        self._register_nvidia(name)
        kcfg = self.options.kubelet
        if self.server is not None:
            kcfg = KubeletConfig(**{**kcfg.__dict__, "api_port": self.server.port})
        factory = self.api_client if self.server is not None else None
        kubelet = Kubelet(api, name, self.run_dir / "nodes" / name, config=kcfg, node_ip=spec.internal_ip,
                          pod_cidr_prefix="10.244.0", api_client_factory=factory)
        kubelet.start()
        self.kubelets[name] = kubelet

    def _install_webhooks(self) -> None:
        """Call validating webhooks (the NVIDIA driver's, when its chart enables it) on API writes; a service
        reference reaches the loopback port its Ready pod's emulated webhook server listens on."""
        from checks.twin.api.webhooks import WebhookAdmission
        from checks.twin.nvidia.binaries.webhook import resolve_service

        api = self.api
        WebhookAdmission(api, lambda ns, name, port: resolve_service(api, ns, name, port)).install()

    def _register_nvidia(self, node: str) -> None:
        """Let the kubelet run the driver image's emulated binaries and tell them the node's virtual GPUs."""
        from checks.twin.nvidia import binaries
        from checks.twin.nvidia.hardware import virtual_gpus

        binaries.register()
        binaries.set_node_gpus(node, virtual_gpus(self.instance, mig_enabled=self.options.mig_enabled))

    def _optional_components(self) -> list[Any]:
        """The scheduler and the resourceclaim controller, when their modules exist (engineer E's)."""
        out: list[Any] = []
        if self.options.scheduler:
            try:
                from checks.twin.scheduler.scheduler import Scheduler
            except ImportError:
                log.warning("checks.twin.scheduler is not available: pods will stay Pending")
            else:
                out.append(Scheduler(self.api))
        try:
            from checks.twin.controllers.resourceclaim import ResourceClaimController
        except ImportError:
            pass
        else:
            out.append(ResourceClaimController(self.api))
        return out

    def stop(self) -> None:
        """Stop everything: kubelets (killing containers), controllers, node agents, server, watches."""
        for k in self.kubelets.values():
            k.stop()
        for c in reversed(self.controllers):
            with contextlib.suppress(Exception):
                c.stop()
        for a in self._agents:
            a.stop()
        self.informers.stop()
        if self.server is not None:
            self.server.stop()
        self.api.store.close_all()
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Twin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["SYSTEM_NAMESPACES", "Twin", "TwinOptions"]
