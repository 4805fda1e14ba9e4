"""Generic object access by apiVersion/kind, as JSON dicts, through the official client's ApiClient.

Checks build objects as plain dicts (the shape of ``kubectl get -o json``); this module creates, reads,
patches and deletes them on any cluster without per-kind method names, custom resources included.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from checks.kube.retry import RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    api_version: str
    """``v1``, ``apps/v1``, ``resource.k8s.io/v1``..."""
    plural: str
    """URL resource name."""
    namespaced: bool
    """Whether objects live in a namespace."""

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


RESOURCES: dict[tuple[str, str], Resource] = {
    (r.api_version, kind): r for kind, r in {
        "Namespace": Resource("v1", "namespaces", False),
        "Pod": Resource("v1", "pods", True),
        "ConfigMap": Resource("v1", "configmaps", True),
        "Secret": Resource("v1", "secrets", True),
        "Service": Resource("v1", "services", True),
        "ServiceAccount": Resource("v1", "serviceaccounts", True),
        "Event": Resource("v1", "events", True),
        "Node": Resource("v1", "nodes", False),
        "Deployment": Resource("apps/v1", "deployments", True),
        "DaemonSet": Resource("apps/v1", "daemonsets", True),
        "ReplicaSet": Resource("apps/v1", "replicasets", True),
        "Job": Resource("batch/v1", "jobs", True),
        "Lease": Resource("coordination.k8s.io/v1", "leases", True),
        "DeviceClass": Resource("resource.k8s.io/v1", "deviceclasses", False),
        "ResourceClaim": Resource("resource.k8s.io/v1", "resourceclaims", True),
        "ResourceClaimTemplate": Resource("resource.k8s.io/v1", "resourceclaimtemplates", True),
        "ResourceSlice": Resource("resource.k8s.io/v1", "resourceslices", False),
        "DeviceTaintRule": Resource("resource.k8s.io/v1", "devicetaintrules", False),
        "ComputeDomain": Resource("resource.nvidia.com/v1beta1", "computedomains", True),
        "ComputeDomainClique": Resource("resource.nvidia.com/v1beta1", "computedomaincliques", True),
        "CustomResourceDefinition": Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
        "ValidatingWebhookConfiguration": Resource("admissionregistration.k8s.io/v1",
                                                   "validatingwebhookconfigurations", False),
        "NetworkPolicy": Resource("networking.k8s.io/v1", "networkpolicies", True),
    }.items()
}
BY_PLURAL: dict[str, Resource] = {r.plural: r for r in RESOURCES.values()}


def resource_for(obj_or_plural: Obj | str) -> Resource:
    if isinstance(obj_or_plural, str):
        return BY_PLURAL[obj_or_plural]
    key = (str(obj_or_plural.get("apiVersion")), str(obj_or_plural.get("kind")))
    try:
        return RESOURCES[key]
    except KeyError:
        raise KeyError(f"unknown kind {key[1]} ({key[0]})") from None


def request(cluster: ClusterClient, method: str, path: str, *, body: Any = None,
            query: list[tuple[str, Any]] | None = None, content_type: str = "application/json",
            raw: bool = False) -> Any:
    """One REST call; returns the decoded JSON, or the body text when ``raw`` (logs are text, not JSON)."""
    headers = {"Accept": "application/json", "Content-Type": content_type}

    def go() -> Any:
        api = cluster.api_client
        m, url, hdrs, payload, _ = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                                       header_params=headers, body=body,
                                                       auth_settings=["BearerToken"])
        resp = api.call_api(m, url, header_params=hdrs, body=payload)
        data = resp.read()  # type: ignore[no-untyped-call]
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if resp.status >= 400:
            raise ApiException(status=resp.status, reason=resp.reason, body=text)
        if raw:
            return text
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    if method == "GET":
        return call_with_retry(cluster.retry, go, what=f"GET {path}")
    # A write is retried only when the server said it did not process it (429 + Retry-After, as API priority
    # and fairness answers): a 5xx or a dropped connection may have applied it, so those are raised.
    return call_with_retry(_write_retry(cluster.retry), go, what=f"{method} {path}")


def _write_retry(policy: RetryPolicy) -> RetryPolicy:
    return dataclasses.replace(policy, retriable_statuses=frozenset({429}), retry_connection_errors=False)


def create(cluster: ClusterClient, obj: Obj, namespace: str | None = None) -> Obj:
    res = resource_for(obj)
    ns = namespace or (obj.get("metadata") or {}).get("namespace")
    out: Obj = request(cluster, "POST", res.path(ns if res.namespaced else None), body=obj)
    return out


def get(cluster: ClusterClient, plural: str, name: str, namespace: str | None = None) -> Obj:
    res = BY_PLURAL[plural]
    out: Obj = request(cluster, "GET", res.path(namespace, name))
    return out


def try_get(cluster: ClusterClient, plural: str, name: str, namespace: str | None = None) -> Obj | None:
    try:
        return get(cluster, plural, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_(cluster: ClusterClient, plural: str, namespace: str | None = None, *, label_selector: str | None = None,
          field_selector: str | None = None) -> list[Obj]:
    res = BY_PLURAL[plural]
    query: list[tuple[str, Any]] = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    out = request(cluster, "GET", res.path(namespace), query=query)
    return list(out.get("items") or [])


def delete(cluster: ClusterClient, plural: str, name: str, namespace: str | None = None, *,
           propagation: str = "Background", grace_period_s: int | None = None, missing_ok: bool = True) -> None:
    res = BY_PLURAL[plural]
    body: Obj = {"propagationPolicy": propagation}
    if grace_period_s is not None:
        body["gracePeriodSeconds"] = grace_period_s
    try:
        request(cluster, "DELETE", res.path(namespace, name), body=body)
    except ApiException as exc:
        if not (missing_ok and exc.status == 404):
            raise


def patch(cluster: ClusterClient, plural: str, name: str, body: Any, namespace: str | None = None, *,
          patch_type: str = "application/merge-patch+json", subresource: str | None = None) -> Obj:
    res = BY_PLURAL[plural]
    out: Obj = request(cluster, "PATCH", res.path(namespace, name, subresource), body=body, content_type=patch_type)
    return out


def pod_log(cluster: ClusterClient, namespace: str, pod: str, container: str | None = None, *,
            previous: bool = False, tail_lines: int | None = None) -> str:
    query: list[tuple[str, Any]] = []
    if container:
        query.append(("container", container))
    if previous:
        query.append(("previous", "true"))
    if tail_lines is not None:
        query.append(("tailLines", str(tail_lines)))
    return str(request(cluster, "GET", BY_PLURAL["pods"].path(namespace, pod, "log"), query=query, raw=True))


def log_until(cluster: ClusterClient, namespace: str, pod: str, container: str | None, until: Callable[[str], bool], *,
              timeout: float) -> str:
    """Follow a container's log (``follow=true``) until ``until(text)`` holds or the stream ends; return the text.

    A pod is Ready as soon as its containers start (no readiness probe), which can be before the workload has
    printed anything; following the log stream waits for the output itself instead of sleeping. Raises
    :class:`TimeoutError` naming the pod and what was read when ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    text = ""
    kwargs: dict[str, Any] = {"follow": True, "_preload_content": False,
                              "_request_timeout": (10.0, max(1.0, timeout))}
    if container:
        kwargs["container"] = container
    resp: Any = cluster.core.read_namespaced_pod_log(pod, namespace, **kwargs)
    try:
        for chunk in resp.stream(4096, decode_content=True):
            text += chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else str(chunk)
            if until(text):
                return text
            if time.monotonic() > deadline:
                break
    except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
        pass
    finally:
        resp.release_conn()
    if until(text):
        return text
    where = f"{namespace}/{pod}" + (f" container {container}" if container else "")
    raise TimeoutError(f"timed out after {timeout:g}s waiting for the log of {where}; read so far: {text[-300:]!r}")
