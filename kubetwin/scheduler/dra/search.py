"""The allocator's depth-first search (kubernetes-dra.md §3.4, §3.5): request preprocessing, device selection
by CEL, and first-fit search with backtracking over the gathered pools.

Why this shape: upstream's ``incubating`` allocator walks claims → requests → devices in pool/slice/device
order, takes the first device that fits, and backtracks when a later request cannot be satisfied; a twin that
picked "better" devices would place claims where a real cluster does not. Taking a device is
:meth:`DeviceSearch._allocate_device`, which applies the checks of :mod:`~kubetwin.scheduler.dra.constraints`
and returns the matching undo.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kubetwin.predicates import untolerated_taint
from kubetwin.scheduler.dra.cel import CelCompileError, CelRuntimeError, compile_selector, device_activation
from kubetwin.scheduler.dra.constraints import (
    Constraint,
    DistinctAttribute,
    MatchAttribute,
    SharedCounters,
    capacity_fits,
    consumed_for,
)
from kubetwin.scheduler.dra.pools import Candidate, Pool, gather_pools, selection_matches, spec_of
from kubetwin.scheduler.dra.state import (
    ALLOCATION_RESULTS_MAX,
    AllocatedState,
    AllocationError,
    AllocatorCache,
    DeviceID,
    Features,
    Obj,
    ResultLimitExceeded,
)

__all__ = ["DeviceSearch", "Picked", "Request", "ns_name"]

_NO_SUCH_KEY_HINT = (
    ". consider using CEL optional chaining (.? followed by orValue()) or guarding the check with has() "
    "for optional fields"
)


@dataclass
class Request:
    """One request (or one ``firstAvailable`` alternative) after preprocessing."""

    name: str
    """Result ``request`` value: ``req`` or ``req/sub``."""
    base_name: str
    sub_name: str
    class_name: str
    cls: Obj
    selectors: list[str]
    mode: str
    count: int
    admin: bool
    tolerations: list[Obj]
    capacity_requests: dict[str, str] | None
    num_devices: int = 0
    all_devices: list[Candidate] = field(default_factory=list)


@dataclass
class Picked:
    """A device taken for a request; shares of multi-allocatable devices carry their share ID and consumption."""

    req: Request
    cand: Candidate
    share_id: str | None = None
    consumed: dict[str, Fraction] | None = None


def ns_name(claim: Mapping[str, Any]) -> str:
    """``namespace/name`` of a claim, as upstream error texts name it."""
    md = claim.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


class DeviceSearch:
    """One Allocate call: the pools and requests of the claims, the picks so far, and the search over them.

    :meth:`prepare` gathers pools and preprocesses requests (raising :class:`AllocationError` on claims that can
    never be allocated); :meth:`search` fills ``results`` (one list of :class:`Picked` per claim) or leaves them
    empty; ``selected_sub`` records which ``firstAvailable`` alternative each request used."""

    def __init__(self, node: Obj, claims: Sequence[Obj], slices: Sequence[Obj], classes: Mapping[str, Obj],
                 state: AllocatedState, features: Features, cache: AllocatorCache | None) -> None:
        self.node = node
        self.claims = claims
        self.slices = slices
        self.classes = classes
        self.state = state
        self.features = features
        self.cache = cache
        self.pools: list[Pool] = []
        # requests[claim][request] -> list of alternatives (one for exactly, several for firstAvailable)
        self.requests: list[list[list[Request]]] = []
        self.selected_sub: dict[tuple[int, int], int] = {}
        self.constraints: list[list[Constraint]] = []
        self.results: list[list[Picked]] = [[] for _ in claims]
        self.allocating: dict[DeviceID, set[int]] = {}
        self.allocating_capacity: dict[DeviceID, dict[str, Fraction]] = {}
        self.match_memo: dict[tuple[DeviceID, int, int, int], bool] = {}
        self.counters = SharedCounters(state)

    # -- preprocessing ------------------------------------------------------------------------

    def prepare(self) -> None:
        self.pools = gather_pools(self.node, self.slices, self.features)
        for ci, claim in enumerate(self.claims):
            devices = spec_of(claim).get("devices") or {}
            per_claim: list[list[Request]] = []
            min_total = 0
            for ri, req in enumerate(devices.get("requests") or []):
                subs = req.get("firstAvailable") or []
                exact = req.get("exactly")
                if subs and not self.features.prioritized_list:
                    raise AllocationError(
                        f"claim {ns_name(claim)}, request {req.get('name')}: has subrequests, "
                        "but the DRAPrioritizedList feature is disabled")
                if not self.features.consumable_capacity:
                    if exact and exact.get("capacity") is not None:
                        raise AllocationError(
                            f"claim {ns_name(claim)}, request {req.get('name')}: has capacity requests, "
                            "but the DRAConsumableCapacity feature is disabled")
                    for sub in subs:
                        if sub.get("capacity") is not None:
                            raise AllocationError(
                                f"claim {ns_name(claim)}, subrequest {sub.get('name')}: has capacity "
                                "requests, but the DRAConsumableCapacity feature is disabled")
                if subs:
                    alts = [self._request(ci, ri, claim, sub, str(req.get("name")), si) for si, sub in enumerate(subs)]
                    min_total += min(a.num_devices for a in alts)
                else:
                    alts = [self._request(ci, ri, claim, exact or {}, "", 0, name=str(req.get("name")))]
                    min_total += alts[0].num_devices
                per_claim.append(alts)
            if min_total > ALLOCATION_RESULTS_MAX:
                raise AllocationError(
                    f"claim {ns_name(claim)}: number of requested devices {min_total} exceeds the "
                    f"claim limit of {ALLOCATION_RESULTS_MAX}")
            self.requests.append(per_claim)
            cons: list[Constraint] = []
            for i, c in enumerate(devices.get("constraints") or []):
                if c.get("matchAttribute"):
                    cons.append(MatchAttribute(c.get("requests") or [], str(c["matchAttribute"])))
                elif c.get("distinctAttribute"):
                    cons.append(DistinctAttribute(c.get("requests") or [], str(c["distinctAttribute"])))
                else:
                    raise AllocationError(
                        f"claim {ns_name(claim)}, constraint #{i}: empty constraint "
                        "(unsupported constraint type?)")
            self.constraints.append(cons)

    def _request(self, ci: int, ri: int, claim: Obj, spec: Mapping[str, Any], parent: str, si: int, *,
                 name: str | None = None) -> Request:
        own = name if name is not None else str(spec.get("name"))
        display = own if not parent else str(spec.get("name"))
        selectors: list[str] = []
        for i, sel in enumerate(spec.get("selectors") or []):
            expr = (sel.get("cel") or {}).get("expression")
            if not expr:
                raise AllocationError(
                    f"claim {ns_name(claim)}, request {display}, selector #{i}: CEL expression empty "
                    "(unsupported selector type?)")
            selectors.append(str(expr))
        if spec.get("adminAccess") is not None and not self.features.admin_access:
            raise AllocationError(
                f"claim {ns_name(claim)}, request {display}: admin access is requested, but the feature "
                "is disabled")
        class_name = str(spec.get("deviceClassName") or "")
        if not class_name:
            raise AllocationError(
                f"claim {ns_name(claim)}, request {display}: missing device class name "
                "(unsupported request type?)")
        cls = self.classes.get(class_name)
        if cls is None:
            raise AllocationError(
                f"claim {ns_name(claim)}, request {display}: could not retrieve device class "
                f"{class_name}: deviceclass.resource.k8s.io \"{class_name}\" not found")
        cap = spec.get("capacity")
        r = Request(
            name=f"{parent}/{spec.get('name')}" if parent else own,
            base_name=parent or own,
            sub_name=str(spec.get("name")) if parent else "",
            class_name=class_name,
            cls=cls,
            selectors=selectors,
            mode=str(spec.get("allocationMode") or "ExactCount"),
            count=int(spec.get("count") or 1) if (spec.get("allocationMode") or "ExactCount") == "ExactCount" else 0,
            admin=bool(spec.get("adminAccess")),
            tolerations=list(spec.get("tolerations") or []),
            capacity_requests={k: str(v) for k, v in ((cap or {}).get("requests") or {}).items()} if cap else None,
        )
        if r.mode == "ExactCount":
            r.num_devices = r.count
        elif r.mode == "All":
            for pool in self.pools:
                if pool.incomplete:
                    raise AllocationError(
                        f"claim {ns_name(claim)}, request {display}: asks for all devices, but resource "
                        f"pool {pool.pool_id} is currently being updated")
                if pool.invalid:
                    raise AllocationError(
                        f"claim {ns_name(claim)}, request {display}: asks for all devices, but resource "
                        f"pool {pool.pool_id} is currently invalid")
                for s in pool.device_slices:
                    for di, d in enumerate(spec_of(s).get("devices") or []):
                        cand = Candidate((pool.driver, pool.name, str(d.get("name"))), d, s, pool)
                        if not self._selectable(ci, ri, si, r, cand, di):
                            continue
                        if self.features.consumable_capacity and not self._capacity_fits(r, cand):
                            continue
                        r.all_devices.append(cand)
            r.num_devices = len(r.all_devices)
        else:
            raise AllocationError(f"claim {ns_name(claim)}, request {display}: unsupported count mode {r.mode}")
        return r

    # -- checks --------------------------------------------------------------------------------

    def _selectable(self, ci: int, ri: int, si: int, r: Request, cand: Candidate, di: int) -> bool:
        d = cand.device
        if not self.features.binding_conditions and d.get("bindingConditions"):
            return False
        key = (cand.did, ci, ri, si)
        memo = self.match_memo.get(key)
        if memo is not None:
            return memo
        ok = self._selectors_match(ci, cand, di, r.cls, [
            str(((s.get("cel") or {}).get("expression")) or "") for s in (spec_of(r.cls).get("selectors") or [])
        ]) and self._selectors_match(ci, cand, di, None, r.selectors)
        if ok and spec_of(cand.slice).get("perDeviceNodeSelection"):
            ok = selection_matches(self.node, d)
        self.match_memo[key] = ok
        return ok

    def _activation(self, cand: Candidate, di: int) -> dict[str, Any]:
        md = cand.slice.get("metadata") or {}
        ckey = (str(md.get("uid") or md.get("name", "")), str(md.get("resourceVersion", "")), di)
        if self.cache is not None and md.get("resourceVersion"):
            act = self.cache.activations.get(ckey)
            if act is None:
                act = device_activation(cand.did[0], cand.device)
                self.cache.activations[ckey] = act
            return act
        return device_activation(cand.did[0], cand.device)

    def _selectors_match(self, ci: int, cand: Candidate, di: int, cls: Obj | None, exprs: Sequence[str]) -> bool:
        if cls is not None:
            who = f"class {(cls.get('metadata') or {}).get('name')}"
        else:
            who = f"claim {ns_name(self.claims[ci])}"
        dev_id = "/".join(cand.did)
        md = cand.slice.get("metadata") or {}
        for i, expr in enumerate(exprs):
            try:
                prog = compile_selector(expr)
            except CelCompileError as e:
                raise AllocationError(f"{who}: selector #{i}: CEL compile error: {e}") from e
            mkey = (expr, str(md.get("uid") or md.get("name", "")), str(md.get("resourceVersion", "")), di)
            hit = self.cache.matches.get(mkey) if (self.cache is not None and md.get("resourceVersion")) else None
            if hit is None:
                try:
                    hit = prog.matches(self._activation(cand, di))
                except CelRuntimeError as e:
                    msg = str(e)
                    if self.features.minor >= 36:
                        if "no such key:" in msg:
                            msg += _NO_SUCH_KEY_HINT
                        raise AllocationError(
                            f"{who}: selector #{i} on device {dev_id}: CEL runtime error: {msg}") from e
                    raise AllocationError(f"{who}: selector #{i}: CEL runtime error: {msg}") from e
                if self.cache is not None and md.get("resourceVersion"):
                    self.cache.matches[mkey] = hit
            if not hit:
                return False
        return True

    def _in_use(self, did: DeviceID) -> bool:
        return did in self.state.devices or bool(self.allocating.get(did))

    def _capacity_fits(self, r: Request, cand: Candidate) -> bool:
        return capacity_fits(cand.device, r.capacity_requests, self.state.consumed_capacity.get(cand.did, {}),
                             self.allocating_capacity.get(cand.did, {}))

    def _allocate_device(self, ci: int, r: Request, cand: Candidate, must: bool) -> Callable[[], None] | None:
        """Tentatively take ``cand`` for request ``r`` of claim ``ci``; returns the rollback or None."""
        multi = self.features.consumable_capacity and bool(cand.device.get("allowMultipleAllocations"))
        if not multi and r.admin and ci in self.allocating.get(cand.did, set()):
            return None
        if not r.admin and self._in_use(cand.did):
            return None
        consumes = bool(cand.device.get("consumesCounters"))
        if not self.features.partitionable_devices and consumes:
            return None
        skip_counters = multi and (cand.did in self.state.consumed_capacity or cand.did in self.allocating_capacity)
        if not skip_counters and consumes and not self.counters.take(cand.pool, cand.device):
            return None
        # NOTE: from here on a rejection leaves the counters consumed (upstream behaviour, see module doc).
        taints = cand.device.get("taints") or []
        if self.features.device_taints and untolerated_taint(taints, r.tolerations) is not None:
            return None
        cons = self.constraints[ci]
        for i, c in enumerate(cons):
            if not c.add(r.base_name, r.sub_name, cand.device, cand.did):
                if must:
                    raise AllocationError(
                        f"claim {ns_name(self.claims[ci])}, request {r.sub_name or r.base_name}: cannot add "
                        f"device {'/'.join(cand.did)} because a claim constraint would not be satisfied")
                for prev in cons[:i]:
                    prev.remove(r.base_name, r.sub_name, cand.device, cand.did)
                return None
        holders = self.allocating.setdefault(cand.did, set())
        if not multi:
            holders.add(ci)
        picked = Picked(r, cand)
        if self.features.consumable_capacity:
            if not self._capacity_fits(r, cand):
                return None
            if multi:
                reqs = r.capacity_requests or {}
                picked.consumed = {
                    n: consumed_for(reqs.get(n), c) for n, c in (cand.device.get("capacity") or {}).items()
                }
                picked.share_id = str(uuid.uuid4())
                agg = self.allocating_capacity.setdefault(cand.did, {})
                for n, v in picked.consumed.items():
                    agg[n] = agg.get(n, Fraction(0)) + v
        self.results[ci].append(picked)

        def rollback() -> None:
            for c in cons:
                c.remove(r.base_name, r.sub_name, cand.device, cand.did)
            holders.discard(ci)
            if multi:
                agg = self.allocating_capacity.get(cand.did, {})
                for n, v in (picked.consumed or {}).items():
                    agg[n] = agg.get(n, Fraction(0)) - v
                    if agg[n] == 0:
                        del agg[n]
                if not agg:
                    self.allocating_capacity.pop(cand.did, None)
            elif self.features.partitionable_devices and consumes:
                self.counters.release(cand.pool, cand.device)
            self.results[ci].pop()

        return rollback

    def search(self, ci: int, ri: int, si: int, k: int, in_sub: bool, start: tuple[int, int, int]) -> bool:
        """Depth-first search (kubernetes-dra.md §3.5): claim ``ci``, request ``ri``, alternative
        ``si``, device number ``k``; ``start`` = (pool, slice, device) position to resume from."""
        if ci >= len(self.claims):
            return True
        if ri >= len(self.requests[ci]):
            try:
                return self.search(ci + 1, 0, 0, 0, False, (0, 0, 0))
            except ResultLimitExceeded:
                return False
        alts = self.requests[ci][ri]
        if not in_sub and alts[0].sub_name:
            all_exceeded = True
            for idx in range(len(alts)):
                try:
                    ok = self.search(ci, ri, idx, 0, True, (0, 0, 0))
                except ResultLimitExceeded:
                    continue
                all_exceeded = False
                if ok:
                    self.selected_sub[(ci, ri)] = idx
                    return True
            if all_exceeded:
                raise ResultLimitExceeded
            return False
        r = alts[si]
        if r.mode == "All" and not r.all_devices:
            return False
        if k >= r.num_devices:
            return self.search(ci, ri + 1, 0, 0, False, (0, 0, 0))
        if len(self.results[ci]) + r.num_devices - k > ALLOCATION_RESULTS_MAX:
            raise ResultLimitExceeded
        if r.mode == "All":
            cand = r.all_devices[k]
            undo = self._allocate_device(ci, r, cand, True)
            if undo is None:
                return False
            try:
                done = self.search(ci, ri, si, k + 1, in_sub, (0, 0, 0))
            except BaseException:
                undo()
                raise
            if not done:
                undo()
            return done
        for pi in range(start[0], len(self.pools)):
            pool = self.pools[pi]
            if pool.incomplete or pool.invalid:
                continue
            s0 = start[1] if pi == start[0] else 0
            for sj in range(s0, len(pool.device_slices)):
                sl = pool.device_slices[sj]
                devs = spec_of(sl).get("devices") or []
                d0 = start[2] if (pi == start[0] and sj == start[1]) else 0
                for di in range(d0, len(devs)):
                    d = devs[di]
                    did = (pool.driver, pool.name, str(d.get("name")))
                    if r.admin:
                        if ci in self.allocating.get(did, ()):
                            continue
                    elif self._in_use(did):
                        continue
                    cand = Candidate(did, d, sl, pool)
                    if not self._selectable(ci, ri, si, r, cand, di):
                        continue
                    if self.features.consumable_capacity and not self._capacity_fits(r, cand):
                        continue
                    undo = self._allocate_device(ci, r, cand, False)
                    if undo is None:
                        continue
                    try:
                        done = self.search(ci, ri, si, k + 1, in_sub, (pi, sj, di + 1))
                    except BaseException:
                        undo()
                        raise
                    if done:
                        return True
                    undo()
        return False

