"""The driver configuration a check or notebook runs under, and installing it.

A :class:`DriverConfig` is hashable: the plugin sorts checks by configuration and installs each distinct one
once per run with ``helm upgrade --install`` — on a real cluster from the real chart, on a twin from the
twin's own chart (the runner passes ``--chart``); the code path is the same, and the notebooks install
through :func:`install_driver` too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from checks.catalog import Instance, compute_domains_enabled
from checks.driver import gates as G
from checks.driver import names
from checks.kube import helm
from checks.kube import wait as W
from checks.kube.client import ClusterClient
from checks.scenarios.readers import slice_devices

Obj = dict[str, Any]

UPSTREAM_CHART = "oci://registry.k8s.io/dra-driver-nvidia/charts/dra-driver-nvidia-gpu"
"""Where the real chart is published (nvidia-dra-driver.md §1.2)."""
RELEASE = "dra-lab-driver"
"""Helm release name the suite installs (object names follow the chart name, not the release: §1.3)."""


@dataclass(frozen=True)
class DriverConfig:
    """One installable configuration of the NVIDIA DRA driver."""

    gates: tuple[tuple[str, bool], ...] = ()
    """Feature gates set explicitly (others keep their defaults), as sorted (name, value) pairs."""
    gpus: bool = True
    """``resources.gpus.enabled`` (with ``gpuResourcesEnabledOverride=true``)."""
    compute_domains: bool = False
    """``resources.computeDomains.enabled``; upstream Lambda CI disables it except on *b200 types."""
    controller_replicas: int = 1
    """``controller.replicas`` (only rendered with compute domains)."""
    leader_election: bool = False
    """``controller.leaderElection.enabled``."""
    webhook: bool = False
    """``webhook.enabled``."""
    log_verbosity: int = 4
    """``logVerbosity``: the suite reads prepare/unprepare lines, which the driver logs at -v 4 and below."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Further ``--set``-style values as (dotted key, value) pairs."""

    @classmethod
    def make(cls, gates: Mapping[str, bool] | None = None, **kw: Any) -> DriverConfig:
        return cls(gates=tuple(sorted((gates or {}).items())), **kw)

    @property
    def key(self) -> str:
        """Short stable name for reports and sorting, e.g. ``default`` or ``DynamicMIG``."""
        parts = [f"{k}" if v else f"{k}=false" for k, v in self.gates]
        if self.compute_domains:
            parts.append("computeDomains")
        if self.webhook:
            parts.append("webhook")
        if not self.gpus:
            parts.append("no-gpus")
        if self.controller_replicas != 1:
            parts.append(f"controller×{self.controller_replicas}")
        if self.leader_election:
            parts.append("leaderElection")
        if self.log_verbosity != DriverConfig.log_verbosity:
            parts.append(f"v{self.log_verbosity}")
        parts += [f"{k}={v}" for k, v in self.extra]
        return ",".join(parts) or "default"

    def gate(self, name: str) -> bool:
        return dict(self.gates).get(name, G.DEFAULTS.get(name, False))

    def values(self, *, driver_root: str = "/", image_tag: str | None = None) -> dict[str, Any]:
        """Chart values in the upstream values interface (nvidia-dra-driver.md §2)."""
        vals: dict[str, Any] = {
            "gpuResourcesEnabledOverride": True,
            "nvidiaDriverRoot": driver_root,
            "logVerbosity": str(self.log_verbosity),
            "resources": {"gpus": {"enabled": self.gpus},
                          "computeDomains": {"enabled": self.compute_domains}},
            "featureGates": {k: v for k, v in self.gates},
            "controller": {"replicas": self.controller_replicas,
                           "leaderElection": {"enabled": self.leader_election}},
            "webhook": {"enabled": self.webhook},
        }
        if image_tag:
            vals["image"] = {"tag": image_tag}
        for dotted, value in self.extra:
            cur = vals
            *head, last = dotted.split(".")
            for part in head:
                cur = cur.setdefault(part, {})
            cur[last] = value
        return vals


def for_instance(cfg: DriverConfig, instance: Instance) -> DriverConfig:
    """``cfg`` as installed on ``instance``: compute domains switched on where upstream's Lambda CI enables them
    (``DISABLE_COMPUTE_DOMAINS=false`` on *b200/*gb200/*gb300, upstream-e2e-tests.md §4), so every check there
    runs with the controller and the CD plugin, as the B200 presubmit would."""
    if not cfg.compute_domains and compute_domains_enabled(instance):
        return dataclasses.replace(cfg, compute_domains=True)
    return cfg


DEFAULT = DriverConfig()
TIMESLICING = DriverConfig.make({"TimeSlicingSettings": True})
MPS = DriverConfig.make({"MPSSupport": True})
DYNAMIC_MIG = DriverConfig.make({"DynamicMIG": True})
DYNAMIC_MIG_TIMESLICING = DriverConfig.make({"DynamicMIG": True, "TimeSlicingSettings": True})

PLUGIN_SELECTOR = f"{names.component_label()}=kubelet-plugin"
"""Label selector of the kubelet-plugin pods (§1.4)."""


@dataclass
class InstallState:
    """What the suite has installed so far in this run (one per session)."""

    current: DriverConfig | None = None
    """Configuration currently installed by the suite, if any."""
    attempted: bool = False
    """An install was started: the release may exist even though :attr:`current` is None (interrupted or
    failed half-way), so the end of the run uninstalls it (issue 14: Ctrl-C during the install left it)."""
    installs: list[str] = field(default_factory=list)
    """Keys of the configurations installed, in order (goes into the results)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Configuration key → one line, for configurations whose install failed (later checks are not run)."""
    broken: str = ""
    """Set when helm itself failed (chart not found or not pullable): no configuration can be installed."""
    created_namespace: bool = False
    """The run created the driver namespace (and so removes it after uninstalling)."""


def claim_namespace(cluster: ClusterClient, run_id: str) -> bool:
    """Create the driver namespace, labelled as this run's, unless it exists; True when created here.

    helm's ``--create-namespace`` would create it unlabelled, and it stayed after every run (issue 14).
    """
    from kubernetes.client.exceptions import ApiException

    from checks.kube import objects as K
    from checks.kube.labels import CREATED_BY_RUN_LABEL

    if K.try_get(cluster, "namespaces", names.NAMESPACE) is not None:
        return False
    try:
        K.create(cluster, {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": names.NAMESPACE, "labels": {CREATED_BY_RUN_LABEL: run_id}}})
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def remove_created_namespace(cluster: ClusterClient, *, timeout_s: float) -> bool:
    """Delete the driver namespace if a run created it (:func:`claim_namespace`) and no release is left in it."""
    from checks.kube import objects as K
    from checks.kube.labels import CREATED_BY_RUN_LABEL

    ns = K.try_get(cluster, "namespaces", names.NAMESPACE)
    if ns is None or CREATED_BY_RUN_LABEL not in ((ns.get("metadata") or {}).get("labels") or {}):
        return False
    if helm.release_status(cluster, RELEASE, names.NAMESPACE) is not None:
        return False
    K.delete(cluster, "namespaces", names.NAMESPACE)
    W.wait_deleted(cluster, "namespaces", names.NAMESPACE, timeout=timeout_s)
    return True


def remove_release(cluster: ClusterClient, *, timeout_s: float) -> list[str]:
    """Uninstall the suite's release (only one dra-lab installed: never adopts) and the namespace a run
    created for it; returns what was removed, one line each."""
    removed: list[str] = []
    if helm.uninstall(cluster, RELEASE, names.NAMESPACE, timeout_s=timeout_s):
        removed.append(f"helm release {names.NAMESPACE}/{RELEASE}")
    if remove_created_namespace(cluster, timeout_s=timeout_s):
        removed.append(f"namespace {names.NAMESPACE}")
    return removed


def install_driver(cluster: ClusterClient, cfg: DriverConfig, *, chart: str = "", chart_version: str = "",
                   driver_root: str = "/", adopt: bool = False, timeout_s: float = 180.0) -> helm.ReleaseStatus:
    """``helm upgrade --install`` the driver with ``cfg`` and wait for the plugin pods (helm --wait is not
    enough, nvidia-dra-driver.md §14.2)."""
    return helm.upgrade_install(cluster, RELEASE, chart or UPSTREAM_CHART, names.NAMESPACE,
                                cfg.values(driver_root=driver_root),
                                helm.InstallOptions(version=chart_version or None, adopt=adopt,
                                                    wait_timeout_s=timeout_s))


def uninstall_driver(cluster: ClusterClient, *, adopt: bool = False) -> bool:
    """Remove the release installed by :func:`install_driver`."""
    return helm.uninstall(cluster, RELEASE, names.NAMESPACE, adopt=adopt)


def wait_slice_devices(cluster: ClusterClient, predicate: Callable[[list[Obj]], bool], *, timeout_s: float,
                       what: str) -> list[Obj]:
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
