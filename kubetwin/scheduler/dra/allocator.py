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

This module is the entry point; the work is split by concern:

* :mod:`~kubetwin.scheduler.dra.state` — feature gates, allocated state, cross-call cache, outcome;
* :mod:`~kubetwin.scheduler.dra.pools` — pool gathering and ordering;
* :mod:`~kubetwin.scheduler.dra.search` — request preprocessing, CEL selection, depth-first search;
* :mod:`~kubetwin.scheduler.dra.constraints` — matchAttribute/distinctAttribute, shared counters, capacity;
* :mod:`~kubetwin.scheduler.dra.results` — the ``status.allocation`` of each claim.

Upstream quirks reproduced on purpose (so the twin fails where the real scheduler fails):

* shared-counter bookkeeping is keyed by pool *name* only (§3.7);
* a device whose counters fit but that is then rejected by a taint or a claim constraint keeps its
  counter consumption for the rest of that Allocate call (the 1.36 allocator does not roll it back);
* if some counter of a pool is already over-committed, no counter-consuming device of that pool fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kubetwin.scheduler.dra.results import build_allocations
from kubetwin.scheduler.dra.search import DeviceSearch
from kubetwin.scheduler.dra.state import (
    CANNOT_ALLOCATE,
    INVALID_POOLS,
    AllocatedState,
    AllocationError,
    AllocationOutcome,
    AllocatorCache,
    DeviceID,
    Features,
    Obj,
    ResultLimitExceeded,
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
]


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
    alloc = DeviceSearch(node, claims_to_allocate, slices, classes, allocated_state, feats, cache)
    try:
        alloc.prepare()
        try:
            done = alloc.search(0, 0, 0, 0, False, (0, 0, 0))
        except ResultLimitExceeded:
            done = False
        if not done:
            if any(p.invalid for p in alloc.pools):
                return AllocationOutcome(unschedulable=INVALID_POOLS)
            return AllocationOutcome(unschedulable=CANNOT_ALLOCATE)
        return AllocationOutcome(allocations=build_allocations(alloc))
    except AllocationError as e:
        return AllocationOutcome(error=str(e))
    finally:
        if cache is not None:
            cache.trim()
