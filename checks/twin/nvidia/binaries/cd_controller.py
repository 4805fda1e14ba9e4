"""The compute-domain controller's ComputeDomain reconciliation, run while the emulated controller leads (§11.1–§11.3).

Per ComputeDomain (driverManaged): finalizer ``resource.nvidia.com/computeDomain`` on the CD; the workload
ResourceClaimTemplate (``spec.channel.resourceClaimTemplate.name`` in the CD's namespace), the daemon RCT and the
DaemonSet ``computedomain-daemon-<uid>`` in the driver namespace (nodeSelector on the node label the CD plugin
sets); ``status.nodes`` rebuilt from ComputeDomainCliques plus daemon pods without a clique (ComputeDomainCliques)
and the global status ``Ready``/``NotReady`` (§11.1). Deleting a CD deletes its objects, node labels and cliques,
then drops the finalizers. hostManaged: only the workload RCT, always ``Ready``.

The real controller is informer-driven; this one re-lists every :data:`RESYNC_S` (an emulator's resync, not a
test wait) — a CD change shows up within that period. Log lines carry the levels the CL2 verbosity test checks.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from checks.driver import computedomains as cd
from checks.driver import gates as gate_table
from checks.driver import logs, names
from checks.twin.nvidia.binaries.cd_daemon import round_trip
from kubetwin.kubelet.seam import ContainerContext

RESYNC_S = 0.5
"""How often the emulated controller re-lists ComputeDomains and their objects."""

_CLEANUP_EVERY = 20
"""Passes between the periodic cleanup's V6 line (and the logged list request), ~10 s as the real cleanup."""

StatusHook = Callable[[dict[str, int]], None]
"""Receives ComputeDomain counts per global status after each pass (the ``nvidia_dra_compute_domain_info``
gauge's input, §9.2)."""

_REFLECTED = ("*v1beta1.ComputeDomain", "*v1.DaemonSet", "*v1.ResourceClaimTemplate", "*v1.Pod",
              "*v1beta1.ComputeDomainClique")


def startup_lines(driver_namespace: str, max_nodes: int, gates: Mapping[str, bool]) -> list[logs.LogLine]:
    """``controller manager config`` (V0) and the informer lines (reflector.go V2/V3) at start (CL2)."""
    cfg = (f"{{driverName:{names.CD_DRIVER} driverNamespace:{driver_namespace} "
           f"additionalNamespaces:[] maxNodesPerIMEXDomain:{max_nodes} "
           f"imexMode:driverManaged featureGates:{gate_table.go_map_literal(gate_table.all_gates(gates))}}}")
    out = [logs.LogLine(0, f"controller manager config: {cfg}", "controller.go", 108)]
    for t in _REFLECTED:
        out.append(logs.LogLine(3, logs.structured("Listing and watching", type=t, reflector="pkg/nvidia.com/"
                                                   "informers/factory.go:160"), "reflector.go", 376))
        out.append(logs.LogLine(2, logs.structured("Caches populated", type=t, reflector="pkg/nvidia.com/"
                                                   "informers/factory.go:160"), "reflector.go", 403))
    return out


class Reconciler:
    """One controller's view of the cluster's ComputeDomains."""

    def __init__(self, client: Any, env: Mapping[str, str], gates: Mapping[str, bool],
                 write: Callable[[list[logs.LogLine]], None], on_status: StatusHook | None = None) -> None:
        from kubernetes import client as k8s

        self.client = client
        # Any: bodies are REST dicts, which the client accepts but its stubs do not declare.
        self.custom: Any = k8s.CustomObjectsApi(client)
        self.apps: Any = k8s.AppsV1Api(client)
        self.core: Any = k8s.CoreV1Api(client)
        self.resource: Any = k8s.ResourceV1Api(client)
        self.env = env
        self.gates = gate_table.effective(gates)
        self.all_gates = gate_table.all_gates(gates)
        self.write = write
        self.on_status = on_status
        self.ns = env.get("NAMESPACE") or names.NAMESPACE
        self.host_managed = (env.get("IMEX_MODE") or "") == "hostManaged"
        self.image = env.get("IMAGE_NAME") or f"{names.IMAGE_REPOSITORY}:{names.DEFAULT_IMAGE_TAG}"
        self.max_nodes = int(env.get("MAX_NODES_PER_IMEX_DOMAIN") or cd.MAX_NODES_PER_IMEX_DOMAIN)
        self.verbose = True
        """Whether this pass logs its list request (V6) — not every resync, or level 6 floods the log."""
        self.seen: dict[str, str] = {}
        """CD uid → resourceVersion last processed (V2 line once per change)."""

    def _sanitize(self, obj: Any) -> Any:
        return self.client.sanitize_for_serialization(obj)

    # -- one pass -----------------------------------------------------------------------------------------
    def pass_once(self) -> None:
        items = self.custom.list_cluster_custom_object(cd.API_GROUP, cd.API_VERSION, cd.CD_PLURAL)["items"]
        if self.verbose:
            self.write([round_trip("GET", f"/apis/{cd.API_GROUP}/{cd.API_VERSION}/{cd.CD_PLURAL}")])
        counts = {"Ready": 0, "NotReady": 0}
        for obj in items:
            meta = obj["metadata"]
            uid = str(meta["uid"])
            if self.seen.get(uid) != meta.get("resourceVersion"):
                self.write([logs.LogLine(2, f"Processing added or updated ComputeDomain: {meta['namespace']}/"
                                            f"{meta['name']}/{uid}", "computedomain.go", 338)])
            if meta.get("deletionTimestamp"):
                self._delete(obj)
                self.seen.pop(uid, None)
                continue
            obj = self._ensure(obj)
            status = self._update_status(obj)
            counts[status] += 1
            self.seen[uid] = str(obj["metadata"].get("resourceVersion"))
        if self.on_status is not None:
            self.on_status(counts)

    # -- creation -----------------------------------------------------------------------------------------
    def _ensure(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        if cd.FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), cd.FINALIZER]
            obj = self.custom.replace_namespaced_custom_object(cd.API_GROUP, cd.API_VERSION, meta["namespace"],
                                                               cd.CD_PLURAL, meta["name"], obj)
        uid = str(obj["metadata"]["uid"])
        spec = obj.get("spec") or {}
        channel = spec.get("channel") or {}
        mode = "Single" if self.host_managed else str(channel.get("allocationMode") or "Single")
        rct_name = str((channel.get("resourceClaimTemplate") or {}).get("name") or "")
        self._create_rct(meta["namespace"], rct_name, uid, "Workload", "channel", cd.CHANNEL_CLASS,
                         {"kind": "ComputeDomainChannelConfig", "domainID": uid, "allocationMode": mode})
        if not self.host_managed:
            self._create_rct(self.ns, cd.daemon_object_name(uid), uid, "Daemon", "daemon", cd.DAEMON_CLASS,
                             {"kind": "ComputeDomainDaemonConfig", "domainID": uid})
            self._create_daemonset(uid)
        return obj

    def _create(self, create: Callable[[], Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            create()
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _create_rct(self, namespace: str, name: str, uid: str, target: str, request: str, device_class: str,
                    params: dict[str, Any]) -> None:
        body = {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace, "finalizers": [cd.FINALIZER],
                         "labels": {cd.CD_LABEL: uid, cd.TARGET_LABEL: target}},
            "spec": {"spec": {"devices": {
                "requests": [{"name": request, "exactly": {"deviceClassName": device_class}}],
                "config": [{"requests": [request], "opaque": {"driver": names.CD_DRIVER, "parameters": {
                    "apiVersion": f"{cd.API_GROUP}/{cd.API_VERSION}", **params}}}],
            }}},
        }
        if not self._exists(lambda: self.resource.read_namespaced_resource_claim_template(name, namespace)):
            self._create(lambda: self.resource.create_namespaced_resource_claim_template(namespace, body))

    @staticmethod
    def _exists(read: Callable[[], Any]) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            read()
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def _create_daemonset(self, uid: str) -> None:
        name = cd.daemon_object_name(uid)
        if self._exists(lambda: self.apps.read_namespaced_daemon_set(name, self.ns)):
            return
        self._create(lambda: self.apps.create_namespaced_daemon_set(self.ns, self.daemonset_body(uid)))

    def daemonset_body(self, uid: str) -> dict[str, Any]:
        """The per-CD DaemonSet (§11.3), written from the reference's description."""
        name = cd.daemon_object_name(uid)
        labels = {cd.CD_LABEL: uid}
        verbosity = self.env.get("LOG_VERBOSITY_CD_DAEMON") or self.env.get("LOG_VERBOSITY") or "0"

        def field(path: str) -> dict[str, Any]:
            return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

        probe_cmd = [cd.BIN_DAEMON, "-v", "$(LOG_VERBOSITY)", "check"]
        pull_secrets = [{"name": s} for s in (self.env.get("CD_DAEMON_IMAGE_PULL_SECRET_NAMES") or "").split(",") if s]
        return {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": self.ns, "labels": labels, "finalizers": [cd.FINALIZER]},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {cd.CD_LABEL: uid},
                        "serviceAccountName": cd.DAEMON_SERVICE_ACCOUNT,
                        "imagePullSecrets": pull_secrets,
                        "tolerations": [{"operator": "Exists", "effect": e}
                                        for e in ("NoSchedule", "NoExecute", "PreferNoSchedule")],
                        "resourceClaims": [{"name": cd.DAEMON_CONTAINER, "resourceClaimTemplateName": name}],
                        "containers": [{
                            "name": cd.DAEMON_CONTAINER, "image": self.image,
                            "command": [cd.BIN_DAEMON, "-v", "$(LOG_VERBOSITY)", "run"],
                            "env": [
                                {"name": "MAX_NODES_PER_IMEX_DOMAIN", "value": str(self.max_nodes)},
                                {"name": "LOG_VERBOSITY", "value": verbosity},
                                {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
                                {"name": "FEATURE_GATES", "value": gate_table.render_env(self.all_gates)},
                                {"name": "POD_IP", **field("status.podIP")},
                                {"name": "POD_NAME", **field("metadata.name")},
                                {"name": "POD_NAMESPACE", **field("metadata.namespace")},
                                {"name": "POD_UID", **field("metadata.uid")},
                                {"name": "NODE_NAME", **field("spec.nodeName")},
                            ],
                            "resources": {"claims": [{"name": cd.DAEMON_CONTAINER}]},
                            "startupProbe": {"exec": {"command": probe_cmd}, "periodSeconds": 1,
                                             "failureThreshold": 1200},
                            "readinessProbe": {"exec": {"command": probe_cmd}, "periodSeconds": 10},
                            "livenessProbe": {"exec": {"command": probe_cmd}, "periodSeconds": 60,
                                              "failureThreshold": 20},
                        }],
                    },
                },
            },
        }

    # -- status -------------------------------------------------------------------------------------------
    def _nodes(self, uid: str) -> list[dict[str, Any]]:
        pods = self._sanitize(self.core.list_namespaced_pod(self.ns, label_selector=f"{cd.CD_LABEL}={uid}"))["items"]
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp") and (p.get("spec") or {}).get("nodeName")]
        by_node = {p["spec"]["nodeName"]: p for p in pods}
        nodes: list[dict[str, Any]] = []
        if self.gates["ComputeDomainCliques"]:
            cliques = self.custom.list_namespaced_custom_object(
                cd.API_GROUP, cd.API_VERSION, self.ns, cd.CLIQUE_PLURAL, label_selector=f"{cd.CD_LABEL}={uid}")
            for clique in cliques["items"]:
                for d in clique.get("daemons") or []:
                    if d.get("nodeName") in by_node:  # prune entries whose node has no daemon pod
                        nodes.append({"name": d["nodeName"], "ipAddress": d.get("ipAddress", ""),
                                      "cliqueID": d.get("cliqueID", ""), "index": d.get("index", 0),
                                      "status": d.get("status") or "NotReady"})
        listed = {n["name"] for n in nodes}
        for node, p in sorted(by_node.items()):
            labels = p["metadata"].get("labels") or {}
            if node in listed or labels.get(cd.CLIQUE_LABEL, None) != "":
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (p.get("status") or {}).get("conditions") or [])
            nodes.append({"name": node, "ipAddress": (p.get("status") or {}).get("podIP", ""), "cliqueID": "",
                          "index": -1, "status": "Ready" if ready else "NotReady"})
        return nodes

    def _update_status(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        old = obj.get("status") or {}
        if self.host_managed:
            nodes: list[dict[str, Any]] = []
            status = "Ready"
        else:
            if self.gates["ComputeDomainCliques"]:
                nodes = self._nodes(str(meta["uid"]))
            else:
                nodes = list(old.get("nodes") or [])
                listed = {n.get("name") for n in nodes}
                nodes += [n for n in self._nodes(str(meta["uid"])) if n["name"] not in listed]
            want = int(spec.get("numNodes") or 0)
            ready = len(nodes) >= want and all(n.get("status") == "Ready" for n in nodes)
            status = "Ready" if ready else "NotReady"
        new = {"status": status, **({"nodes": nodes} if nodes else {})}
        if old != new:
            patch = {"status": {"status": status, "nodes": nodes or None}}
            self.custom.patch_namespaced_custom_object_status(cd.API_GROUP, cd.API_VERSION, meta["namespace"],
                                                              cd.CD_PLURAL, meta["name"], patch)
        return status

    # -- deletion -----------------------------------------------------------------------------------------
    def _delete(self, obj: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        meta = obj["metadata"]
        uid = str(meta["uid"])
        rct = str(((obj.get("spec") or {}).get("channel") or {}).get("resourceClaimTemplate", {}).get("name") or "")
        targets: list[tuple[Callable[[], Any], Callable[[dict[str, Any]], Any], Callable[[], Any]]] = [
            (lambda: self.resource.read_namespaced_resource_claim_template(rct, meta["namespace"]),
             lambda body: self.resource.replace_namespaced_resource_claim_template(rct, meta["namespace"], body),
             lambda: self.resource.delete_namespaced_resource_claim_template(rct, meta["namespace"])),
        ]
        if not self.host_managed:
            name = cd.daemon_object_name(uid)
            targets += [
                (lambda: self.resource.read_namespaced_resource_claim_template(name, self.ns),
                 lambda body: self.resource.replace_namespaced_resource_claim_template(name, self.ns, body),
                 lambda: self.resource.delete_namespaced_resource_claim_template(name, self.ns)),
                (lambda: self.apps.read_namespaced_daemon_set(name, self.ns),
                 lambda body: self.apps.replace_namespaced_daemon_set(name, self.ns, body),
                 lambda: self.apps.delete_namespaced_daemon_set(name, self.ns)),
            ]
        for read, replace, delete in targets:
            with contextlib.suppress(ApiException):
                delete()
            with contextlib.suppress(ApiException):
                body = self._sanitize(read())
                if cd.FINALIZER in (body["metadata"].get("finalizers") or []):
                    body["metadata"]["finalizers"] = [f for f in body["metadata"]["finalizers"] if f != cd.FINALIZER]
                    replace(body)
        for node in self._sanitize(self.core.list_node(label_selector=f"{cd.CD_LABEL}={uid}"))["items"]:
            with contextlib.suppress(ApiException):
                self.core.patch_node(node["metadata"]["name"], {"metadata": {"labels": {cd.CD_LABEL: None}}})
        with contextlib.suppress(ApiException):
            self.custom.delete_collection_namespaced_custom_object(
                cd.API_GROUP, cd.API_VERSION, self.ns, cd.CLIQUE_PLURAL, label_selector=f"{cd.CD_LABEL}={uid}")
        self.write([logs.LogLine(6, "Cleanup: perform for *v1.DaemonSet objects", "cleanup.go", 97)])
        if cd.FINALIZER in (meta.get("finalizers") or []):
            meta["finalizers"] = [f for f in meta["finalizers"] if f != cd.FINALIZER]
            with contextlib.suppress(ApiException):
                self.custom.replace_namespaced_custom_object(cd.API_GROUP, cd.API_VERSION, meta["namespace"],
                                                             cd.CD_PLURAL, meta["name"], obj)


def run_reconciler(ctx: ContainerContext, gates: Mapping[str, bool], write: Callable[[list[logs.LogLine]], None],
                   leading: threading.Event, on_status: StatusHook | None = None) -> None:
    """Reconcile while ``leading`` is set, until the container stops (runs in its own thread)."""
    client = ctx.api_client()
    try:
        rec = Reconciler(client, ctx.env, gates, write, on_status)
        passes = 0
        while not ctx.stop.is_set() and not ctx.killed.is_set():
            if not leading.is_set():
                leading.wait(RESYNC_S)
                continue
            if passes == 0:
                write(startup_lines(rec.ns, rec.max_nodes, gates))
            rec.verbose = passes % _CLEANUP_EVERY == 0
            try:
                rec.pass_once()
            except Exception as exc:  # API hiccup or a racing delete: next pass retries
                write([logs.LogLine(0, f"error reconciling ComputeDomains: {exc}", "computedomain.go", 300, "E")])
            if rec.verbose:
                write([logs.LogLine(6, "Cleanup: perform for *v1.DaemonSet objects", "cleanup.go", 97)])
            passes += 1
            ctx.stop.wait(RESYNC_S)
    finally:
        client.close()


__all__ = ["RESYNC_S", "Reconciler", "run_reconciler", "startup_lines"]
