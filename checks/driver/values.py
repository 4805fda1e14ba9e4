"""Typed Helm values for the driver chart, producing the upstream values interface (reference §2).

Checks and notebooks build installs from :class:`DriverValues` instead of ad-hoc ``--set`` strings, so a
misspelt key is a type error here rather than a silently ignored value on the cluster. ``to_values()``
emits only what differs from the chart defaults plus the keys every install needs
(``gpuResourcesEnabledOverride``), the same way the upstream tests pass ``--set`` flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checks.driver import gates as gate_table
from checks.errors import UsageError


@dataclass
class DriverValues:
    """Values for one install/upgrade of ``dra-driver-nvidia-gpu``."""

    feature_gates: dict[str, bool] = field(default_factory=dict)
    """``featureGates.<Gate>``; only explicitly set gates are rendered into ``FEATURE_GATES``."""
    gpus_enabled: bool = True
    """``resources.gpus.enabled``."""
    compute_domains_enabled: bool = True
    """``resources.computeDomains.enabled`` (Lambda CI turns it off except on GB200/GB300/B200, §14.4)."""
    gpu_resources_enabled_override: bool = True
    """``gpuResourcesEnabledOverride``; the chart refuses ``gpus.enabled`` without it (§1.6)."""
    controller_replicas: int = 1
    """``controller.replicas``."""
    leader_election: bool = False
    """``controller.leaderElection.enabled``."""
    webhook_enabled: bool = False
    """``webhook.enabled``."""
    webhook_tls_mode: str = "cert-manager"
    """``webhook.tls.mode``: ``cert-manager`` or ``secret``."""
    webhook_secret_name: str = ""
    """``webhook.tls.secret.name`` (secret mode)."""
    webhook_ca_bundle: str = ""
    """``webhook.tls.secret.caBundle`` (base64 PEM) (secret mode)."""
    log_verbosity: int = 4
    """``logVerbosity`` (klog ``-v``); the bats suite uses 6."""
    image_tag: str = ""
    """``image.tag``; empty = ``v`` + appVersion."""
    nvidia_driver_root: str = "/"
    """``nvidiaDriverRoot``; Lambda uses ``/``."""
    kubelet_plugin_metrics: bool = True
    """``kubeletPlugin.metrics.enabled``."""
    name_override: str = ""
    """``nameOverride`` (migrations from the legacy chart name)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further values merged last (deep), for keys without a typed field."""

    def validate(self) -> None:
        """Reject values the binaries or chart would reject for reasons a user can fix before installing."""
        unknown = sorted(set(self.feature_gates) - set(gate_table.DEFAULTS))
        if unknown:
            raise UsageError(f"unknown feature gate(s) {', '.join(unknown)}", where="featureGates")
        if self.controller_replicas < 0:
            raise UsageError("must be >= 0", where="controller.replicas")
        if not 0 <= self.log_verbosity <= 10:
            raise UsageError("must be between 0 and 10", where="logVerbosity")

    def to_values(self) -> dict[str, Any]:
        """The values dict (what ``helm install -f`` would get)."""
        self.validate()
        values: dict[str, Any] = {
            "gpuResourcesEnabledOverride": self.gpu_resources_enabled_override,
            "resources": {
                "gpus": {"enabled": self.gpus_enabled},
                "computeDomains": {"enabled": self.compute_domains_enabled},
            },
            "logVerbosity": str(self.log_verbosity),
            "nvidiaDriverRoot": self.nvidia_driver_root,
            "controller": {
                "replicas": self.controller_replicas,
                "leaderElection": {"enabled": self.leader_election},
            },
            "webhook": {"enabled": self.webhook_enabled, "tls": {"mode": self.webhook_tls_mode}},
            "kubeletPlugin": {"metrics": {"enabled": self.kubelet_plugin_metrics}},
        }
        if self.feature_gates:
            values["featureGates"] = dict(sorted(self.feature_gates.items()))
        if self.image_tag:
            values["image"] = {"tag": self.image_tag}
        if self.webhook_secret_name or self.webhook_ca_bundle:
            values["webhook"]["tls"]["secret"] = {"name": self.webhook_secret_name, "caBundle": self.webhook_ca_bundle}
        if self.name_override:
            values["nameOverride"] = self.name_override
        _deep_merge(values, self.extra)
        return values

    def set_flags(self) -> list[str]:
        """The same values as ``--set k=v`` arguments (flattened), for logs and reproducible commands."""
        out: list[str] = []
        _flatten("", self.to_values(), out)
        return [x for pair in (("--set", f) for f in out) for x in pair]


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
        return
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    out.append(f"{prefix}={text}")
