"""What the DRA allocator reads and returns besides claims and slices: feature gates, the allocated state, the
cross-call cache, the outcome, and the two ways a search stops early.

Why a module of its own: the scheduler builds these (it keeps one :class:`AllocatorCache` and one
:class:`AllocatedState` per pass) while the search, pool and constraint modules only read them; keeping them
apart from the search lets each of those import the vocabulary without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kubetwin.scheduler.quantity import parse_quantity

__all__ = [
    "ALLOCATION_RESULTS_MAX",
    "CANNOT_ALLOCATE",
    "INVALID_POOLS",
    "AllocatedState",
    "AllocationError",
    "AllocationOutcome",
    "AllocatorCache",
    "DeviceID",
    "Features",
    "Obj",
    "ResultLimitExceeded",
]

Obj = dict[str, Any]
DeviceID = tuple[str, str, str]
"""(driver, pool, device) — the identity the allocated state is keyed by."""

CANNOT_ALLOCATE = "cannot allocate all claims"
INVALID_POOLS = "invalid resource pools were encountered"
ALLOCATION_RESULTS_MAX = 32
"""Most results one claim may hold (upstream ``resourceapi.AllocationResultsMaxSize``)."""



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

    def trim(self) -> None:
        """Forget everything once a table outgrows ``max_entries`` (the allocator calls it after each run)."""
        if len(self.matches) > self.max_entries:
            self.matches.clear()
        if len(self.activations) > self.max_entries:
            self.activations.clear()


class AllocationError(Exception):
    """A fatal allocation error (text is what the scheduler reports as ``SchedulerError``)."""


class ResultLimitExceeded(Exception):
    """More than 32 results for a claim on this branch (upstream errAllocationResultMaxSizeExceeded)."""

