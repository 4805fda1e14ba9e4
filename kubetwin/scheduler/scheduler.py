"""The twin's kube-scheduler: one pod at a time, node filters, the DynamicResources plugin, binding.

Why: pods on the twin must land (or stay Pending) exactly where and why they would on a real cluster,
with the same PodScheduled condition, FailedScheduling/Scheduled events and ResourceClaim writes
(kubernetes-dra.md §4, §7, §9 items 6–7). Devices come from :mod:`kubetwin.scheduler.dra.allocator`.

Deliberate simplifications (listed in the twin's fidelity notes): no scoring — among feasible nodes the
first by name wins (real kube-scheduler breaks score ties randomly, §3.13); only the filters a DRA lab
needs (NodeUnschedulable, NodeName, TaintToleration incl. the not-ready taint, NodeAffinity/nodeSelector,
NodeResourcesFit for cpu/memory/pods/extended resources, DynamicResources); preemption never evicts.

The DynamicResources steps that need no scheduler state (PreEnqueue's claim lookup, extended-resource
mapping, DeviceTaintRules) live in :mod:`kubetwin.scheduler.dynamicresources`; shared node rules (taints,
affinity) in :mod:`kubetwin.predicates`.

Entry points: ``Scheduler(api).start()`` / ``.stop()`` for the twin; ``schedule_pending()`` runs one
synchronous pass (tests use it with fake time).
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kubetwin.api.core import Api, WatchEvent
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import ResourceType, core
from kubetwin.api.store import clone
from kubetwin.passloop import PassLoop
from kubetwin.predicates import node_matches_selector, pod_affinity_matches, tolerated, untolerated_taint
from kubetwin.scheduler.dra.allocator import AllocatedState, AllocatorCache, Features, allocate
from kubetwin.scheduler.dynamicresources import (
    CLAIMS,
    CLASSES,
    EXTENDED_CLAIM_ANNOTATION,
    SLICES,
    TAINT_RULES,
    ExtendedRequest,
    device_classes,
    extended_claim,
    extended_requests,
    pod_claims,
    slices_with_rule_taints,
)
from kubetwin.scheduler.quantity import parse_quantity

__all__ = ["DELETE_PROTECTION", "EXTENDED_CLAIM_ANNOTATION", "TAINT_RULES", "Scheduler", "SchedulerSettings"]

Obj = dict[str, Any]
DELETE_PROTECTION = "resource.kubernetes.io/delete-protection"
_COMPONENT = "default-scheduler"
_NOT_HELPFUL = "Preemption is not helpful for scheduling"
_NO_VICTIMS = "No preemption victims found for incoming pod"
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")

PODS = core("pods")
NODES = core("nodes")


@dataclass(frozen=True)
class SchedulerSettings:
    """How the twin's scheduler behaves."""

    features: Features = field(default_factory=Features)
    """Kubernetes release / DRA gates (default v1.36)."""
    scheduler_name: str = "default-scheduler"
    """Pods with this ``spec.schedulerName`` (or none) are scheduled."""
    initial_backoff_s: float = 1.0
    """Retry delay after a scheduling error (SchedulerError); doubles per failure."""
    max_backoff_s: float = 10.0
    """Upper bound of the error backoff (kube-scheduler's podMaxBackoffSeconds default)."""
    unschedulable_flush_s: float = 300.0
    """Unschedulable pods are retried at least this often even without a relevant event."""


class _Unschedulable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _SchedulingError(Exception):
    pass


@dataclass
class _NodeResult:
    reason: str | None = None
    resolvable: bool = False
    allocations: list[Obj] | None = None


def _meta(o: Obj) -> dict[str, Any]:
    return o.get("metadata") or {}


def _key(o: Obj) -> str:
    return f"{_meta(o).get('namespace', '')}/{_meta(o).get('name', '')}"


def _node_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _pod_requests(pod: Obj) -> dict[str, Fraction]:
    """Effective requests: max(sum of containers, each init container); limits imply requests."""
    def of(c: Obj) -> dict[str, Fraction]:
        res = c.get("resources") or {}
        out = {k: parse_quantity(str(v)) for k, v in (res.get("limits") or {}).items()}
        out.update({k: parse_quantity(str(v)) for k, v in (res.get("requests") or {}).items()})
        return out

    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in of(c).items():
            total[k] = total.get(k, Fraction(0)) + v
    for c in spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total.get(k, Fraction(0)), v)
    return total


def _is_extended(name: str) -> bool:
    return name not in _STANDARD_RESOURCES and not name.startswith("hugepages-") and (
        "/" in name and not name.startswith("kubernetes.io/"))


class Scheduler:
    """kube-scheduler for the twin (see module docstring)."""

    def __init__(self, api: Api, settings: SchedulerSettings | None = None) -> None:
        self.api = api
        self.settings = settings or SchedulerSettings()
        self.cache = AllocatorCache()
        self._loop = PassLoop(api, "scheduler", (PODS, NODES, CLAIMS, SLICES, CLASSES), self.schedule_pending,
                              relevant=self._event_relevant, next_wait=self._next_due)
        self._backoff: dict[str, tuple[float, float]] = {}  # pod uid -> (retry at, current backoff)
        self._last_pass = 0.0
        self._used: dict[str, dict[str, Fraction]] = {}
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> list[threading.Thread]:
        """Start the watch threads and the scheduling loop; returns the threads (daemon)."""
        return self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _event_relevant(self, rt: ResourceType, ev: WatchEvent) -> bool:
        return not (rt is PODS and ev.type == "MODIFIED" and not self._pod_change_relevant(ev.object))

    def _pod_change_relevant(self, pod: Obj) -> bool:
        # Our own condition/event writes must not retrigger a pass; a pending pod's spec or its
        # resourceClaimStatuses (written by the resourceclaim controller) do; so do terminations.
        st = pod.get("status") or {}
        return not (pod.get("spec") or {}).get("nodeName") or st.get("phase") in ("Succeeded", "Failed") or bool(
            _meta(pod).get("deletionTimestamp"))

    def _next_due(self) -> float:
        now = self.api.monotonic()
        dues = [at - now for at, _ in self._backoff.values()]
        dues.append(self._last_pass + self.settings.unschedulable_flush_s - now)
        return max(0.05, min(dues))

    # -- one pass -----------------------------------------------------------------------------------

    def schedule_pending(self) -> int:
        """Try every pending pod once, oldest first; returns how many were bound."""
        with self._lock:
            self._last_pass = self.api.monotonic()
            # Scan the store's objects uncopied and copy only the pods this pass will try: with a
            # thousand bound pods a copied list per pass dominated the twin's CPU time.
            pods, _ = self.api.list(PODS, copy_objects=False)
            pending = [clone(p) for p in pods if self._wants_scheduling(p)]
            self._used = self._used_resources(pods)
            pending.sort(key=lambda p: (-(int((p.get("spec") or {}).get("priority") or 0)),
                                        str(_meta(p).get("creationTimestamp", "")), _key(p)))
            bound = 0
            for pod in pending:
                uid = str(_meta(pod).get("uid"))
                due = self._backoff.get(uid)
                if due is not None and due[0] > self.api.monotonic():
                    continue
                if self._schedule_one(pod):
                    bound += 1
            return bound

    def _wants_scheduling(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (not spec.get("nodeName") and (spec.get("schedulerName") or "default-scheduler")
                == self.settings.scheduler_name and not _meta(pod).get("deletionTimestamp")
                and (pod.get("status") or {}).get("phase", "Pending") == "Pending")

    def _schedule_one(self, pod: Obj) -> bool:
        uid = str(_meta(pod).get("uid"))
        try:
            claims = pod_claims(self.api, pod)
            if claims is None:
                return False  # held back until its claims exist (no condition, no event: §4.1)
            node, allocations, ext = self._find_node(pod, claims)
            self._bind(pod, node, claims, allocations, ext)
        except _Unschedulable as e:
            self._backoff.pop(uid, None)
            self._report(pod, "Unschedulable", e.message)
            return False
        except _SchedulingError as e:
            _, prev = self._backoff.get(uid, (0.0, self.settings.initial_backoff_s / 2))
            nxt = min(self.settings.max_backoff_s, prev * 2)
            self._backoff[uid] = (self.api.monotonic() + nxt, nxt)
            self._report(pod, "SchedulerError", str(e))
            return False
        self._backoff.pop(uid, None)
        return True

    # -- Filter ---------------------------------------------------------------------------------------

    def _find_node(self, pod: Obj, claims: list[Obj]) -> tuple[Obj, list[Obj], Obj | None]:
        nodes, _ = self.api.list(NODES)
        nodes.sort(key=lambda n: str(_meta(n).get("name")))
        classes = device_classes(self.api)
        ext_reqs = extended_requests(pod, classes, self.settings.features)
        has_dra = bool(claims) or bool(ext_reqs)
        pending = [c for c in claims if not (c.get("status") or {}).get("allocation")]
        if has_dra:
            for c in pending:
                for req in ((c.get("spec") or {}).get("devices") or {}).get("requests") or []:
                    subs = req.get("firstAvailable") or []
                    pairs = [(s.get("deviceClassName"), f"{req.get('name')}/{s.get('name')}") for s in subs]
                    if not subs:
                        pairs = [((req.get("exactly") or {}).get("deviceClassName"), req.get("name"))]
                    for cls, label in pairs:
                        if cls not in classes:
                            raise _Unschedulable(self._fit_error(
                                len(nodes), f"request {label}: device class {cls} does not exist", {}, True))
        slices: list[Obj] = []
        state = AllocatedState()
        all_claims: list[Obj] = []
        if has_dra:
            slices = slices_with_rule_taints(self.api, self.settings.features)
            all_claims, _ = self.api.list(CLAIMS)
            state = AllocatedState.from_claims(all_claims)
        results: dict[str, _NodeResult] = {}
        ext_by_node: dict[str, Obj | None] = {}
        used = self._used
        for node in nodes:
            name = str(_meta(node).get("name"))
            r = self._filter(pod, node, used.get(name, {}), claims, pending, ext_reqs, slices, classes, state,
                             ext_by_node)
            results[name] = r
            if r.reason is None:
                return node, r.allocations or [], ext_by_node.get(name)
        deallocated = self._post_filter(pod, claims, results)
        raise _Unschedulable(self._fit_error(len(nodes), None, results, has_dra, deallocated))

    def _post_filter(self, pod: Obj, claims: list[Obj], results: dict[str, _NodeResult]) -> bool:
        """DynamicResources PostFilter (§4.1): deallocate one allocated claim that is unavailable on the
        nodes and reserved by nobody else, so the next attempt may allocate it elsewhere."""
        if not any(r.reason == "resourceclaim not available on the node" for r in results.values()):
            return False
        uid = _meta(pod).get("uid")
        for c in claims:
            st = c.get("status") or {}
            if not st.get("allocation") or any(r.get("uid") != uid for r in st.get("reservedFor") or []):
                continue
            new = copy.deepcopy(c)
            for k in ("allocation", "reservedFor", "devices"):
                new.setdefault("status", {}).pop(k, None)
            try:
                self.api.update(CLAIMS, str(_meta(c).get("namespace")), str(_meta(c).get("name")), new,
                                subresource="status")
            except ApiError:
                return False
            self._loop.mark_dirty()
            return True
        return False

    def _used_resources(self, pods: list[Obj]) -> dict[str, dict[str, Fraction]]:
        """Requests of the bound, unfinished pods per node: the pass's snapshot (kube-scheduler's cache).

        Computed once per pass; :meth:`_bind` adds each pod it binds (the real scheduler's "assume"), so a
        pass costs O(pods) instead of O(pods) per pending pod. Pods bound or finished by others during the
        pass are seen by the next pass, which their watch events trigger.
        """
        used: dict[str, dict[str, Fraction]] = {}
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if not node or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            self._assume(used, str(node), p)
        return used

    @staticmethod
    def _assume(used: dict[str, dict[str, Fraction]], node: str, pod: Obj) -> None:
        acc = used.setdefault(node, {})
        for k, v in _pod_requests(pod).items():
            acc[k] = acc.get(k, Fraction(0)) + v
        acc["pods"] = acc.get("pods", Fraction(0)) + 1

    def _filter(self, pod: Obj, node: Obj, used: dict[str, Fraction], claims: list[Obj], pending: list[Obj],
                ext_reqs: list[ExtendedRequest], slices: list[Obj], classes: dict[str, Obj],
                state: AllocatedState, ext_by_node: dict[str, Obj | None]) -> _NodeResult:
        spec = pod.get("spec") or {}
        nspec = node.get("spec") or {}
        tols = list(spec.get("tolerations") or [])
        if nspec.get("unschedulable") and not tolerated(
                tols, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
            return _NodeResult("node(s) were unschedulable")
        taints = list(nspec.get("taints") or [])
        if not _node_ready(node) and not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
            taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
        blocking = untolerated_taint(taints, tols)
        if blocking is not None:
            return _NodeResult(f"node(s) had untolerated taint {{{blocking.get('key')}: {blocking.get('value', '')}}}")
        if not pod_affinity_matches(spec, node):
            return _NodeResult("node(s) didn't match Pod's node affinity/selector")
        alloc_ = (node.get("status") or {}).get("allocatable") or {}
        req = _pod_requests(pod)
        ext_names = {r.resource for r in ext_reqs}
        insufficient: list[str] = []
        if used.get("pods", Fraction(0)) + 1 > parse_quantity(str(alloc_.get("pods", "110"))):
            insufficient.append("Too many pods")
        for rname, amount in sorted(req.items()):
            if amount <= 0:
                continue
            have = alloc_.get(rname)
            if rname in ext_names and (have is None or parse_quantity(str(have)) == 0):
                continue  # served by DRA on this node
            if rname in _STANDARD_RESOURCES or _is_extended(rname) or rname.startswith("hugepages-"):
                cap = parse_quantity(str(have)) if have is not None else Fraction(0)
                if used.get(rname, Fraction(0)) + amount > cap:
                    insufficient.append(f"Insufficient {rname}")
        if insufficient:
            return _NodeResult(", ".join(insufficient), resolvable=True)
        # DynamicResources
        node_ext = [r for r in ext_reqs if parse_quantity(str(alloc_.get(r.resource, "0"))) == 0]
        for c in claims:
            a = (c.get("status") or {}).get("allocation")
            if a and not node_matches_selector(node, a.get("nodeSelector")):
                return _NodeResult("resourceclaim not available on the node")
        to_allocate = list(pending)
        ext_claim: Obj | None = None
        if node_ext:
            ext_claim = extended_claim(pod, node_ext)
            to_allocate.append(ext_claim)
        if not to_allocate:
            return _NodeResult(allocations=[])
        out = allocate(node, to_allocate, slices=slices, classes=classes, allocated_state=state,
                       features=self.settings.features, cache=self.cache)
        if out.error is not None:
            raise _SchedulingError(f'running "DynamicResources" filter plugin: {out.error}')
        if out.allocations is None:
            return _NodeResult(out.unschedulable or "cannot allocate all claims")
        ext_by_node[str(_meta(node).get("name"))] = ext_claim
        return _NodeResult(allocations=out.allocations)

    def _fit_error(self, n: int, prefilter: str | None, results: dict[str, _NodeResult], has_dra: bool,
                   deallocated: bool = False) -> str:
        """FitError text (kubernetes-dra.md §4.2): reasons counted and sorted, then the PostFilter part."""
        if prefilter is not None:
            head = f"0/{n} nodes are available: {prefilter}."
            post_counts = {_NOT_HELPFUL: n}
        else:
            counts = Counter(r.reason for r in results.values() if r.reason)
            parts = sorted(f"{c} {reason}" for reason, c in counts.items())
            head = f"0/{n} nodes are available: {', '.join(parts)}." if parts else f"0/{n} nodes are available."
            post_counts = dict(Counter(_NO_VICTIMS if r.resolvable else _NOT_HELPFUL for r in results.values()))
        post = f"preemption: 0/{n} nodes are available: " + ", ".join(
            sorted(f"{c} {m}" for m, c in post_counts.items())) + "."
        if n == 0:
            post = "preemption: 0/0 nodes are available: ."
        if has_dra:
            post = ("deallocation of ResourceClaim completed, " if deallocated else "still not schedulable, ") + post
        return f"{head} {post}"

    # -- Reserve / PreBind / Bind --------------------------------------------------------------------

    def _bind(self, pod: Obj, node: Obj, claims: list[Obj], allocations: list[Obj], ext: Obj | None) -> None:
        ns = str(_meta(pod).get("namespace"))
        node_name = str(_meta(node).get("name"))
        pending = [c for c in claims if not (c.get("status") or {}).get("allocation")]
        targets: list[tuple[Obj, Obj | None]] = [(c, a) for c, a in zip(pending, allocations, strict=False)]
        ext_mappings: list[Obj] = []
        if ext is not None:
            ext_mappings = ext.pop("_requestMappings")
            body = copy.deepcopy(ext)
            body["metadata"].pop("name", None)
            try:
                created = self.api.create(CLAIMS, ns, body)
            except ApiError as e:
                raise _SchedulingError(f'running PreBind plugin "DynamicResources": {e.message}') from e
            targets.append((created, allocations[len(pending)]))
        for c in claims:
            if (c.get("status") or {}).get("allocation"):
                targets.append((c, None))
        ref = {"resource": "pods", "name": _meta(pod).get("name"), "uid": _meta(pod).get("uid")}
        for claim, allocation in targets:
            try:
                self._bind_claim(ns, claim, allocation, ref)
            except ApiError as e:
                raise _SchedulingError(f'running PreBind plugin "DynamicResources": {e.message}') from e
        if ext is not None:
            created_name = _meta(targets[len(pending)][0]).get("name")
            self._update_pod_status(pod, lambda st: st.__setitem__("extendedResourceClaimStatus", {
                "resourceClaimName": created_name, "requestMappings": ext_mappings}))
        # Bind (pods/binding semantics): set spec.nodeName, then PodScheduled=True.
        cur = self.api.get(PODS, ns, str(_meta(pod).get("name")))
        if (cur.get("spec") or {}).get("nodeName"):
            return
        cur["spec"]["nodeName"] = node_name
        self.api.update(PODS, ns, str(_meta(cur).get("name")), cur)
        self._assume(self._used, node_name, cur)
        self._set_condition(cur, "True", None, None)
        self.api.record_event(cur, "Scheduled", f"Successfully assigned {ns}/{_meta(cur).get('name')} to {node_name}",
                              component=_COMPONENT)

    def _bind_claim(self, ns: str, claim: Obj, allocation: Obj | None, ref: Obj) -> None:
        name = str(_meta(claim).get("name"))
        for _ in range(5):
            cur = self.api.get(CLAIMS, ns, name)
            if _meta(cur).get("deletionTimestamp"):
                raise _SchedulingError(f"claim {ns}/{name} got deleted in the meantime")
            st = cur.get("status") or {}
            if allocation is not None and st.get("allocation"):
                raise _SchedulingError(f"claim {ns}/{name} got allocated elsewhere in the meantime")
            try:
                if allocation is not None and DELETE_PROTECTION not in (_meta(cur).get("finalizers") or []):
                    cur["metadata"]["finalizers"] = [*(_meta(cur).get("finalizers") or []), DELETE_PROTECTION]
                    cur = self.api.update(CLAIMS, ns, name, cur)
                st = copy.deepcopy(cur.get("status") or {})
                if allocation is not None:
                    alloc = copy.deepcopy(allocation)
                    if self.settings.features.binding_conditions and self.settings.features.minor >= 36:
                        alloc.setdefault("allocationTimestamp", self.api.now())
                    st["allocation"] = alloc
                reserved = list(st.get("reservedFor") or [])
                if not any(r.get("uid") == ref["uid"] for r in reserved):
                    reserved.append(dict(ref))
                st["reservedFor"] = reserved
                cur["status"] = st
                self.api.update(CLAIMS, ns, name, cur, subresource="status")
                return
            except ApiError as e:
                if e.code != 409:
                    raise
        raise _SchedulingError(f"claim {ns}/{name}: too many conflicts")

    # -- status reporting ----------------------------------------------------------------------------

    def _update_pod_status(self, pod: Obj, change: Callable[[dict[str, Any]], None]) -> None:
        ns, name = str(_meta(pod).get("namespace")), str(_meta(pod).get("name"))
        for _ in range(5):
            cur = self.api.try_get(PODS, ns, name)
            if cur is None:
                return
            st = copy.deepcopy(cur.get("status") or {})
            change(st)
            cur["status"] = st
            try:
                self.api.update(PODS, ns, name, cur, subresource="status")
                return
            except ApiError as e:
                if e.code != 409:
                    return

    def _set_condition(self, pod: Obj, status: str, reason: str | None, message: str | None) -> None:
        now = self.api.now()

        def change(st: dict[str, Any]) -> None:
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            old = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
            cond: Obj = {"type": "PodScheduled", "status": status, "lastProbeTime": None,
                         "lastTransitionTime": old.get("lastTransitionTime") if old and old.get("status") == status
                         else now}
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            conds.append(cond)
            st["conditions"] = conds

        self._update_pod_status(pod, change)

    def _report(self, pod: Obj, reason: str, message: str) -> None:
        cur = next((c for c in (pod.get("status") or {}).get("conditions") or []
                    if c.get("type") == "PodScheduled"), None)
        if not (cur and cur.get("reason") == reason and cur.get("message") == message):
            self._set_condition(pod, "False", reason, message)
        self.api.record_event(pod, "FailedScheduling", message, type="Warning", component=_COMPONENT)
