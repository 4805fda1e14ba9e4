"""``Cluster``: one embedded Kubernetes — API, HTTPS server, controllers, scheduler, nodes and their kubelets —
started and stopped as a unit.

Everything runs in this process except the containers (local processes under ``run_dir``); :meth:`Cluster.stop`
kills every container and joins every thread, and a cluster made without ``run_dir`` deletes its temporary one.
Embedders add what is theirs around it: nodes with their labels (:meth:`Cluster.add_node`), emulated images and
DRA plugins (:mod:`kubetwin.kubelet.seam`), and how admission webhooks reach their Services
(:attr:`ClusterOptions.service_resolver`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from kubetwin import controlplane
from kubetwin.api.core import Api
from kubetwin.api.errors import ApiError
from kubetwin.api.exec import ExecTarget
from kubetwin.api.faults import Faults
from kubetwin.api.resources import core
from kubetwin.api.server import ApiServer, KubeVersion
from kubetwin.api.webhooks import MutatingWebhookAdmission, ServiceResolver, WebhookAdmission, no_endpoints
from kubetwin.controllers.base import SharedInformers
from kubetwin.controllers.daemonsets import DaemonSetController
from kubetwin.controllers.garbagecollector import GarbageCollector
from kubetwin.controllers.jobs import JobController
from kubetwin.controllers.namespace import NamespaceController, ServiceAccountController
from kubetwin.controllers.replicasets import DeploymentController, ReplicaSetController
from kubetwin.controllers.resourceclaim import ResourceClaimController
from kubetwin.errors import ConfigError
from kubetwin.kubelet.kubelet import Kubelet, KubeletConfig
from kubetwin.nodes import NODES, NodeAgent, NodeSpec, node_object
from kubetwin.scheduler.dra.state import Features
from kubetwin.scheduler.scheduler import Scheduler, SchedulerSettings

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class _Component(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


@dataclass
class ClusterOptions:
    """Knobs of a cluster (what the nodes are is the embedder's: :meth:`Cluster.add_node`)."""

    kubelet: KubeletConfig = field(default_factory=KubeletConfig)
    """Kubelet timings (tests shorten the crash-loop back-off)."""
    scheduler: bool = True
    """Run the scheduler; without it pods stay Pending (tests that bind by hand)."""
    server: bool = True
    """Serve HTTPS (off for in-process-only tests; then there is no kubeconfig)."""
    lease_interval_s: float = 10.0
    """Node Lease renewal period."""
    kube_version: str = "1.36"
    """Kubernetes version served (``/version``, discovery, kubelet version, DRA behaviour by minor)."""
    port: int = 0
    """HTTPS port on 127.0.0.1 (0: any free port)."""
    service_resolver: ServiceResolver = no_endpoints
    """How admission webhooks reach a Service's Ready pod (default: no endpoints, like a cluster without one)."""
    feature_gates: Mapping[str, bool] = field(default_factory=dict)
    """DRA feature gates set explicitly (kubeadm's ``featureGates``, e.g. Lambda CI's ``DRAExtendedResource=true``
    on 1.35) over the defaults of :attr:`kube_version`; the scheduler honours them and the control-plane pods
    show them."""
    control_plane_pods: bool = True
    """Publish kube-apiserver, kube-scheduler, kube-controller-manager and etcd mirror pods on the first node
    (:mod:`kubetwin.controlplane`), as a kubeadm cluster shows them."""


_DRA_GATES: dict[str, str] = {
    "prioritized_list": "DRAPrioritizedList",
    "admin_access": "DRAAdminAccess",
    "partitionable_devices": "DRAPartitionableDevices",
    "device_taints": "DRADeviceTaints",
    "consumable_capacity": "DRAConsumableCapacity",
    "binding_conditions": "DRADeviceBindingConditions",
    "extended_resource": "DRAExtendedResource",
}
"""Scheduler :class:`Features` field → the Kubernetes feature gate it stands for."""


def features_for(kube_version: str, gates: Mapping[str, bool]) -> Features:
    """The scheduler features of Kubernetes ``kube_version`` (``1.36``) with ``gates`` set explicitly."""
    try:
        minor = int(kube_version.removeprefix("v").split(".")[1])
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"kube version {kube_version!r} is not of the form 1.36", where="kube_version") from exc
    by_gate = {gate: name for name, gate in _DRA_GATES.items()}
    unknown = sorted(set(gates) - set(by_gate))
    if unknown:
        raise ConfigError(f"unknown DRA feature gate {unknown[0]!r} (known: {', '.join(sorted(by_gate))})",
                          where="feature_gates")
    return replace(Features.for_version(minor), **{by_gate[g]: bool(v) for g, v in gates.items()})


def feature_gates(features: Features) -> dict[str, bool]:
    """The DRA feature gates as the twin's scheduler honours them (rendered into the control-plane pods)."""
    return {gate: bool(getattr(features, name)) for name, gate in _DRA_GATES.items()}


class _Logs:
    """The ``pods/log`` source: routes to the kubelet of the pod's node."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def read(self, namespace: str, pod: str, container: str, *, previous: bool) -> bytes | None:
        k = self._cluster.kubelet_of(namespace, pod)
        return k.read(namespace, pod, container, previous=previous) if k else None

    def follow(self, namespace: str, pod: str, container: str, *, offset: int) -> Iterator[bytes]:
        k = self._cluster.kubelet_of(namespace, pod)
        if k is None:
            return iter(())
        return k.follow(namespace, pod, container, offset=offset)


class _Exec:
    """The ``pods/exec`` source: the running container's env and work dir from the kubelet of the pod's node."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def exec_target(self, namespace: str, pod: str, container: str) -> ExecTarget | None:
        k = self._cluster.kubelet_of(namespace, pod)
        spec = k.exec_spec(namespace, pod, container) if k else None
        if spec is None:
            return None
        sb = spec.sandbox
        if sb is not None and sb.ready.wait(10) and sb.shim_pid is not None:  # a shell in the container's view
            return ExecTarget(env=dict(spec.env), work_dir=spec.work_dir, enter_pid=sb.shim_pid,
                              has_command=lambda name: sb.find_command(name, spec.env.get("PATH", "")))
        return ExecTarget(env=dict(spec.env), work_dir=spec.work_dir, emulated=spec.program is not None)


class _Endpoints:
    """The ``pods/proxy`` endpoint source: servers an embedder registered outside the kubelet first
    (:attr:`Cluster.extra_endpoints`), else the kubelet of the pod's node (``Kubelet.endpoint``)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def endpoint(self, namespace: str, pod: str, port: int) -> tuple[str, int] | None:
        k = self._cluster.kubelet_of(namespace, pod)
        if k is None:
            return None
        return self._cluster.extra_endpoints(namespace, pod, port) or k.endpoint(namespace, pod, port)


def _no_extra_endpoints(namespace: str, pod: str, port: int) -> tuple[str, int] | None:
    return None


class Cluster:
    """An embedded Kubernetes cluster (context manager). Nodes are added after :meth:`start`."""

    def __init__(self, *, run_dir: Path | str | None = None, options: ClusterOptions | None = None) -> None:
        self.options = options or ClusterOptions()
        self._own_run_dir = run_dir is None
        # Absolute: container PATH entries and cwd-relative paths must not depend on the directory a process runs
        # in (a relative run dir made every container miss its injected tools).
        self.run_dir = Path(run_dir).resolve() if run_dir else Path(tempfile.mkdtemp(prefix="kubetwin-"))
        self.api = Api()
        self.server: ApiServer | None = None
        self.faults = Faults.from_env()
        """The fault switch (kubetwin.api.faults) shared by the HTTPS server, kubelets and node agents."""
        self.informers = SharedInformers(self.api)
        self.controllers: list[_Component] = []
        self.kubelets: dict[str, Kubelet] = {}
        self._agents: list[NodeAgent] = []
        self._started = False
        self._lock = threading.Lock()
        self._kubelet_args: dict[str, dict[str, Any]] = {}
        self.scheduler_settings = SchedulerSettings(features=features_for(self.options.kube_version,
                                                                          self.options.feature_gates))
        """The scheduler's settings: the DRA gates of the Kubernetes version, plus the explicit ones (what the
        control-plane pods show)."""
        self.extra_endpoints: Callable[[str, str, int], tuple[str, int] | None] = _no_extra_endpoints
        """Servers of a pod's port that emulated programs run without the kubelet's ``serve_address`` (the
        embedder knows them); None defers to the kubelet."""

    # -- accessors -----------------------------------------------------------------------------------
    @property
    def kube_version(self) -> str:
        return self.options.kube_version

    @property
    def kubeconfig(self) -> Path:
        """Path of the kubeconfig for real clients (kubectl, helm, the Python client)."""
        return self.run_dir / "kubeconfig"

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the cluster's HTTPS server is not running")
        return self.server.url

    @property
    def node_names(self) -> list[str]:
        return list(self.kubelets)

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for this cluster (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def kubelet_of(self, namespace: str, pod: str) -> Kubelet | None:
        """The kubelet of the node a pod is bound to (None: unknown pod, unbound, or a node without one)."""
        obj = self.api.try_get(core("pods"), namespace, pod)
        node = (obj or {}).get("spec", {}).get("nodeName")
        return self.kubelets.get(str(node)) if node else None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Cluster:
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
        api, opts = self.api, self.options
        for ns in SYSTEM_NAMESPACES:
            with contextlib.suppress(ApiError):
                api.create(core("namespaces"), None, {"metadata": {"name": ns}})
        if opts.server:
            self.server = ApiServer(api, port=opts.port, kube_version=opts.kube_version, log_source=_Logs(self),
                                    exec_source=_Exec(self), endpoint_source=_Endpoints(self), faults=self.faults)
            self.server.start()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.server.write_kubeconfig(self.kubeconfig)
        inf = self.informers
        self._watch_reboot_requests()
        self.controllers = [NamespaceController(api, inf), ServiceAccountController(api, inf),
                            GarbageCollector(api, inf), ReplicaSetController(api, inf),
                            DeploymentController(api, inf), DaemonSetController(api, inf), JobController(api, inf)]
        inf.start()
        for c in self.controllers:
            c.start()
        WebhookAdmission(api, opts.service_resolver).install()
        MutatingWebhookAdmission(api, opts.service_resolver).install()
        extras: list[_Component] = [Scheduler(api, self.scheduler_settings)] if opts.scheduler else []
        extras.append(ResourceClaimController(api))
        for extra in extras:
            extra.start()
            self.controllers.append(extra)

    def add_node(self, spec: NodeSpec) -> Kubelet:
        """Register a node (Node object + heartbeat) and start its kubelet; returns the kubelet."""
        api = self.api
        agent = NodeAgent(api, node_object(spec, kube_version=self.kube_version),
                          lease_interval_s=self.options.lease_interval_s, faults=self.faults)
        agent.start()
        self._agents.append(agent)
        kcfg = self.options.kubelet
        if self.server is not None:
            kcfg = replace(kcfg, api_port=self.server.port)
        factory = self.api_client if self.server is not None else None
        prefix = spec.pod_cidr.split("/", 1)[0].rsplit(".", 1)[0]
        self._kubelet_args[spec.name] = {"config": kcfg, "node_ip": spec.internal_ip, "pod_cidr_prefix": prefix,
                                         "api_client_factory": factory, "faults": self.faults}
        kubelet = Kubelet(api, spec.name, self.run_dir / "nodes" / spec.name, **self._kubelet_args[spec.name])
        kubelet.start()
        self.kubelets[spec.name] = kubelet
        if self.options.control_plane_pods and len(self.kubelets) == 1:
            self._publish_control_plane(spec.name)
        return kubelet

    def reboot_node(self, name: str) -> Kubelet:
        """Reboot a node: every container on it dies (the kubelet stops and kills them), the node comes back with a
        new ``status.nodeInfo.bootID``, and a fresh kubelet starts on the same node disk (its run dir: host root,
        hostPath volumes, plugin data) and brings the node's pods up again — DRA plugins must register anew, as
        after a real machine restart. Returns the new kubelet."""
        with self._lock:
            old = self.kubelets[name]
            old.stop()
            node = self.api.get(NODES, None, name)
            node.setdefault("status", {}).setdefault("nodeInfo", {})["bootID"] = str(uuid.uuid4())
            self.api.update(NODES, None, name, node, subresource="status")
            kubelet = Kubelet(self.api, name, self.run_dir / "nodes" / name, **self._kubelet_args[name])
            kubelet.start()
            self.kubelets[name] = kubelet
            return kubelet

    def _watch_reboot_requests(self) -> None:
        """Reboot a node when its :data:`REBOOT_ANNOTATION` changes to a new non-empty value: how a client that
        only talks to the API (a check's NodeDisruptor) asks the twin for what a cloud API's restart does."""
        seen: dict[str, str] = {}

        def handler(etype: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
            meta = obj.get("metadata") or {}
            name = str(meta.get("name") or "")
            value = str((meta.get("annotations") or {}).get(REBOOT_ANNOTATION) or "")
            if etype == "DELETED":
                seen.pop(name, None)
                return
            prev = seen.get(name)
            seen[name] = value
            if prev is None or not value or value == prev:
                return  # the first sight of a node is its state, not a request
            if name in self.kubelets:
                threading.Thread(target=self.reboot_node, args=(name,), name=f"reboot-{name}", daemon=True).start()

        self.informers.get(NODES).add_handler(handler)

    def _publish_control_plane(self, node_name: str) -> None:
        """Mirror pods of the in-process control plane on ``node_name`` (:mod:`kubetwin.controlplane`)."""
        version = self.server.version if self.server is not None else KubeVersion.parse(self.kube_version)
        port = self.server.port if self.server is not None else 6443
        served = sorted({rt.api_version for rt in self.api.registry.all() if rt.group == "resource.k8s.io"})
        controlplane.publish(self.api, self.api.get(core("nodes"), None, node_name),
                             git_version=version.git_version, api_port=port,
                             feature_gates=feature_gates(self.scheduler_settings.features), runtime_config=served)

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

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


REBOOT_ANNOTATION = "kubetwin.dev/reboot-request"
"""Node annotation: setting it to a new non-empty value reboots the node (:meth:`Cluster.reboot_node`)."""

__all__ = ["REBOOT_ANNOTATION", "SYSTEM_NAMESPACES", "Cluster", "ClusterOptions"]
