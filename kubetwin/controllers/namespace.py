"""Namespace lifecycle and the per-namespace ``default`` ServiceAccount (kubernetes-dra.md §8.2).

A deleted namespace stays ``Terminating`` while anything is left in it: the controller deletes every
namespaced object (pods gracefully, objects with finalizers wait for them), re-checks until the namespace is
empty, then drops the ``kubernetes`` finalizer so the namespace disappears.
"""

from __future__ import annotations

from typing import Any

from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from kubetwin.controllers.base import Controller, SharedInformers, delete_if_present

NAMESPACES = core("namespaces")
SERVICEACCOUNTS = core("serviceaccounts")


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(self, api: Any, informers: SharedInformers, *, recheck_s: float = 0.1) -> None:
        super().__init__(api, informers)
        self._recheck = recheck_s
        informers.get(NAMESPACES).add_handler(self.enqueue_obj)

    def sync(self, key: Any) -> None:
        _, name = key
        ns = self.api.try_get(NAMESPACES, None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for rt in self.api.registry.all():
            if not rt.namespaced:
                continue
            items, _ = self.api.list(rt, name, copy_objects=False)
            if not items:
                continue
            remaining += len(items)
            for obj in items:
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                delete_if_present(self.api, rt, name, obj["metadata"]["name"], propagation_policy="Background")
        if remaining:
            self.queue.add_after(key, self._recheck)
            return
        fins = [f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        ns.setdefault("spec", {})["finalizers"] = fins
        self.api.update(NAMESPACES, None, name, ns)


class ServiceAccountController(Controller):
    """Creates the ``default`` ServiceAccount in every active namespace (pods and helm expect it)."""

    name = "serviceaccount-controller"

    def __init__(self, api: Any, informers: SharedInformers) -> None:
        super().__init__(api, informers)
        informers.get(NAMESPACES).add_handler(self.enqueue_obj)
        informers.get(SERVICEACCOUNTS).add_handler(self._on_sa)

    def _on_sa(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if etype == "DELETED" and obj["metadata"]["name"] == "default":
            self.queue.add(("", obj["metadata"]["namespace"]))

    def sync(self, key: Any) -> None:
        _, name = key
        if self.live(NAMESPACES, key) is None:
            return
        if self.informers.get(SERVICEACCOUNTS).get(name, "default") is not None:
            return
        try:
            self.api.create(SERVICEACCOUNTS, name, {"metadata": {"name": "default", "namespace": name}})
        except ApiError as exc:
            if exc.code not in (409, 403):
                raise


__all__ = ["NamespaceController", "ServiceAccountController"]
