"""The kubelet's DRA side: registered plugins, NodePrepareResources/NodeUnprepareResources per pod, devices per
container (kubernetes-dra.md §6, §8.2).

Claims shared by several pods of the node are prepared once and unprepared when the last of them goes. Prepare
calls run off the node's sync worker (a plugin may wait for another pod of the same node); a deregistered
driver's ResourceSlices are wiped after the plugin manager's delay unless it registers again (§1.5).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from kubetwin.api.core import Api
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from kubetwin.kubelet.podstate import PodState
from kubetwin.kubelet.seam import DraPlugin, PreparedDevice, PrepareResult

log = logging.getLogger(__name__)
PREPARE_PENDING = "\x00prepare in flight"
"""``prepare`` result while a plugin's NodePrepareResources call is still running (no event, no back-off)."""
_PREPARE_INLINE_WAIT_S = 0.5
"""How long a sync waits for a prepare call before leaving it running in the background."""
EXTENDED_CLAIM = "\x00extended"
"""Pod-claim key of the scheduler-created claim for extended resources."""


class DraManager:
    """Plugins registered on one node and the claims prepared for its pods."""

    def __init__(self, api: Api, node_name: str, wipe_delay_s: float, stop: threading.Event,
                 requeue: Callable[[str], None]) -> None:
        self.api = api
        self._node = node_name
        self._wipe_delay_s = wipe_delay_s
        self._stop = stop
        self._requeue = requeue
        """Re-sync a pod (by uid) once a background prepare call finished."""
        self._lock = threading.RLock()
        self._plugins: dict[str, tuple[DraPlugin, object | None]] = {}
        self._registrations: dict[str, int] = {}
        self._claim_refs: dict[str, set[str]] = {}
        self._claim_results: dict[str, PrepareResult] = {}
        self._prepares: dict[tuple[str, str], Future[dict[str, PrepareResult]]] = {}

    # -- registration --------------------------------------------------------------------------------
    def register(self, driver: str, plugin: DraPlugin, owner: object | None) -> None:
        with self._lock:
            self._plugins[driver] = (plugin, owner)
            self._registrations[driver] = self._registrations.get(driver, 0) + 1

    def unregister(self, driver: str, owner: object | None) -> None:
        with self._lock:
            cur = self._plugins.get(driver)
            if cur is not None and (owner is None or cur[1] is owner):
                del self._plugins[driver]
                generation = self._registrations.get(driver, 0)
                threading.Thread(target=self._wipe_slices, args=(driver, generation), daemon=True,
                                 name=f"kubelet-wipe-{driver}").start()

    def owned_by(self, owner: object) -> list[str]:
        """Drivers whose registration belongs to ``owner`` (a container context)."""
        with self._lock:
            return [drv for drv, (_p, o) in self._plugins.items() if o is owner]

    def plugin(self, driver: str) -> DraPlugin | None:
        with self._lock:
            cur = self._plugins.get(driver)
            return cur[0] if cur else None

    def _wipe_slices(self, driver: str, generation: int) -> None:
        """Delete ``driver``'s slices of this node once the wiping delay passed without a new registration."""
        if self._stop.wait(self._wipe_delay_s):
            return
        with self._lock:
            if driver in self._plugins or self._registrations.get(driver, 0) != generation:
                return
        try:
            self.api.delete_collection(core("resourceslices"), None,
                                       field_selector=f"spec.nodeName={self._node},spec.driver={driver}")
        except ApiError as exc:
            log.warning("wiping ResourceSlices of %s on %s: %s", driver, self._node, exc.message)

    # -- prepare -------------------------------------------------------------------------------------
    @staticmethod
    def pod_claims(pod: dict[str, Any]) -> list[tuple[str, str]]:
        """(pod claim name, ResourceClaim name or "") for every claim the pod uses (§6 step 1)."""
        out: list[tuple[str, str]] = []
        statuses = {s.get("name"): s.get("resourceClaimName", "")
                    for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
        for rc in pod["spec"].get("resourceClaims") or []:
            if rc.get("resourceClaimName"):
                out.append((rc["name"], rc["resourceClaimName"]))
            else:
                out.append((rc["name"], str(statuses.get(rc["name"]) or "")))
        ext = (pod.get("status") or {}).get("extendedResourceClaimStatus")
        if ext and ext.get("resourceClaimName"):
            out.append((EXTENDED_CLAIM, ext["resourceClaimName"]))
        return out

    def prepare(self, st: PodState) -> str | None:
        """Prepare every claim of the pod: None when done, :data:`PREPARE_PENDING` while a call runs, else the
        error text of the ``FailedPrepareDynamicResources`` event."""
        claims = self.pod_claims(st.pod)
        if not claims:
            return None
        by_driver: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for pc_name, claim_name in claims:
            if not claim_name:
                return f'pod "{st.ns}/{st.name}": ResourceClaim not created yet'
            try:
                claim = self.api.get(core("resourceclaims"), st.ns, claim_name)
            except ApiError as exc:
                return f"fetch ResourceClaim {claim_name}: {exc.message}"
            cuid = claim["metadata"]["uid"]
            status = claim.get("status") or {}
            reserved = {r.get("uid") for r in status.get("reservedFor") or []}
            if not status.get("allocation") or st.uid not in reserved:
                return (f"pod {st.name} ({st.uid}) is not allowed to use ResourceClaim {claim_name} "
                        f"({cuid})")
            drivers = sorted({r.get("driver", "") for r in
                              ((status["allocation"].get("devices") or {}).get("results") or [])})
            for drv in drivers:
                by_driver.setdefault(drv, []).append((pc_name, claim))
            st.prepared_claims[pc_name] = (cuid, claim_name, ",".join(drivers))
        for drv, items in by_driver.items():
            plugin = self.plugin(drv)
            if plugin is None:
                return f"DRA driver {drv} is not registered"
            todo = [c for _n, c in items if c["metadata"]["uid"] not in self._claim_results]
            if todo:
                req = [{"namespace": c["metadata"]["namespace"], "name": c["metadata"]["name"],
                        "uid": c["metadata"]["uid"]} for c in todo]
                results = self._call_prepare(st.uid, drv, plugin, req)
                if results is None:
                    return PREPARE_PENDING
                skipped = 0
                for c in todo:
                    res = results.get(c["metadata"]["uid"])
                    if res is None:
                        skipped += 1
                        continue
                    if res.error:
                        return f"NodePrepareResources failed for ResourceClaim {c['metadata']['name']}: {res.error}"
                if skipped:
                    return f"NodePrepareResources skipped {skipped} ResourceClaims"
                for c in todo:
                    self._claim_results[c["metadata"]["uid"]] = results[c["metadata"]["uid"]]
        for _pc, (cuid, _n, _d) in st.prepared_claims.items():
            self._claim_refs.setdefault(cuid, set()).add(st.uid)
            res = self._claim_results.get(cuid)
            st.devices[cuid] = res.devices if res else ()
        return None

    def _call_prepare(self, pod_uid: str, driver: str, plugin: DraPlugin,
                      req: list[dict[str, str]]) -> dict[str, PrepareResult] | None:
        """NodePrepareResources off the node's sync worker; None while it still runs (the pod is re-queued when
        it finishes). A real kubelet prepares in the pod's own worker, so a plugin that waits for another pod of
        the same node (the NVIDIA plugin waits for its MPS control-daemon pod) must not stall that pod."""
        key = (pod_uid, driver)
        with self._lock:
            fut = self._prepares.get(key)
            if fut is None:
                fut = self._prepares[key] = Future()
                started = fut

                def run() -> None:
                    try:
                        started.set_result(plugin.prepare(req))
                    except BaseException as exc:  # surfaced by fut.result() in the next sync
                        started.set_exception(exc)
                    self._requeue(pod_uid)

                threading.Thread(target=run, daemon=True, name=f"kubelet-prepare-{driver}").start()
        try:
            results = fut.result(timeout=_PREPARE_INLINE_WAIT_S)
        except TimeoutError:
            return None
        finally:
            if fut.done():
                with self._lock:
                    self._prepares.pop(key, None)
        return results

    def unprepare_all(self, st: PodState) -> str:
        """Unprepare claims no other pod on this node uses; '' on success."""
        for pc_name, (cuid, cname, drivers) in list(st.prepared_claims.items()):
            refs = self._claim_refs.get(cuid, set())
            refs.discard(st.uid)
            if refs:
                del st.prepared_claims[pc_name]
                continue
            for drv in [d for d in drivers.split(",") if d]:
                plugin = self.plugin(drv)
                if plugin is None:
                    return f"DRA driver {drv} is not registered"
                errs = plugin.unprepare([{"namespace": st.ns, "name": cname, "uid": cuid}])
                if errs.get(cuid):
                    return f"NodeUnprepareResources failed for ResourceClaim {cname}: {errs[cuid]}"
            self._claim_refs.pop(cuid, None)
            self._claim_results.pop(cuid, None)
            del st.prepared_claims[pc_name]
        return ""

    @staticmethod
    def container_devices(st: PodState, c: dict[str, Any]) -> list[PreparedDevice]:
        """The prepared devices container ``c`` references (its ``resources.claims`` + extended resources)."""
        out: list[PreparedDevice] = []
        for ref in (c.get("resources") or {}).get("claims") or []:
            entry = st.prepared_claims.get(ref.get("name", ""))
            if entry is None:
                continue
            for d in st.devices.get(entry[0], ()):
                if not ref.get("request") or ref["request"] in d.request_names:
                    out.append(d)
        ext = (st.pod.get("status") or {}).get("extendedResourceClaimStatus")
        entry = st.prepared_claims.get(EXTENDED_CLAIM)
        if ext and entry is not None:
            wanted = {m.get("requestName") for m in ext.get("requestMappings") or []
                      if m.get("containerName") == c["name"]}
            out += [d for d in st.devices.get(entry[0], ()) if wanted & set(d.request_names)]
        return out


__all__ = ["EXTENDED_CLAIM", "PREPARE_PENDING", "DraManager"]
