"""The object kinds this package lists, watches and deletes, as a registry.

Waits, cleanup and artifact collection all need "list this kind (in a namespace or everywhere)" and "delete
one of these"; the official client spreads that over per-kind method names. One table keeps the three users
in agreement about which kinds exist and how they are reached, instead of three if-chains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.errors import UsageError

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

ListFn = Callable[..., Any]


@dataclass(frozen=True)
class Kind:
    """How to reach one kind through the typed client."""

    plural: str
    """Resource name as kubectl spells it (``pods``, ``resourceclaims``)."""
    kind: str
    """``kind`` field value, for messages and artifacts."""
    namespaced: bool
    """Whether objects live in a namespace."""
    api: str
    """Attribute of :class:`~checks.kube.client.ClusterClient` holding the typed API (``core``, ``resource``...)."""
    singular: str
    """Snake-case stem of the client's method names (``pod``, ``resource_claim``)."""

    def list_fn(self, cluster: ClusterClient, namespace: str | None) -> ListFn:
        """The client's list method: namespaced when ``namespace`` is given, else across all namespaces.

        The returned callable takes keyword arguments only (the namespace is bound here), so waits and
        cleanup call every kind the same way.
        """
        api = getattr(cluster, self.api)
        if not self.namespaced:
            if namespace is not None:
                raise UsageError(f"{self.plural} are cluster-scoped; no namespace applies")
            fn: ListFn = getattr(api, f"list_{self.singular}")
            return fn
        if namespace is None:
            all_ns: ListFn = getattr(api, f"list_{self.singular}_for_all_namespaces")
            return all_ns
        namespaced: ListFn = getattr(api, f"list_namespaced_{self.singular}")

        def bound(**kwargs: Any) -> Any:
            return namespaced(namespace, **kwargs)

        return bound

    def delete(self, cluster: ClusterClient, name: str, namespace: str | None, *,
               propagation: str = "Background") -> Any:
        """Delete one object; dependents go through the garbage collector per ``propagation``."""
        api = getattr(cluster, self.api)
        body = {"propagationPolicy": propagation}
        if self.namespaced:
            return getattr(api, f"delete_namespaced_{self.singular}")(name, namespace, body=body)
        return getattr(api, f"delete_{self.singular}")(name, body=body)


@dataclass(frozen=True)
class CustomKind(Kind):
    """A CRD's kind, reached through ``CustomObjectsApi`` (group/version/plural arguments instead of method names)."""

    group: str = ""
    """API group, e.g. ``resource.nvidia.com``."""
    version: str = ""
    """API version, e.g. ``v1beta1``."""

    def list_fn(self, cluster: ClusterClient, namespace: str | None) -> ListFn:
        api = cluster.custom
        if namespace is None or not self.namespaced:
            return lambda **kw: api.list_cluster_custom_object(self.group, self.version, self.plural, **kw)
        return lambda **kw: api.list_namespaced_custom_object(self.group, self.version, namespace, self.plural,
                                                              **kw)

    def delete(self, cluster: ClusterClient, name: str, namespace: str | None, *,
               propagation: str = "Background") -> Any:
        api: Any = cluster.custom  # the stubs want V1DeleteOptions; the client sends a dict body as is
        body = {"propagationPolicy": propagation}
        if self.namespaced:
            return api.delete_namespaced_custom_object(self.group, self.version, namespace, self.plural, name,
                                                       body=body)
        return api.delete_cluster_custom_object(self.group, self.version, self.plural, name, body=body)


#: Every kind the kube layer handles, by plural name.
KINDS: dict[str, Kind] = {
    k.plural: k
    for k in (
        Kind("namespaces", "Namespace", False, "core", "namespace"),
        Kind("pods", "Pod", True, "core", "pod"),
        Kind("events", "Event", True, "core", "event"),
        Kind("configmaps", "ConfigMap", True, "core", "config_map"),
        Kind("nodes", "Node", False, "core", "node"),
        Kind("deployments", "Deployment", True, "apps", "deployment"),
        Kind("daemonsets", "DaemonSet", True, "apps", "daemon_set"),
        Kind("replicasets", "ReplicaSet", True, "apps", "replica_set"),
        Kind("jobs", "Job", True, "batch", "job"),
        Kind("resourceclaims", "ResourceClaim", True, "resource", "resource_claim"),
        Kind("resourceclaimtemplates", "ResourceClaimTemplate", True, "resource", "resource_claim_template"),
        Kind("deviceclasses", "DeviceClass", False, "resource", "device_class"),
        Kind("resourceslices", "ResourceSlice", False, "resource", "resource_slice"),
        Kind("leases", "Lease", True, "coordination", "lease"),
        CustomKind("computedomains", "ComputeDomain", True, "custom", "", "resource.nvidia.com", "v1beta1"),
        CustomKind("computedomaincliques", "ComputeDomainClique", True, "custom", "", "resource.nvidia.com",
                   "v1beta1"),
    )
}


def kind(plural: str) -> Kind:
    """Look a kind up by plural name; UsageError naming the known ones otherwise."""
    try:
        return KINDS[plural]
    except KeyError:
        raise UsageError(f"unknown kind {plural!r} (known: {', '.join(sorted(KINDS))})") from None
