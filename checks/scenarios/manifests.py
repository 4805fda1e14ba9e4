"""Our own equivalents of the upstream spec manifests (upstream-e2e-tests.md §3), as builders.

The upstream YAML files stay upstream; these functions build the same scenarios as plain dicts, so a check
can vary them (names, counts, selectors) and every object gets the run's labels. Names mirror the upstream
specs so failures read the same as the bats output people know.
"""

from __future__ import annotations

import copy
from typing import Any

from checks.driver import names

Obj = dict[str, Any]

GPU_CLASS = "gpu.nvidia.com"
MIG_CLASS = "mig.nvidia.com"
COMMON_IMAGE = "ubuntu:24.04"
MIG_IMAGE = "ubuntu:22.04"
COMMON_COMMAND = ["bash", "-c", "nvidia-smi -L; trap 'exit 0' TERM; sleep 9999 & wait"]
"""The upstream "common pod": one line per visible device, then idle until SIGTERM (§1.1)."""


def _meta(name: str, labels: dict[str, str], **extra: Any) -> Obj:
    meta: Obj = {"name": name, "labels": dict(labels)}
    meta.update(extra)
    return meta


def request(name: str = "gpu", device_class: str = GPU_CLASS, *, selectors: list[str] | None = None,
            count: int | None = None, all_devices: bool = False, admin: bool = False,
            capacity: dict[str, str] | None = None) -> Obj:
    """One ``spec.devices.requests[]`` entry in the v1 ``exactly`` form."""
    exactly: Obj = {"deviceClassName": device_class}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    if all_devices:
        exactly["allocationMode"] = "All"
    elif count is not None:
        exactly["allocationMode"] = "ExactCount"
        exactly["count"] = count
    if admin:
        exactly["adminAccess"] = True
    if capacity:
        exactly["capacity"] = {"requests": dict(capacity)}
    return {"name": name, "exactly": exactly}


def gpu_config(requests: list[str] | None = None, *, strategy: str | None = None,
               interval: str | None = None, mps: dict[str, Any] | None = None, kind: str = "GpuConfig",
               extra: dict[str, Any] | None = None) -> Obj:
    """An opaque ``GpuConfig``/``MigDeviceConfig`` entry for ``spec.devices.config`` (nvidia-dra-driver.md §5)."""
    params: Obj = {"apiVersion": names.CONFIG_API_VERSION, "kind": kind}
    if strategy:
        sharing: Obj = {"strategy": strategy}
        if interval is not None:
            sharing["timeSlicingConfig"] = {"interval": interval}
        if mps is not None:
            sharing["mpsConfig"] = mps
        params["sharing"] = sharing
    if extra:
        params.update(extra)
    entry: Obj = {"opaque": {"driver": names.GPU_DRIVER, "parameters": params}}
    if requests:
        entry["requests"] = list(requests)
    return entry


def claim_spec(requests: list[Obj], *, config: list[Obj] | None = None,
               constraints: list[Obj] | None = None) -> Obj:
    devices: Obj = {"requests": requests}
    if config:
        devices["config"] = config
    if constraints:
        devices["constraints"] = constraints
    return {"devices": devices}


def claim(name: str, labels: dict[str, str], spec: Obj) -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": _meta(name, labels),
            "spec": copy.deepcopy(spec)}


def claim_template(name: str, labels: dict[str, str], spec: Obj) -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": _meta(name, labels), "spec": {"metadata": {"labels": dict(labels)},
                                                      "spec": copy.deepcopy(spec)}}


def container(name: str = "ctr", *, claims: list[str | tuple[str, str]] | None = None,
              command: list[str] | None = None, image: str = COMMON_IMAGE,
              limits: dict[str, str] | None = None) -> Obj:
    """A container; ``claims`` entries are pod claim names or (claim, request) pairs."""
    c: Obj = {"name": name, "image": image, "command": list(command or COMMON_COMMAND)}
    res: Obj = {}
    if claims:
        res["claims"] = [{"name": x} if isinstance(x, str) else {"name": x[0], "request": x[1]} for x in claims]
    if limits:
        res["limits"] = dict(limits)
        res["requests"] = dict(limits)
    if res:
        c["resources"] = res
    return c


def pod(name: str, labels: dict[str, str], containers: list[Obj], *,
        claims: dict[str, tuple[str, str]] | None = None, restart_policy: str | None = None,
        grace_s: int | None = None, generate_name: bool = False) -> Obj:
    """A pod; ``claims`` maps pod claim name → ("template"|"claim", object name)."""
    meta = _meta(name, labels)
    if generate_name:
        meta = {"generateName": name, "labels": dict(labels)}
    spec: Obj = {"containers": containers}
    if claims:
        spec["resourceClaims"] = [
            {"name": pod_claim, ("resourceClaimTemplateName" if how == "template" else "resourceClaimName"): ref}
            for pod_claim, (how, ref) in claims.items()]
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if grace_s is not None:
        spec["terminationGracePeriodSeconds"] = grace_s
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def job(name: str, labels: dict[str, str], template: Obj, *, completions: int, parallelism: int) -> Obj:
    tpl = copy.deepcopy(template)
    tpl.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    tpl["spec"]["restartPolicy"] = "Never"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(name, labels),
            "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": 2,
                     "template": tpl}}


def deployment(name: str, labels: dict[str, str], template: Obj, *, replicas: int) -> Obj:
    tpl = copy.deepcopy(template)
    sel = {"app": name}
    tpl.setdefault("metadata", {}).setdefault("labels", {}).update({**labels, **sel})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, labels),
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel}, "template": tpl}}


def pod_template(containers: list[Obj], *, claims: dict[str, tuple[str, str]] | None = None) -> Obj:
    """A pod template (for Jobs/Deployments) built like :func:`pod` without object metadata."""
    p = pod("unused", {}, containers, claims=claims)
    return {"metadata": {"labels": {}}, "spec": p["spec"]}
