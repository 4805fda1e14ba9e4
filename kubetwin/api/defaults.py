"""Server-side defaulting, as the apiserver applies it before validation and storage.

Clients read back what the server stored: ``kubectl get -o yaml`` shows ``dnsPolicy: ClusterFirst``, a
ResourceClaim comes back with ``allocationMode: ExactCount`` and ``count: 1`` (kubernetes-dra.md §1.2), a
Namespace with ``spec.finalizers: [kubernetes]`` (§8.2). Checks that compare objects, and the twin's own
controllers, rely on those values being present exactly as on a real cluster, so the twin applies the same
defaults (the ``SetDefaults_*`` functions of the Go API plus the defaulting admission plugins that every
cluster runs: ServiceAccount, DefaultTolerationSeconds, Priority).

``apply_defaults`` mutates the object in place (the Api calls it on its private copy) and never overwrites
a value the client set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Defaulter = Callable[[Obj], None]

NOT_READY_TOLERATION_SECONDS = 300
"""DefaultTolerationSeconds admission: ``node.kubernetes.io/not-ready`` and ``unreachable`` for 300 s."""


def _set(d: Obj, key: str, value: Any) -> None:
    if d.get(key) is None:
        d[key] = value


def _sub(d: Obj, key: str) -> Obj:
    value = d.get(key)
    if not isinstance(value, dict):
        value = {}
        d[key] = value
    return value


def image_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image (no digest), else ``IfNotPresent``."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _container(c: Obj) -> None:
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str):
        _set(c, "imagePullPolicy", image_pull_policy(c["image"]))
    _set(c, "resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            _set(field_ref, "apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                         ("failureThreshold", 3)):
                _set(p, k, v)


def pod_spec_defaults(spec: Obj) -> None:
    """``SetDefaults_PodSpec`` and container defaults: what pod templates in workloads also get."""
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "securityContext", {})
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)


def _qos_class(spec: Obj) -> str:
    """Pod QoS class from container requests/limits of cpu and memory (as the apiserver stores it)."""
    containers = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                  if isinstance(c, dict)]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or (name in requests and requests[name] != limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _pod(pod: Obj) -> None:
    spec = _sub(pod, "spec")
    pod_spec_defaults(spec)
    _set(spec, "enableServiceLinks", True)
    # Admission plugins every cluster runs (ServiceAccount, Priority, DefaultTolerationSeconds).
    _set(spec, "serviceAccountName", "default")
    _set(spec, "serviceAccount", spec["serviceAccountName"])
    _set(spec, "priority", 0)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(isinstance(t, dict) and t.get("key") == key and t.get("effect") in (None, "", "NoExecute")
                   for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": NOT_READY_TOLERATION_SECONDS})
    spec["tolerations"] = tolerations
    status = _sub(pod, "status")
    _set(status, "phase", "Pending")
    _set(status, "qosClass", _qos_class(spec))


def _template(obj: Obj) -> None:
    template = _sub(_sub(obj, "spec"), "template")
    pod_spec_defaults(_sub(template, "spec"))


def _deployment(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "replicas", 1)
    strategy = _sub(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(obj)


def _replicaset(obj: Obj) -> None:
    _set(_sub(obj, "spec"), "replicas", 1)
    _template(obj)


def _daemonset(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    strategy = _sub(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", 1)
        _set(rolling, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _template(obj)


def _job(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "completions", 1)
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    _set(spec, "podReplacementPolicy", "TerminatingOrFailed")
    _template(obj)


def _service(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        _set(spec, "internalTrafficPolicy", "Cluster")
        _set(spec, "ipFamilyPolicy", "SingleStack")
        _set(spec, "ipFamilies", ["IPv4"])
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            if "port" in port:
                _set(port, "targetPort", port["port"])


def _namespace(obj: Obj) -> None:
    meta = _sub(obj, "metadata")
    if isinstance(meta.get("name"), str):
        _sub(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    _set(_sub(obj, "spec"), "finalizers", ["kubernetes"])
    _set(_sub(obj, "status"), "phase", "Active")


def _secret(obj: Obj) -> None:
    _set(obj, "type", "Opaque")


def _device_request(req: Obj) -> None:
    """``allocationMode: ExactCount`` and ``count: 1`` (kubernetes-dra.md §1.2), toleration operator Equal."""
    _set(req, "allocationMode", "ExactCount")
    if req["allocationMode"] == "ExactCount" and not req.get("count"):
        req["count"] = 1
    for t in req.get("tolerations") or []:
        if isinstance(t, dict):
            _set(t, "operator", "Equal")


def claim_spec_defaults(spec: Obj) -> None:
    """Defaults of a ``ResourceClaimSpec`` (shared by claims and templates)."""
    for request in ((spec.get("devices") or {}).get("requests") or []):
        if not isinstance(request, dict):
            continue
        if isinstance(request.get("exactly"), dict):
            _device_request(request["exactly"])
        for sub in request.get("firstAvailable") or []:
            if isinstance(sub, dict):
                _device_request(sub)


def _resource_claim(obj: Obj) -> None:
    claim_spec_defaults(_sub(obj, "spec"))


def _resource_claim_template(obj: Obj) -> None:
    claim_spec_defaults(_sub(_sub(obj, "spec"), "spec"))


DEFAULTERS: dict[tuple[str, str], Defaulter] = {
    ("v1", "Pod"): _pod,
    ("v1", "Namespace"): _namespace,
    ("v1", "Service"): _service,
    ("v1", "Secret"): _secret,
    ("v1", "PodTemplate"): lambda o: pod_spec_defaults(_sub(_sub(o, "template"), "spec")),
    ("apps/v1", "Deployment"): _deployment,
    ("apps/v1", "ReplicaSet"): _replicaset,
    ("apps/v1", "DaemonSet"): _daemonset,
    ("apps/v1", "StatefulSet"): _replicaset,
    ("batch/v1", "Job"): _job,
    ("resource.k8s.io/v1", "ResourceClaim"): _resource_claim,
    ("resource.k8s.io/v1", "ResourceClaimTemplate"): _resource_claim_template,
}
"""Defaulting per (apiVersion, kind); kinds not listed have no server-side defaults."""


def apply_defaults(api_version: str, kind: str, obj: Obj) -> None:
    """Fill in the server-side defaults of ``kind`` in place; values the client set are kept."""
    fn = DEFAULTERS.get((api_version, kind))
    if fn is not None:
        fn(obj)
