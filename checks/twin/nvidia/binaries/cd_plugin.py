"""Emulated ``compute-domain-kubelet-plugin``: IMEX channel and daemon devices (reference nvidia-dra-driver.md §11).

Start: gates and IMEX settings validated; the IMEXDaemonsWithDNSNames driver-version check; the
``nvidia-caps-imex-channels`` major looked up (absent → the real start failure); the node's clique ID from the
fabric facts (:mod:`checks.twin.nvidia.fabric`) with the real ``identified fabric clique`` / ``no-clique
fallback`` lines (strict mode: CrashOnNVLinkFabricErrors). Then one ResourceSlice (pool = node) with
``channel-0`` and ``daemon-0``, and registration as DRA plugin ``compute-domain.nvidia.com``.

Prepare (per claim, under the node's prep/unprep lock per attempt; retryable errors retried for up to 45 s like
the driver's work queue): checkpoint ``PrepareStarted`` → strict config decode (permanent error) → channel:
channel 0 free, CD found and in the claim's namespace (permanent), node label ``resource.nvidia.com/
computeDomain=<uid>`` (so the CD's DaemonSet lands here), this node Ready in the clique / CD status, then the
channel nodes (only on a clique node); daemon: the CDI env (``CLIQUE_ID``, ``COMPUTE_DOMAIN_*``) → checkpoint
``PrepareCompleted``. Unprepare removes the node label (channel), deletes the entry, and marks a claim that never
completed ``PrepareAborted`` (90 s TTL). The checkpoint lives on the node (survives plugin restarts, like the
file under the plugin's data dir), so a restarted plugin cleans up stale ``PrepareStarted`` claims as in CM3.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from checks.driver import computedomains as cd
from checks.driver import configs, logs, names
from checks.driver import gates as gate_table
from checks.driver.configs import AllocatedDevice, ConfigEntry, OpaqueConfigError
from checks.twin.nvidia.binaries.metrics import MetricsServer, PluginMetrics, set_endpoint
from checks.twin.nvidia.channels import ImexChannels
from checks.twin.nvidia.fabric import FabricFacts, node_fabric
from kubetwin.kubelet.seam import ContainerContext, PreparedDevice, PrepareResult

STARTED = "PrepareStarted"
COMPLETED = "PrepareCompleted"
ABORTED = "PrepareAborted"
CD_DEVICE_TYPES = ("channel", "daemon", "unknown")
"""``device_type`` values of the CD plugin's prepared-devices gauge (§9.2)."""
ABORTED_TTL_S = 90.0
"""PrepareAborted entries expire after 2 × ErrorRetryMaxTimeout (§11.4)."""


@dataclass
class ClaimEntry:
    """One checkpoint entry (``PreparedClaim``)."""

    state: str
    namespace: str
    name: str
    result: PrepareResult | None = None
    domain: str = ""
    """CD uid of a channel claim (for the node label on unprepare)."""
    aborted_at: float = 0.0


_disk_lock = threading.Lock()
_checkpoints: dict[str, dict[str, ClaimEntry]] = {}


def node_checkpoint(node: str) -> dict[str, ClaimEntry]:
    """The plugin's checkpoint on ``node``'s disk (kept across plugin restarts for the twin's lifetime)."""
    with _disk_lock:
        return _checkpoints.setdefault(node, {})


class PermanentError(OpaqueConfigError):
    """Not retried (the driver's ``permanentError``)."""


class RetryableError(OpaqueConfigError):
    """Retried with back-off for up to :data:`cd.PREPARE_RETRY_TIMEOUT_S`."""


@dataclass
class CdPlugin:
    """The prepare/unprepare half of the CD plugin."""

    node: str
    clique_id: str
    major: int
    gates: Mapping[str, bool]
    driver_namespace: str
    client: Any
    """``kubernetes.client.ApiClient`` of the plugin's service account."""
    log: Callable[[logs.LogLine], None] = lambda _l: None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    retry_timeout_s: float = cd.PREPARE_RETRY_TIMEOUT_S
    metrics: PluginMetrics | None = None
    """§9.2 families for ``compute-domain.nvidia.com`` (device types channel/daemon); None = metrics disabled."""

    @property
    def checkpoint(self) -> dict[str, ClaimEntry]:
        return node_checkpoint(self.node)

    # -- API helpers ----------------------------------------------------------------------------------------
    def _custom(self) -> Any:
        from kubernetes import client as k8s

        return k8s.CustomObjectsApi(self.client)

    def _core(self) -> Any:
        from kubernetes import client as k8s

        return k8s.CoreV1Api(self.client)

    def read_claim(self, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes import client as k8s

        obj = k8s.ResourceV1Api(self.client).read_namespaced_resource_claim(name, namespace)
        return dict(self.client.sanitize_for_serialization(obj))

    def compute_domain(self, uid: str) -> dict[str, Any] | None:
        items = self._custom().list_cluster_custom_object(cd.API_GROUP, cd.API_VERSION, cd.CD_PLURAL)["items"]
        found = [o for o in items if o["metadata"].get("uid") == uid]
        if len(found) > 1:
            raise RetryableError("multiple ComputeDomains with the same UID")
        return found[0] if found else None

    # -- DRA service ----------------------------------------------------------------------------------------
    def prepare(self, claims: list[dict[str, str]]) -> dict[str, PrepareResult]:
        out: dict[str, PrepareResult] = {}
        for c in claims:
            start = time.monotonic()
            self._inflight("prepare", 1)
            try:
                out[c["uid"]] = res = self._prepare_with_retry(c)
            finally:
                self._inflight("prepare", -1)
            self._observe("prepare", start, ok=not res.error, error_type="prepare_devices")
        return out

    def _inflight(self, operation: str, delta: int) -> None:
        if self.metrics is not None:
            self.metrics.inflight.labels(names.CD_DRIVER, operation).inc(delta)

    def _observe(self, operation: str, start: float, *, ok: bool, error_type: str) -> None:
        """Counter and duration on success, error counter otherwise; prepared gauge from the checkpoint."""
        m = self.metrics
        if m is None:
            return
        if ok:
            m.requests.labels(names.CD_DRIVER, operation).inc()
            m.duration.labels(names.CD_DRIVER, operation).observe(time.monotonic() - start)
        else:
            errors = m.prepare_errors if operation == "prepare" else m.unprepare_errors
            errors.labels(names.CD_DRIVER, error_type).inc()
        counts: dict[str, int] = {}
        for e in self.checkpoint.values():
            for d in e.result.devices if e.state == COMPLETED and e.result else ():
                kind = "channel" if d.device_name.startswith("channel") else "daemon"
                counts[kind] = counts.get(kind, 0) + 1
        m.set_prepared(counts)

    def _prepare_with_retry(self, ref: Mapping[str, str]) -> PrepareResult:
        deadline = time.monotonic() + self.retry_timeout_s
        delay = 0.25
        while True:
            with self.lock:
                try:
                    return self._prepare_one(ref)
                except PermanentError as exc:
                    self.log(logs.LogLine(0, f"Permanent error preparing devices for claim {ref['uid']}: {exc}",
                                          "driver.go", 286))
                    return PrepareResult(error=self._error(ref, str(exc)))
                except OpaqueConfigError as exc:
                    last = str(exc)
            if time.monotonic() + delay > deadline or self.stop.is_set():
                return PrepareResult(error=self._error(ref, last))
            self.stop.wait(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _error(ref: Mapping[str, str], inner: str) -> str:
        return f"error preparing devices for claim '{ref['namespace']}/{ref['name']}:{ref['uid']}': {inner}"

    def _prepare_one(self, ref: Mapping[str, str]) -> PrepareResult:
        uid = ref["uid"]
        entry = self.checkpoint.get(uid)
        if entry is not None and entry.state == COMPLETED and entry.result is not None:
            self.log(logs.LogLine(4, f"Skip prepare: claim already in PrepareCompleted state: {ref['namespace']}/"
                                     f"{ref['name']}:{uid}", "device_state.go", 202))
            return entry.result
        if entry is not None and entry.state == ABORTED:
            raise PermanentError(f"stale prepare for claim {ref['namespace']}/{ref['name']}:{uid}: claim prepare "
                                 "was already aborted")
        claim = self.read_claim(ref["namespace"], ref["name"])
        alloc = (claim.get("status") or {}).get("allocation")
        if not alloc:
            raise PermanentError(f"no allocation set in ResourceClaim {ref['name']} in namespace {ref['namespace']}")
        self.checkpoint[uid] = ClaimEntry(STARTED, ref["namespace"], ref["name"])
        try:
            devices, domain = self._prepare_devices(claim)
        except PermanentError as exc:
            raise PermanentError(f"prepare devices failed: {exc}") from exc
        except OpaqueConfigError as exc:
            raise RetryableError(f"prepare devices failed: {exc}") from exc
        result = PrepareResult(devices=tuple(devices))
        self.checkpoint[uid] = ClaimEntry(COMPLETED, ref["namespace"], ref["name"], result, domain)
        ids = " ".join(i for d in devices for i in d.cdi_device_ids)
        self.log(logs.LogLine(1, f"Prepared devices for claim '{ref['namespace']}/{ref['name']}:{uid}': [{ids}]",
                              "driver.go", 290))
        return result

    def _prepare_devices(self, claim: dict[str, Any]) -> tuple[list[PreparedDevice], str]:
        uid = str(claim["metadata"]["uid"])
        alloc = (claim.get("status") or {}).get("allocation") or {}
        results = [r for r in (alloc.get("devices") or {}).get("results") or []
                   if r.get("driver") == names.CD_DRIVER and r.get("pool") == self.node]
        entries = (alloc.get("devices") or {}).get("config") or []
        try:
            decoded = configs.opaque_configs(
                [ConfigEntry.from_api(e) for e in entries if e.get("source") == "FromClass"],
                [ConfigEntry.from_api(e) for e in entries if e.get("source") != "FromClass"],
                driver=names.CD_DRIVER)
        except OpaqueConfigError as exc:
            raise PermanentError(f"error generating configResultsMap: {exc}") from exc
        allocated = [AllocatedDevice(r["request"], r["device"], "channel" if r["device"].startswith("channel")
                                     else "daemon") for r in results]
        chosen: dict[str, configs.OpaqueConfig] = {}
        for a in allocated:
            for requests, cfg in reversed(decoded):
                if cfg.applies_to(a.device_type) and (not requests or a.request.split("/", 1)[0] in requests):
                    chosen[a.device] = cfg
                    break
            else:
                raise PermanentError(f"error generating configResultsMap: no config found for device {a.device}")
        out: list[PreparedDevice] = []
        domain = ""
        for a in allocated:
            cfg = chosen[a.device]
            if a.device_type == "channel":
                domain = cfg.domain_id
                out.append(self._channel(claim, uid, a, cfg))
            else:
                out.append(self._daemon(claim, uid, a, cfg))
        return out, domain

    def _channel(self, claim: dict[str, Any], uid: str, a: AllocatedDevice,
                 cfg: configs.OpaqueConfig) -> PreparedDevice:
        for other_uid, e in self.checkpoint.items():
            if other_uid != uid and e.state == COMPLETED and e.domain:
                raise RetryableError(f"error applying config: allocation failed: channel 0 already allocated by "
                                     f"claim {other_uid} (according to checkpoint)")
        domain = self.compute_domain(cfg.domain_id)
        if domain is None:
            raise PermanentError(f"error applying config: error asserting ComputeDomain's namespace: "
                                 f"ComputeDomain not found: {cfg.domain_id}")
        if domain["metadata"]["namespace"] != claim["metadata"]["namespace"]:
            raise PermanentError(f"error applying config: error asserting ComputeDomain's namespace: "
                                 f"{cd.NAMESPACE_ERROR}")
        self._add_node_label(cfg.domain_id)
        if not self._node_ready(domain):
            raise RetryableError(f"error applying config: {cd.NOT_READY_ERROR}")
        channels: tuple[int, ...] = ()
        if self.clique_id:
            channels = tuple(range(cd.MAX_CHANNELS)) if cfg.allocation_mode == "All" else (0,)
        return PreparedDevice(
            request_names=(a.request.split("/", 1)[0],), pool_name=self.node, device_name=a.device,
            cdi_device_ids=(cd.cdi_claim_id(uid, a.device),) if channels else (),
            view=ImexChannels(self.major, channels) if channels else None)

    def _daemon(self, claim: dict[str, Any], uid: str, a: AllocatedDevice,
                cfg: configs.OpaqueConfig) -> PreparedDevice:
        domain = self.compute_domain(cfg.domain_id)
        if domain is None:
            raise RetryableError(f"error applying config: compute domain not found: {cfg.domain_id}")
        env = {"CLIQUE_ID": self.clique_id, "COMPUTE_DOMAIN_UUID": cfg.domain_id,
               "COMPUTE_DOMAIN_NAME": str(domain["metadata"]["name"]),
               "COMPUTE_DOMAIN_NAMESPACE": str(domain["metadata"]["namespace"])}
        return PreparedDevice(request_names=(a.request.split("/", 1)[0],), pool_name=self.node, device_name=a.device,
                              cdi_device_ids=(cd.CDI_BASE_ID, cd.cdi_claim_id(uid, a.device)), env=env)

    def _add_node_label(self, domain_uid: str) -> None:
        node = self._core().read_node(self.node)
        current = (node.metadata.labels or {}).get(cd.CD_LABEL)
        if current == domain_uid:
            return
        if current:
            raise RetryableError(f"error applying config: error adding Node label for ComputeDomain: "
                                 f"{cd.LABEL_CONFLICT}")
        self._core().patch_node(self.node, {"metadata": {"labels": {cd.CD_LABEL: domain_uid}}})

    def _remove_node_label(self, domain_uid: str) -> None:
        node = self._core().read_node(self.node)
        if (node.metadata.labels or {}).get(cd.CD_LABEL) == domain_uid:
            self._core().patch_node(self.node, {"metadata": {"labels": {cd.CD_LABEL: None}}})

    def _node_ready(self, domain: dict[str, Any]) -> bool:
        if gate_table.effective(self.gates)["ComputeDomainCliques"] and self.clique_id:
            from kubernetes.client.exceptions import ApiException

            name = cd.clique_object_name(str(domain["metadata"]["uid"]), self.clique_id)
            try:
                clique = self._custom().get_namespaced_custom_object(
                    cd.API_GROUP, cd.API_VERSION, self.driver_namespace, cd.CLIQUE_PLURAL, name)
            except ApiException:
                clique = {}
            for d in clique.get("daemons") or []:
                if d.get("nodeName") == self.node:
                    return bool(d.get("status") == "Ready")
        for n in (domain.get("status") or {}).get("nodes") or []:
            if n.get("name") == self.node:
                return bool(n.get("status") == "Ready")
        return False

    def unprepare(self, claims: list[dict[str, str]]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.lock:
            for c in claims:
                start = time.monotonic()
                self._inflight("unprepare", 1)
                try:
                    out[c["uid"]] = self._unprepare_one(c)
                finally:
                    self._inflight("unprepare", -1)
                self._observe("unprepare", start, ok=not out[c["uid"]], error_type="unprepare_devices")
        return out

    def _unprepare_one(self, ref: Mapping[str, str]) -> str:
        entry = self.checkpoint.get(ref["uid"])
        claim_text = f"{ref['namespace']}/{ref['name']}"
        if entry is None:
            return ""
        if entry.state == ABORTED:
            self.log(logs.LogLine(0, f"Unprepare noop: claim in PrepareAborted state: {claim_text}",
                                  "device_state.go", 330))
            return ""
        try:
            if entry.domain:
                self._remove_node_label(entry.domain)
        except Exception as exc:  # API hiccup: the kubelet retries
            return f"unprepare devices failed: error removing Node label for ComputeDomain: {exc}"
        if entry.state == COMPLETED:
            del self.checkpoint[ref["uid"]]
        else:
            entry.state, entry.aborted_at = ABORTED, time.monotonic()
            self.log(logs.LogLine(0, f"Marked claim PrepareAborted in checkpoint: {claim_text}",
                                  "device_state.go", 326))
        return ""

    def cleanup_stale(self) -> None:
        """Startup cleanup of the checkpoint (``cleanup.go``): expired aborted entries dropped; PrepareStarted
        claims whose ResourceClaim is gone are unprepared and marked aborted; others left alone."""
        from kubernetes.client.exceptions import ApiException

        now = time.monotonic()
        for uid, e in list(self.checkpoint.items()):
            text = f"{e.namespace}/{e.name}"
            if e.state == ABORTED:
                if now - e.aborted_at >= ABORTED_TTL_S:
                    del self.checkpoint[uid]
                continue
            if e.state != STARTED:
                continue
            try:
                claim = self.read_claim(e.namespace, e.name)
                gone = claim["metadata"].get("uid") != uid
            except ApiException as exc:
                gone = exc.status == 404
            if not gone:
                self.log(logs.LogLine(0, f"Checkpointed RC cleanup: partially prepared claim not stale: {text}",
                                      "cleanup.go", 120))
                continue
            e.state, e.aborted_at = ABORTED, now
            self.log(logs.LogLine(0, f"Marked claim PrepareAborted in checkpoint: {text}", "device_state.go", 326))
            self.log(logs.LogLine(0, f"Checkpointed RC cleanup: unprepared stale claim: {text}", "cleanup.go", 131))


def _startup_fabric(node_gpus: list[Any], fabric: FabricFacts, gates: Mapping[str, bool]) -> tuple[str, list[
        logs.LogLine]]:
    """The clique ID and the per-device fabric lines (``getCliqueIDStrict``)."""
    lines: list[logs.LogLine] = []
    clique = fabric.clique_id
    for i, g in enumerate(node_gpus):
        if clique:
            cluster, _, n = clique.rpartition(".")
            lines.append(cd.fabric_identified(i, g.uuid, cluster, n))
        elif fabric.state == "completed":
            lines.append(cd.no_clique_zero_cluster(i, g.uuid))
        else:
            lines.append(cd.no_clique_not_supported(i, g.uuid))
    return clique, lines


def slice_body(node: str, node_uid: str, *, host_managed: bool = False) -> dict[str, Any]:
    """The CD plugin's one ResourceSlice: ``channel-0`` and (driverManaged) ``daemon-0``, no capacities."""
    devices = [{"name": cd.channel_device_name(0), "attributes": {"type": {"string": "channel"}, "id": {"int": 0}}}]
    if not host_managed:
        devices.append({"name": "daemon-0", "attributes": {"type": {"string": "daemon"}, "id": {"int": 0}}})
    return {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"generateName": names.slice_generate_name(0, node, names.CD_DRIVER),
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                                          "controller": True}]},
        "spec": {"driver": names.CD_DRIVER, "nodeName": node,
                 "pool": {"name": node, "generation": 1, "resourceSliceCount": 1}, "devices": devices},
    }


_IMEX_MODES = ("driverManaged", "hostManaged")


def imex_settings_error(env: Mapping[str, str], gates: Mapping[str, bool]) -> str | None:
    """``imex configuration validation failed: …`` for the IMEX_MODE/IMEX_ISOLATION env (§3.3)."""
    mode = env.get("IMEX_MODE") or "driverManaged"
    isolation = env.get("IMEX_ISOLATION") or "domain"
    if mode not in _IMEX_MODES:
        return f'unknown imex.mode "{mode}"'
    if mode == "hostManaged" and not gate_table.effective(gates)["HostManagedIMEXDaemon"]:
        return 'imex.mode="hostManaged" requires the HostManagedIMEXDaemon feature gate to be enabled'
    if isolation == "channel":
        return 'imex.isolation="channel" is not supported yet: per-workload IMEX channel allocation is not implemented'
    if isolation != "domain":
        return f'unknown imex.isolation "{isolation}": must be "domain" or "channel"'
    return None


def run_cd_plugin(ctx: ContainerContext, gates: dict[str, bool], verbosity: int,
                  write: Callable[[list[logs.LogLine]], None]) -> int:
    """``compute-domain-kubelet-plugin`` main after the common start (gates parsed, startup block logged)."""
    from checks.twin.nvidia.binaries import node_gpus, reconcile_slices

    error = imex_settings_error(ctx.env, gates)
    if error is not None:
        ctx.stderr.write(f"Error: imex configuration validation failed: {error}\n")
        return 1
    node = ctx.env.get("NODE_NAME") or ctx.node_name
    gpus = node_gpus(node)
    eff = gate_table.effective(gates)
    fabric = node_fabric(node)
    if eff["IMEXDaemonsWithDNSNames"] and gpus:
        found = gpus[0].driver_version
        if cd.version_key(found) < cd.version_key(cd.MIN_DRIVER_FOR_DNS_NAMES):
            ctx.stderr.write(f"Error: IMEXDaemonsWithDNSNames feature requires GPU driver version >= "
                             f"{cd.MIN_DRIVER_FOR_DNS_NAMES} but found {found}\n")
            return 1
        write(cd.driver_version_validation(found))
    if fabric.imex_major is None:
        ctx.stderr.write("Error: error creating driver: error getting nvcap for IMEX channel '0': error getting "
                         f"device major: no entry for '{cd.IMEX_PROC_DEVICES_NAME}' in /proc/devices\n")
        return 1
    clique, lines = _startup_fabric(gpus, fabric, gates)
    write(lines)
    client = ctx.api_client()
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        from kubernetes import client as k8s

        core, resource = k8s.CoreV1Api(client), k8s.ResourceV1Api(client)
        node_uid = str(client.sanitize_for_serialization(core.read_node(node))["metadata"]["uid"])
        metrics = PluginMetrics(names.CD_DRIVER, node, CD_DEVICE_TYPES) if ctx.env.get("HTTP_ENDPOINT") else None
        plugin = CdPlugin(node=node, clique_id=clique, major=fabric.imex_major, gates=gates,
                          driver_namespace=ctx.env.get("NAMESPACE") or ctx.namespace, client=client,
                          log=lambda line: write([line]), stop=ctx.stop, metrics=metrics)
        if metrics is not None:
            path = ctx.env.get("METRICS_PATH") or "/metrics"
            endpoint = ctx.env["HTTP_ENDPOINT"]
            port = int(endpoint.rsplit(":", 1)[-1] or 8081)
            try:
                server = MetricsServer(metrics, path, *ctx.serve_address(port)).start()
            except OSError:  # the port is still held by a SIGKILLed predecessor
                server = MetricsServer(metrics, path).start()
            stack.callback(server.stop)
            container = str(ctx.container.get("name", names.CONTAINER_COMPUTE_DOMAINS))
            set_endpoint(ctx.namespace, ctx.pod_name, container, server.url)
            stack.callback(set_endpoint, ctx.namespace, ctx.pod_name, container, None)
            write([logs.metrics_server(endpoint, path)])
            metrics.set_prepared({})
        plugin.cleanup_stale()
        ctx.register_dra_plugin(names.CD_DRIVER, plugin)
        host_managed = (ctx.env.get("IMEX_MODE") or "") == "hostManaged"
        existing = client.sanitize_for_serialization(
            resource.list_resource_slice(field_selector=f"spec.nodeName={node},spec.driver={names.CD_DRIVER}"))
        reconcile_slices(resource, list(existing.get("items") or []), [slice_body(node, node_uid,
                                                                                   host_managed=host_managed)])
        ctx.stop.wait()
        write([logs.shutdown()])
        return 0


__all__ = ["CdPlugin", "ClaimEntry", "imex_settings_error", "node_checkpoint", "run_cd_plugin", "slice_body"]
