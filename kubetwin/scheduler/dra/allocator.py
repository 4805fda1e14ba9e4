"""The structured-parameters DRA allocator, as kube-scheduler runs it for one node.

Why: the device a claim gets on the twin must be the device it gets on a real cluster, and a claim
that cannot be placed must fail for the same reason. This is an independent Python implementation of
the behaviour described in kubernetes-dra.md §3 (pool gathering, ordering, request preprocessing,
first-fit depth-first search with backtracking, constraints, shared counters, taints, admin access,
consumable capacity, result building); where the reference is silent it follows the 1.36
``incubating`` allocator of kubernetes/dynamic-resource-allocation (facts only, no code copied).

Inputs and outputs are plain JSON dicts (``resource.k8s.io/v1`` shapes). The function is pure: it
reads the claims, classes, slices and the allocated state and returns an :class:`AllocationOutcome`;
the scheduler (``kubetwin.scheduler.scheduler``) writes results to the API.

Upstream quirks reproduced on purpose (so the twin fails where the real scheduler fails):

* shared-counter bookkeeping is keyed by pool *name* only (§3.7);
* a device whose counters fit but that is then rejected by a taint or a claim constraint keeps its
  counter consumption for the rest of that Allocate call (the 1.36 allocator does not roll it back);
* if some counter of a pool is already over-committed, no counter-consuming device of that pool fits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kubetwin.scheduler.dra.cel import (
    CelCompileError,
    CelRuntimeError,
    compile_selector,
    device_activation,
    parse_quantity,
)

__all__ = [
    "CANNOT_ALLOCATE",
    "INVALID_POOLS",
    "AllocatedState",
    "AllocationOutcome",
    "AllocatorCache",
    "DeviceID",
    "Features",
    "allocate",
    "format_quantity",
    "node_matches_selector",
]

Obj = dict[str, Any]
DeviceID = tuple[str, str, str]
"""(driver, pool, device) — the identity the allocated state is keyed by."""

CANNOT_ALLOCATE = "cannot allocate all claims"
INVALID_POOLS = "invalid resource pools were encountered"
ALLOCATION_RESULTS_MAX = 32
_NO_SUCH_KEY_HINT = (
    ". consider using CEL optional chaining (.? followed by orValue()) or guarding the check with has() "
    "for optional fields"
)


@dataclass(frozen=True)
class Features:
    """Kubernetes release and DRA feature gates the allocator honours (kubernetes-dra.md §0.2).

    Defaults are those of v1.36; :meth:`for_version` gives any release's defaults."""

    minor: int = 36
    """Kubernetes minor version (1.<minor>); selects version-dependent details such as error wording
    and (1.37+) omitting ``requests`` on configs that cover every request."""
    prioritized_list: bool = True
    """DRAPrioritizedList: ``firstAvailable`` subrequests."""
    admin_access: bool = True
    """DRAAdminAccess: ``adminAccess`` requests."""
    partitionable_devices: bool = True
    """DRAPartitionableDevices: ``sharedCounters``/``consumesCounters`` and per-device node selection."""
    device_taints: bool = True
    """DRADeviceTaints: device taints block allocation unless tolerated."""
    consumable_capacity: bool = True
    """DRAConsumableCapacity: ``allowMultipleAllocations`` and ``capacity.requests``."""
    binding_conditions: bool = True
    """DRADeviceBindingConditions: devices with ``bindingConditions`` are selectable."""
    extended_resource: bool = True
    """DRAExtendedResource: DeviceClass ``extendedResourceName`` (used by the scheduler, not here)."""

    @classmethod
    def for_version(cls, minor: int) -> Features:
        """Gate defaults of Kubernetes 1.<minor> (kubernetes-dra.md §0.2)."""
        beta_on = minor >= 36
        return cls(
            minor=minor,
            prioritized_list=True,
            admin_access=True,
            partitionable_devices=beta_on,
            device_taints=beta_on,
            consumable_capacity=beta_on,
            binding_conditions=beta_on,
            extended_resource=beta_on,
        )


@dataclass
class AllocatedState:
    """Devices already taken cluster-wide (kubernetes-dra.md §3.2): every result of every allocated
    claim except admin-access ones, plus in-flight allocations; shared (``shareID``) results only add
    consumed capacity."""

    devices: set[DeviceID] = field(default_factory=set)
    """Exclusively allocated device IDs."""
    consumed_capacity: dict[DeviceID, dict[str, Fraction]] = field(default_factory=dict)
    """Aggregated ``consumedCapacity`` of shares on multi-allocatable devices."""

    def add_allocation(self, allocation: Mapping[str, Any]) -> None:
        for r in (allocation.get("devices") or {}).get("results") or []:
            if r.get("adminAccess"):
                continue
            did = (r["driver"], r["pool"], r["device"])
            if r.get("shareID"):
                agg = self.consumed_capacity.setdefault(did, {})
                for name, q in (r.get("consumedCapacity") or {}).items():
                    agg[name] = agg.get(name, Fraction(0)) + parse_quantity(str(q))
            else:
                self.devices.add(did)

    @classmethod
    def from_claims(cls, claims: Iterable[Mapping[str, Any]],
                    in_flight: Iterable[Mapping[str, Any]] = ()) -> AllocatedState:
        """State from all claims' ``status.allocation`` plus in-flight allocation dicts."""
        st = cls()
        for c in claims:
            alloc = (c.get("status") or {}).get("allocation")
            if alloc:
                st.add_allocation(alloc)
        for a in in_flight:
            st.add_allocation(a)
        return st

    def is_allocated(self, did: DeviceID) -> bool:
        return did in self.devices or did in self.consumed_capacity


@dataclass
class AllocationOutcome:
    """Result of :func:`allocate` for one node.

    Exactly one of: ``allocations`` (one ``status.allocation`` dict per claim, in input order),
    ``unschedulable`` (the node-rejection text, e.g. ``cannot allocate all claims``) or ``error``
    (a fatal text; the scheduler reports it as ``SchedulerError``)."""

    allocations: list[Obj] | None = None
    unschedulable: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.allocations is not None


class AllocatorCache:
    """Cross-call memo of CEL inputs and selector results, keyed by slice identity and
    resourceVersion; the scheduler keeps one so repeated scheduling cycles do not re-evaluate CEL.
    Selector results are pure functions of (expression, driver, device), so caching is safe."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self.activations: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.matches: dict[tuple[str, str, str, int], bool] = {}

    def _trim(self) -> None:
        if len(self.matches) > self.max_entries:
            self.matches.clear()
        if len(self.activations) > self.max_entries:
            self.activations.clear()


class _Fatal(Exception):
    """A fatal allocation error (text is what the scheduler reports)."""


class _ResultLimit(Exception):
    """More than 32 results for a claim on this branch (upstream errAllocationResultMaxSizeExceeded)."""


# ---------------------------------------------------------------------------------------------
# Quantities


def format_quantity(value: Fraction) -> str:
    """Canonical string of an integral quantity (BinarySI style when it is a whole multiple of a
    binary suffix, else decimal), as the API server serialises ``resource.Quantity``."""
    if value.denominator == 1:
        n = int(value)
        if n == 0:
            return "0"
        for suffix, mult in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
                             ("Ki", 2**10)):
            if n % mult == 0:
                return f"{n // mult}{suffix}"
        return str(n)
    milli = value * 1000
    if milli.denominator == 1:
        return f"{int(milli)}m"
    return str(float(value))


# ---------------------------------------------------------------------------------------------
# Node selection


def _node_field(node: Mapping[str, Any], key: str) -> str | None:
    if key == "metadata.name":
        return str((node.get("metadata") or {}).get("name", ""))
    return None


def _requirement_matches(req: Mapping[str, Any], value: str | None) -> bool:
    op = req.get("operator")
    values = req.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            v, ref = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return v > ref if op == "Gt" else v < ref
    return False


def node_matches_selector(node: Mapping[str, Any], selector: Mapping[str, Any] | None) -> bool:
    """``v1.NodeSelector`` semantics (terms ORed, requirements ANDed; an empty term matches nothing)."""
    if selector is None:
        return True
    labels = (node.get("metadata") or {}).get("labels") or {}
    for term in selector.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        fields_ = term.get("matchFields") or []
        if not exprs and not fields_:
            continue
        if all(_requirement_matches(r, labels.get(r.get("key"))) for r in exprs) and all(
            _requirement_matches(r, _node_field(node, str(r.get("key")))) for r in fields_
        ):
            return True
    return False


def _selection_matches(node: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    node_name = obj.get("nodeName")
    if node_name:
        return bool(node_name == (node.get("metadata") or {}).get("name"))
    if obj.get("allNodes"):
        return True
    if obj.get("nodeSelector") is not None:
        return node_matches_selector(node, obj["nodeSelector"])
    return False


# ---------------------------------------------------------------------------------------------
# Pools


@dataclass
class _Pool:
    driver: str
    name: str
    incomplete: bool = False
    invalid: bool = False
    invalid_reason: str = ""
    device_slices: list[Obj] = field(default_factory=list)
    other_slices: list[Obj] = field(default_factory=list)
    counter_sets: dict[str, dict[str, Fraction]] = field(default_factory=dict)
    has_binding_conditions: bool = False

    @property
    def pool_id(self) -> str:
        return f"{self.driver}/{self.name}"


def _spec(o: Mapping[str, Any]) -> Mapping[str, Any]:
    return o.get("spec") or {}


def _slice_name(s: Mapping[str, Any]) -> str:
    return str((s.get("metadata") or {}).get("name", ""))


def _uses_partitionable(s: Mapping[str, Any]) -> bool:
    sp = _spec(s)
    return sp.get("perDeviceNodeSelection") is not None or bool(sp.get("sharedCounters"))


def _gather_pools(node: Mapping[str, Any], slices: Sequence[Obj], features: Features) -> list[_Pool]:
    """kubernetes-dra.md §3.3 (1.35+ semantics, 1.36 ordering)."""
    node_name = (node.get("metadata") or {}).get("name")
    by_pool: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        sp = _spec(s)
        if sp.get("nodeName") and sp.get("nodeName") != node_name:
            continue
        if not features.partitionable_devices and _uses_partitionable(s):
            continue
        if sp.get("nodeName") or sp.get("allNodes") or sp.get("nodeSelector") is not None:
            relevant = _selection_matches(node, sp)
        elif sp.get("perDeviceNodeSelection"):
            relevant = any(_selection_matches(node, d) for d in sp.get("devices") or [])
        else:
            continue
        if not relevant:
            continue
        pool = sp.get("pool") or {}
        key = (str(sp.get("driver", "")), str(pool.get("name", "")))
        gen = int(pool.get("generation", 0))
        current = by_pool.get(key)
        if current is None or gen > int(_spec(current[0])["pool"].get("generation", 0)):
            by_pool[key] = [s]
        elif gen == int(_spec(current[0])["pool"].get("generation", 0)):
            current.append(s)

    result: list[_Pool] = []
    for (driver, pname), pslices in by_pool.items():
        pool_spec = _spec(pslices[0])["pool"]
        gen = int(pool_spec.get("generation", 0))
        want = int(pool_spec.get("resourceSliceCount", 0))
        all_for_pool: list[Obj] | None = None
        if len(pslices) != want:
            obsolete = False
            all_for_pool = []
            for s in slices:
                sp = _spec(s)
                if sp.get("driver") != driver or (sp.get("pool") or {}).get("name") != pname:
                    continue
                g = int((sp.get("pool") or {}).get("generation", 0))
                if g == gen:
                    all_for_pool.append(s)
                elif g > gen:
                    obsolete = True
                    break
            if obsolete:
                continue
            if len(all_for_pool) != want:
                result.append(_Pool(driver, pname, incomplete=True))
                continue
        result.append(_build_pool(driver, pname, pslices, all_for_pool, features))

    result.sort(key=lambda p: (p.driver, p.name))
    # Pools with binding-condition devices go last (stable sort keeps driver/name order within).
    result.sort(key=lambda p: p.has_binding_conditions)
    return result


def _build_pool(driver: str, name: str, pslices: list[Obj], all_for_pool: list[Obj] | None,
                features: Features) -> _Pool:
    pool = _Pool(driver, name)
    ordered = sorted(pslices, key=_slice_name)
    counter_slices: list[Obj] = []
    for s in ordered:
        if features.partitionable_devices and _spec(s).get("sharedCounters"):
            counter_slices.append(s)
        else:
            pool.device_slices.append(s)
    if all_for_pool is not None and len(pslices) < len(all_for_pool):
        seen = {_slice_name(s) for s in pslices}
        for s in all_for_pool:
            if _slice_name(s) in seen:
                continue
            if features.partitionable_devices and _spec(s).get("sharedCounters"):
                counter_slices.append(s)
            else:
                pool.other_slices.append(s)
    names: set[str] = set()
    for s in pool.device_slices:
        for d in _spec(s).get("devices") or []:
            if d.get("name") in names:
                return _Pool(driver, name, invalid=True, invalid_reason=f"duplicate device name {d.get('name')}")
            names.add(str(d.get("name")))
            if d.get("bindingConditions"):
                pool.has_binding_conditions = True
    if not features.partitionable_devices:
        return pool
    for s in counter_slices:
        for cs in _spec(s).get("sharedCounters") or []:
            if cs.get("name") in pool.counter_sets:
                return _Pool(driver, name, invalid=True, invalid_reason=f"duplicate counter set name {cs.get('name')}")
            pool.counter_sets[str(cs.get("name"))] = {
                cname: parse_quantity(str(c.get("value", "0"))) for cname, c in (cs.get("counters") or {}).items()
            }
    for s in [*pool.device_slices, *pool.other_slices]:
        for d in _spec(s).get("devices") or []:
            for cc in d.get("consumesCounters") or []:
                cset = pool.counter_sets.get(str(cc.get("counterSet")))
                if cset is None:
                    return _Pool(driver, name, invalid=True,
                                 invalid_reason=f"counter set {cc.get('counterSet')} not found")
                for cname in cc.get("counters") or {}:
                    if cname not in cset:
                        return _Pool(driver, name, invalid=True,
                                     invalid_reason=f"counter {cname} not found in counter set {cc.get('counterSet')}")
    return pool


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass
class _Request:
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
    all_devices: list[_Candidate] = field(default_factory=list)


@dataclass
class _Candidate:
    did: DeviceID
    device: Obj
    slice: Obj
    pool: _Pool


@dataclass
class _Picked:
    req: _Request
    cand: _Candidate
    share_id: str | None = None
    consumed: dict[str, Fraction] | None = None


def _ns_name(claim: Mapping[str, Any]) -> str:
    md = claim.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


# ---------------------------------------------------------------------------------------------
# Constraints


def _lookup_attribute(device: Mapping[str, Any], driver: str, full_name: str) -> Mapping[str, Any] | None:
    attrs = device.get("attributes") or {}
    if full_name in attrs:
        return attrs[full_name]  # type: ignore[no-any-return]
    domain, sep, ident = full_name.partition("/")
    if not sep or domain != driver:
        return None
    return attrs.get(ident)


class _AttributeConstraint:
    """What matchAttribute and distinctAttribute share: which requests they cover and how a device's value
    of the attribute is read (kubernetes-dra.md §3.6)."""

    def __init__(self, requests: Sequence[str], attribute: str) -> None:
        self.requests = set(requests)
        self.attribute = attribute

    def _applies(self, base: str, sub: str) -> bool:
        if not self.requests:
            return True
        return base in self.requests or (bool(sub) and f"{base}/{sub}" in self.requests)

    def _value(self, device: Mapping[str, Any], did: DeviceID) -> tuple[str, Any] | None:
        """The typed attribute value, or None when the device lacks it (then the constraint fails)."""
        attr = _lookup_attribute(device, did[0], self.attribute)
        if attr is None:
            return None
        return next(((k, attr[k]) for k in ("string", "int", "bool", "version") if k in attr), None)


class _MatchAttribute(_AttributeConstraint):
    def __init__(self, requests: Sequence[str], attribute: str) -> None:
        super().__init__(requests, attribute)
        self.value: tuple[str, Any] | None = None
        self.n = 0

    def add(self, base: str, sub: str, device: Mapping[str, Any], did: DeviceID) -> bool:
        if not self._applies(base, sub):
            return True
        typed = self._value(device, did)
        if typed is None:
            return False
        if self.n == 0:
            self.value = typed
            self.n = 1
            return True
        if typed != self.value:
            return False
        self.n += 1
        return True

    def remove(self, base: str, sub: str, device: Mapping[str, Any], did: DeviceID) -> None:
        if self._applies(base, sub):
            self.n -= 1


class _DistinctAttribute(_AttributeConstraint):
    """distinctAttribute (consumable capacity); values remembered per request name (upstream quirk)."""

    def __init__(self, requests: Sequence[str], attribute: str) -> None:
        super().__init__(requests, attribute)
        self.values: dict[str, tuple[str, Any]] = {}

    def add(self, base: str, sub: str, device: Mapping[str, Any], did: DeviceID) -> bool:
        if not self._applies(base, sub):
            return True
        typed = self._value(device, did)
        if typed is None or typed in self.values.values():
            return False
        self.values[f"{base}/{sub}" if sub else base] = typed
        return True

    def remove(self, base: str, sub: str, device: Mapping[str, Any], did: DeviceID) -> None:
        if self._applies(base, sub):
            self.values.pop(f"{base}/{sub}" if sub else base, None)


_Constraint = _MatchAttribute | _DistinctAttribute


# ---------------------------------------------------------------------------------------------
# Taints, capacity


def _tolerates(tol: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """kubernetes-dra.md §3.11."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    if tol.get("key") and tol.get("key") != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Equal":
        return bool((tol.get("value") or "") == (taint.get("value") or ""))
    return op == "Exists"


def _taint_blocks(device: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    for taint in device.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(_tolerates(t, taint) for t in tolerations):
            return True
    return False


def _consumed_for(request: str | None, cap: Mapping[str, Any]) -> Fraction:
    """Amount one allocation consumes of a capacity (kubernetes-dra.md §3.10)."""
    policy = cap.get("requestPolicy")
    if request is None:
        if policy and policy.get("default") is not None:
            return parse_quantity(str(policy["default"]))
        return parse_quantity(str(cap.get("value", "0")))
    req = parse_quantity(request)
    if not policy:
        return req
    vr = policy.get("validRange")
    if vr and vr.get("min") is not None:
        lo = parse_quantity(str(vr["min"]))
        if req < lo:
            return lo
        if vr.get("step") is None:
            return req
        step = parse_quantity(str(vr["step"]))
        n = -(-(req - lo) // step)
        return lo + step * n
    for v in policy.get("validValues") or []:
        if req <= parse_quantity(str(v)):
            return parse_quantity(str(v))
    return req


def _violates_policy(value: Fraction, policy: Mapping[str, Any] | None) -> bool:
    if not policy:
        return False
    if policy.get("default") is not None and value == parse_quantity(str(policy["default"])):
        return False
    vr = policy.get("validRange")
    if vr:
        if vr.get("max") is not None and value > parse_quantity(str(vr["max"])):
            return True
        if vr.get("step") is not None:
            lo = parse_quantity(str(vr.get("min", "0")))
            if (int(value) - int(lo)) % int(parse_quantity(str(vr["step"]))) != 0:
                return True
        return False
    values = policy.get("validValues") or []
    if values:
        return all(value != parse_quantity(str(v)) for v in values)
    return False


# ---------------------------------------------------------------------------------------------
# The search


class _Allocator:
    def __init__(self, node: Obj, claims: Sequence[Obj], slices: Sequence[Obj], classes: Mapping[str, Obj],
                 state: AllocatedState, features: Features, cache: AllocatorCache | None) -> None:
        self.node = node
        self.claims = claims
        self.slices = slices
        self.classes = classes
        self.state = state
        self.features = features
        self.cache = cache
        self.pools: list[_Pool] = []
        # requests[claim][request] -> list of alternatives (one for exactly, several for firstAvailable)
        self.requests: list[list[list[_Request]]] = []
        self.selected_sub: dict[tuple[int, int], int] = {}
        self.constraints: list[list[_Constraint]] = []
        self.results: list[list[_Picked]] = [[] for _ in claims]
        self.allocating: dict[DeviceID, set[int]] = {}
        self.allocating_capacity: dict[DeviceID, dict[str, Fraction]] = {}
        self.match_memo: dict[tuple[DeviceID, int, int, int], bool] = {}
        self.available_counters: dict[str, dict[str, dict[str, Fraction]]] = {}
        self.consumed_counters: dict[str, dict[str, dict[str, Fraction]]] = {}

    # -- preprocessing ------------------------------------------------------------------------

    def prepare(self) -> None:
        self.pools = _gather_pools(self.node, self.slices, self.features)
        for ci, claim in enumerate(self.claims):
            devices = _spec(claim).get("devices") or {}
            per_claim: list[list[_Request]] = []
            min_total = 0
            for ri, req in enumerate(devices.get("requests") or []):
                subs = req.get("firstAvailable") or []
                exact = req.get("exactly")
                if subs and not self.features.prioritized_list:
                    raise _Fatal(f"claim {_ns_name(claim)}, request {req.get('name')}: has subrequests, "
                                 "but the DRAPrioritizedList feature is disabled")
                if not self.features.consumable_capacity:
                    if exact and exact.get("capacity") is not None:
                        raise _Fatal(f"claim {_ns_name(claim)}, request {req.get('name')}: has capacity requests, "
                                     "but the DRAConsumableCapacity feature is disabled")
                    for sub in subs:
                        if sub.get("capacity") is not None:
                            raise _Fatal(f"claim {_ns_name(claim)}, subrequest {sub.get('name')}: has capacity "
                                         "requests, but the DRAConsumableCapacity feature is disabled")
                if subs:
                    alts = [self._request(ci, ri, claim, sub, str(req.get("name")), si) for si, sub in enumerate(subs)]
                    min_total += min(a.num_devices for a in alts)
                else:
                    alts = [self._request(ci, ri, claim, exact or {}, "", 0, name=str(req.get("name")))]
                    min_total += alts[0].num_devices
                per_claim.append(alts)
            if min_total > ALLOCATION_RESULTS_MAX:
                raise _Fatal(f"claim {_ns_name(claim)}: number of requested devices {min_total} exceeds the "
                             f"claim limit of {ALLOCATION_RESULTS_MAX}")
            self.requests.append(per_claim)
            cons: list[_Constraint] = []
            for i, c in enumerate(devices.get("constraints") or []):
                if c.get("matchAttribute"):
                    cons.append(_MatchAttribute(c.get("requests") or [], str(c["matchAttribute"])))
                elif c.get("distinctAttribute"):
                    cons.append(_DistinctAttribute(c.get("requests") or [], str(c["distinctAttribute"])))
                else:
                    raise _Fatal(f"claim {_ns_name(claim)}, constraint #{i}: empty constraint "
                                 "(unsupported constraint type?)")
            self.constraints.append(cons)

    def _request(self, ci: int, ri: int, claim: Obj, spec: Mapping[str, Any], parent: str, si: int, *,
                 name: str | None = None) -> _Request:
        own = name if name is not None else str(spec.get("name"))
        display = own if not parent else str(spec.get("name"))
        selectors: list[str] = []
        for i, sel in enumerate(spec.get("selectors") or []):
            expr = (sel.get("cel") or {}).get("expression")
            if not expr:
                raise _Fatal(f"claim {_ns_name(claim)}, request {display}, selector #{i}: CEL expression empty "
                             "(unsupported selector type?)")
            selectors.append(str(expr))
        if spec.get("adminAccess") is not None and not self.features.admin_access:
            raise _Fatal(f"claim {_ns_name(claim)}, request {display}: admin access is requested, but the feature "
                         "is disabled")
        class_name = str(spec.get("deviceClassName") or "")
        if not class_name:
            raise _Fatal(f"claim {_ns_name(claim)}, request {display}: missing device class name "
                         "(unsupported request type?)")
        cls = self.classes.get(class_name)
        if cls is None:
            raise _Fatal(f"claim {_ns_name(claim)}, request {display}: could not retrieve device class "
                         f"{class_name}: deviceclass.resource.k8s.io \"{class_name}\" not found")
        cap = spec.get("capacity")
        r = _Request(
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
                    raise _Fatal(f"claim {_ns_name(claim)}, request {display}: asks for all devices, but resource "
                                 f"pool {pool.pool_id} is currently being updated")
                if pool.invalid:
                    raise _Fatal(f"claim {_ns_name(claim)}, request {display}: asks for all devices, but resource "
                                 f"pool {pool.pool_id} is currently invalid")
                for s in pool.device_slices:
                    for di, d in enumerate(_spec(s).get("devices") or []):
                        cand = _Candidate((pool.driver, pool.name, str(d.get("name"))), d, s, pool)
                        if not self._selectable(ci, ri, si, r, cand, di):
                            continue
                        if self.features.consumable_capacity and not self._capacity_fits(r, cand):
                            continue
                        r.all_devices.append(cand)
            r.num_devices = len(r.all_devices)
        else:
            raise _Fatal(f"claim {_ns_name(claim)}, request {display}: unsupported count mode {r.mode}")
        return r

    # -- checks --------------------------------------------------------------------------------

    def _selectable(self, ci: int, ri: int, si: int, r: _Request, cand: _Candidate, di: int) -> bool:
        d = cand.device
        if not self.features.binding_conditions and d.get("bindingConditions"):
            return False
        key = (cand.did, ci, ri, si)
        memo = self.match_memo.get(key)
        if memo is not None:
            return memo
        ok = self._selectors_match(ci, cand, di, r.cls, [
            str(((s.get("cel") or {}).get("expression")) or "") for s in (_spec(r.cls).get("selectors") or [])
        ]) and self._selectors_match(ci, cand, di, None, r.selectors)
        if ok and _spec(cand.slice).get("perDeviceNodeSelection"):
            ok = _selection_matches(self.node, d)
        self.match_memo[key] = ok
        return ok

    def _activation(self, cand: _Candidate, di: int) -> dict[str, Any]:
        md = cand.slice.get("metadata") or {}
        ckey = (str(md.get("uid") or md.get("name", "")), str(md.get("resourceVersion", "")), di)
        if self.cache is not None and md.get("resourceVersion"):
            act = self.cache.activations.get(ckey)
            if act is None:
                act = device_activation(cand.did[0], cand.device)
                self.cache.activations[ckey] = act
            return act
        return device_activation(cand.did[0], cand.device)

    def _selectors_match(self, ci: int, cand: _Candidate, di: int, cls: Obj | None, exprs: Sequence[str]) -> bool:
        if cls is not None:
            who = f"class {(cls.get('metadata') or {}).get('name')}"
        else:
            who = f"claim {_ns_name(self.claims[ci])}"
        dev_id = "/".join(cand.did)
        md = cand.slice.get("metadata") or {}
        for i, expr in enumerate(exprs):
            try:
                prog = compile_selector(expr)
            except CelCompileError as e:
                raise _Fatal(f"{who}: selector #{i}: CEL compile error: {e}") from e
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
                        raise _Fatal(f"{who}: selector #{i} on device {dev_id}: CEL runtime error: {msg}") from e
                    raise _Fatal(f"{who}: selector #{i}: CEL runtime error: {msg}") from e
                if self.cache is not None and md.get("resourceVersion"):
                    self.cache.matches[mkey] = hit
            if not hit:
                return False
        return True

    def _in_use(self, did: DeviceID) -> bool:
        return did in self.state.devices or bool(self.allocating.get(did))

    def _capacity_fits(self, r: _Request, cand: _Candidate) -> bool:
        caps = cand.device.get("capacity") or {}
        reqs = r.capacity_requests or {}
        if any(name not in caps for name in reqs):
            return False
        current = dict(self.state.consumed_capacity.get(cand.did, {}))
        allocating = self.allocating_capacity.get(cand.did, {})
        for name, cap in caps.items():
            consumed = _consumed_for(reqs.get(name), cap)
            if _violates_policy(consumed, cap.get("requestPolicy")):
                return False
            total = current.get(name, Fraction(0)) + consumed + allocating.get(name, Fraction(0))
            if total > parse_quantity(str(cap.get("value", "0"))):
                return False
        return True

    def _counters_fit(self, cand: _Candidate) -> bool:
        pool = cand.pool
        key = pool.name  # upstream keys the per-call counter caches by pool name only (§3.7 quirk)
        avail = self.available_counters.get(key)
        if avail is None:
            avail = {n: dict(c) for n, c in pool.counter_sets.items()}
            for s in [*pool.device_slices, *pool.other_slices]:
                sp = _spec(s)
                for d in sp.get("devices") or []:
                    did = (str(sp.get("driver")), str((sp.get("pool") or {}).get("name")), str(d.get("name")))
                    if not self.state.is_allocated(did):
                        continue
                    for cc in d.get("consumesCounters") or []:
                        cset = avail.get(str(cc.get("counterSet")), {})
                        for cname, c in (cc.get("counters") or {}).items():
                            if cname in cset:
                                cset[cname] -= parse_quantity(str(c.get("value", "0")))
            self.available_counters[key] = avail
        consumed = self.consumed_counters.setdefault(key, {})
        self._add_counters(consumed, cand, 1)
        for set_name, counters in avail.items():
            used = consumed.get(set_name, {})
            for cname, value in counters.items():
                if value < used.get(cname, Fraction(0)):
                    self._add_counters(consumed, cand, -1)
                    return False
        return True

    @staticmethod
    def _add_counters(consumed: dict[str, dict[str, Fraction]], cand: _Candidate, sign: int) -> None:
        for cc in cand.device.get("consumesCounters") or []:
            cset = consumed.setdefault(str(cc.get("counterSet")), {})
            for cname, c in (cc.get("counters") or {}).items():
                cset[cname] = cset.get(cname, Fraction(0)) + sign * parse_quantity(str(c.get("value", "0")))

    def _allocate_device(self, ci: int, r: _Request, cand: _Candidate, must: bool) -> Callable[[], None] | None:
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
        if not skip_counters and consumes and not self._counters_fit(cand):
            return None
        # NOTE: from here on a rejection leaves the counters consumed (upstream behaviour, see module doc).
        if self.features.device_taints and _taint_blocks(cand.device, r.tolerations):
            return None
        cons = self.constraints[ci]
        for i, c in enumerate(cons):
            if not c.add(r.base_name, r.sub_name, cand.device, cand.did):
                if must:
                    raise _Fatal(f"claim {_ns_name(self.claims[ci])}, request {r.sub_name or r.base_name}: cannot add "
                                 f"device {'/'.join(cand.did)} because a claim constraint would not be satisfied")
                for prev in cons[:i]:
                    prev.remove(r.base_name, r.sub_name, cand.device, cand.did)
                return None
        holders = self.allocating.setdefault(cand.did, set())
        if not multi:
            holders.add(ci)
        picked = _Picked(r, cand)
        if self.features.consumable_capacity:
            if not self._capacity_fits(r, cand):
                return None
            if multi:
                reqs = r.capacity_requests or {}
                picked.consumed = {
                    n: _consumed_for(reqs.get(n), c) for n, c in (cand.device.get("capacity") or {}).items()
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
                self._add_counters(self.consumed_counters[cand.pool.name], cand, -1)
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
            except _ResultLimit:
                return False
        alts = self.requests[ci][ri]
        if not in_sub and alts[0].sub_name:
            all_exceeded = True
            for idx in range(len(alts)):
                try:
                    ok = self.search(ci, ri, idx, 0, True, (0, 0, 0))
                except _ResultLimit:
                    continue
                all_exceeded = False
                if ok:
                    self.selected_sub[(ci, ri)] = idx
                    return True
            if all_exceeded:
                raise _ResultLimit
            return False
        r = alts[si]
        if r.mode == "All" and not r.all_devices:
            return False
        if k >= r.num_devices:
            return self.search(ci, ri + 1, 0, 0, False, (0, 0, 0))
        if len(self.results[ci]) + r.num_devices - k > ALLOCATION_RESULTS_MAX:
            raise _ResultLimit
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
                devs = _spec(sl).get("devices") or []
                d0 = start[2] if (pi == start[0] and sj == start[1]) else 0
                for di in range(d0, len(devs)):
                    d = devs[di]
                    did = (pool.driver, pool.name, str(d.get("name")))
                    if r.admin:
                        if ci in self.allocating.get(did, ()):
                            continue
                    elif self._in_use(did):
                        continue
                    cand = _Candidate(did, d, sl, pool)
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

    # -- result --------------------------------------------------------------------------------

    def build(self) -> list[Obj]:
        out: list[Obj] = []
        for ci, claim in enumerate(self.claims):
            devices = _spec(claim).get("devices") or {}
            req_specs = devices.get("requests") or []
            results: list[Obj] = []
            for p in self.results[ci]:
                res: Obj = {"request": p.req.name, "driver": p.cand.did[0], "pool": p.cand.did[1],
                            "device": p.cand.did[2]}
                if p.req.admin:
                    res["adminAccess"] = True
                if p.req.tolerations:
                    res["tolerations"] = [dict(t) for t in p.req.tolerations]
                if self.features.binding_conditions:
                    if p.cand.device.get("bindingConditions"):
                        res["bindingConditions"] = list(p.cand.device["bindingConditions"])
                    if p.cand.device.get("bindingFailureConditions"):
                        res["bindingFailureConditions"] = list(p.cand.device["bindingFailureConditions"])
                if p.share_id is not None:
                    res["shareID"] = p.share_id
                if p.consumed:
                    res["consumedCapacity"] = {n: format_quantity(v) for n, v in p.consumed.items()}
                results.append(res)

            chosen: list[_Request] = []
            for ri, alts in enumerate(self.requests[ci]):
                chosen.append(alts[self.selected_sub.get((ci, ri), 0)])
            config: list[Obj] = []
            class_ranges: dict[str, tuple[int, int]] = {}
            for r in chosen:
                rng = class_ranges.get(r.class_name)
                if rng is not None:
                    for i in range(*rng):
                        config[i]["requests"].append(r.name)
                    continue
                begin = len(config)
                for c in _spec(r.cls).get("config") or []:
                    entry: Obj = {"source": "FromClass", "requests": [r.name]}
                    entry.update({k: v for k, v in c.items() if k != "requests"})
                    config.append(entry)
                class_ranges[r.class_name] = (begin, len(config))
            for c in devices.get("config") or []:
                reqs = list(c.get("requests") or [])
                body = {k: v for k, v in c.items() if k != "requests"}
                if not reqs or any(r.base_name in reqs or (r.sub_name and r.name in reqs) for r in chosen):
                    entry = {"source": "FromClaim", **({"requests": reqs} if reqs else {}), **body}
                    config.append(entry)
            if self.features.minor >= 37:
                for entry in config:
                    reqs = entry.get("requests") or []
                    if reqs and all(r.base_name in reqs or (r.sub_name and r.name in reqs) for r in chosen):
                        entry.pop("requests", None)
            allocation: Obj = {"devices": {"results": results}}
            if config:
                allocation["devices"]["config"] = config
            ns = self._node_selector(self.results[ci])
            if ns is not None:
                allocation["nodeSelector"] = ns
            out.append(allocation)
            del req_specs
        return out

    def _node_selector(self, picked: Sequence[_Picked]) -> Obj | None:
        node_name = (self.node.get("metadata") or {}).get("name")
        fields_: list[Obj] = []
        exprs: list[Obj] = []
        for p in picked:
            src = p.cand.device if _spec(p.cand.slice).get("perDeviceNodeSelection") else _spec(p.cand.slice)
            if src.get("nodeName") or p.cand.device.get("bindsToNode"):
                return {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
            sel = src.get("nodeSelector")
            if sel and sel.get("nodeSelectorTerms"):
                first = sel["nodeSelectorTerms"][0]
                pairs = ((first.get("matchFields") or [], fields_), (first.get("matchExpressions") or [], exprs))
                for src_list, dst in pairs:
                    for req in src_list:
                        if not any(x.get("key") == req.get("key") and x.get("operator") == req.get("operator")
                                   and set(x.get("values") or []) == set(req.get("values") or []) for x in dst):
                            dst.append(dict(req))
        if not fields_ and not exprs:
            return None
        term: Obj = {}
        if exprs:
            term["matchExpressions"] = exprs
        if fields_:
            term["matchFields"] = fields_
        return {"nodeSelectorTerms": [term]}


def allocate(node: Obj, claims_to_allocate: Sequence[Obj], *, slices: Sequence[Obj],
             classes: Mapping[str, Obj] | Iterable[Obj], allocated_state: AllocatedState,
             features: Features | None = None, cache: AllocatorCache | None = None) -> AllocationOutcome:
    """Allocate devices for the not-yet-allocated claims of one pod on ``node``.

    ``classes`` is a name→DeviceClass mapping or an iterable of DeviceClasses. ``allocated_state``
    must already include in-flight allocations of pods scheduled earlier. Returns success with one
    ``status.allocation`` per claim, ``unschedulable`` with the node-rejection text, or ``error``.
    """
    feats = features or Features()
    if not isinstance(classes, Mapping):
        classes = {str((c.get("metadata") or {}).get("name")): c for c in classes}
    alloc = _Allocator(node, claims_to_allocate, slices, classes, allocated_state, feats, cache)
    try:
        alloc.prepare()
        try:
            done = alloc.search(0, 0, 0, 0, False, (0, 0, 0))
        except _ResultLimit:
            done = False
        if not done:
            if any(p.invalid for p in alloc.pools):
                return AllocationOutcome(unschedulable=INVALID_POOLS)
            return AllocationOutcome(unschedulable=CANNOT_ALLOCATE)
        return AllocationOutcome(allocations=alloc.build())
    except _Fatal as e:
        return AllocationOutcome(error=str(e))
    finally:
        if cache is not None:
            cache._trim()
