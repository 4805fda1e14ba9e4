"""Pool gathering (kubernetes-dra.md §3.3): which ResourceSlices of which pools the allocator may take devices
from on one node, in the order it tries them.

Why apart from the search: this is the part that depends on how drivers publish (pool generations, incomplete
pools, shared-counter slices, per-device node selection) and on nothing the claims ask for; the search walks the
result. A pool that cannot be used is still returned, marked ``incomplete`` or ``invalid``, because upstream
reports those differently (``All`` requests fail outright; the node rejection text names invalid pools).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kubetwin.predicates import node_matches_selector
from kubetwin.scheduler.dra.state import DeviceID, Features, Obj
from kubetwin.scheduler.quantity import parse_quantity

__all__ = ["Candidate", "Pool", "gather_pools", "selection_matches", "spec_of"]


def spec_of(o: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object's ``spec`` (empty when absent)."""
    return o.get("spec") or {}


def selection_matches(node: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """A slice or a device (per-device node selection) is for ``node``: nodeName, allNodes or nodeSelector."""
    node_name = obj.get("nodeName")
    if node_name:
        return bool(node_name == (node.get("metadata") or {}).get("name"))
    if obj.get("allNodes"):
        return True
    if obj.get("nodeSelector") is not None:
        return node_matches_selector(node, obj["nodeSelector"])
    return False


@dataclass
class Pool:
    """One driver's pool as seen from the node: its device slices in name order, its shared counters."""

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


def _slice_name(s: Mapping[str, Any]) -> str:
    return str((s.get("metadata") or {}).get("name", ""))


def _uses_partitionable(s: Mapping[str, Any]) -> bool:
    sp = spec_of(s)
    return sp.get("perDeviceNodeSelection") is not None or bool(sp.get("sharedCounters"))


def gather_pools(node: Mapping[str, Any], slices: Sequence[Obj], features: Features) -> list[Pool]:
    """kubernetes-dra.md §3.3 (1.35+ semantics, 1.36 ordering)."""
    node_name = (node.get("metadata") or {}).get("name")
    by_pool: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        sp = spec_of(s)
        if sp.get("nodeName") and sp.get("nodeName") != node_name:
            continue
        if not features.partitionable_devices and _uses_partitionable(s):
            continue
        if sp.get("nodeName") or sp.get("allNodes") or sp.get("nodeSelector") is not None:
            relevant = selection_matches(node, sp)
        elif sp.get("perDeviceNodeSelection"):
            relevant = any(selection_matches(node, d) for d in sp.get("devices") or [])
        else:
            continue
        if not relevant:
            continue
        pool = sp.get("pool") or {}
        key = (str(sp.get("driver", "")), str(pool.get("name", "")))
        gen = int(pool.get("generation", 0))
        current = by_pool.get(key)
        if current is None or gen > int(spec_of(current[0])["pool"].get("generation", 0)):
            by_pool[key] = [s]
        elif gen == int(spec_of(current[0])["pool"].get("generation", 0)):
            current.append(s)

    result: list[Pool] = []
    for (driver, pname), pslices in by_pool.items():
        pool_spec = spec_of(pslices[0])["pool"]
        gen = int(pool_spec.get("generation", 0))
        want = int(pool_spec.get("resourceSliceCount", 0))
        all_for_pool: list[Obj] | None = None
        if len(pslices) != want:
            obsolete = False
            all_for_pool = []
            for s in slices:
                sp = spec_of(s)
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
                result.append(Pool(driver, pname, incomplete=True))
                continue
        result.append(_build_pool(driver, pname, pslices, all_for_pool, features))

    result.sort(key=lambda p: (p.driver, p.name))
    # Pools with binding-condition devices go last (stable sort keeps driver/name order within).
    result.sort(key=lambda p: p.has_binding_conditions)
    return result


def _build_pool(driver: str, name: str, pslices: list[Obj], all_for_pool: list[Obj] | None,
                features: Features) -> Pool:
    pool = Pool(driver, name)
    ordered = sorted(pslices, key=_slice_name)
    counter_slices: list[Obj] = []
    for s in ordered:
        if features.partitionable_devices and spec_of(s).get("sharedCounters"):
            counter_slices.append(s)
        else:
            pool.device_slices.append(s)
    if all_for_pool is not None and len(pslices) < len(all_for_pool):
        seen = {_slice_name(s) for s in pslices}
        for s in all_for_pool:
            if _slice_name(s) in seen:
                continue
            if features.partitionable_devices and spec_of(s).get("sharedCounters"):
                counter_slices.append(s)
            else:
                pool.other_slices.append(s)
    names: set[str] = set()
    for s in pool.device_slices:
        for d in spec_of(s).get("devices") or []:
            if d.get("name") in names:
                return Pool(driver, name, invalid=True, invalid_reason=f"duplicate device name {d.get('name')}")
            names.add(str(d.get("name")))
            if d.get("bindingConditions"):
                pool.has_binding_conditions = True
    if not features.partitionable_devices:
        return pool
    for s in counter_slices:
        for cs in spec_of(s).get("sharedCounters") or []:
            if cs.get("name") in pool.counter_sets:
                return Pool(driver, name, invalid=True, invalid_reason=f"duplicate counter set name {cs.get('name')}")
            pool.counter_sets[str(cs.get("name"))] = {
                cname: parse_quantity(str(c.get("value", "0"))) for cname, c in (cs.get("counters") or {}).items()
            }
    for s in [*pool.device_slices, *pool.other_slices]:
        for d in spec_of(s).get("devices") or []:
            for cc in d.get("consumesCounters") or []:
                cset = pool.counter_sets.get(str(cc.get("counterSet")))
                if cset is None:
                    return Pool(driver, name, invalid=True,
                                 invalid_reason=f"counter set {cc.get('counterSet')} not found")
                for cname in cc.get("counters") or {}:
                    if cname not in cset:
                        return Pool(driver, name, invalid=True,
                                     invalid_reason=f"counter {cname} not found in counter set {cc.get('counterSet')}")
    return pool


@dataclass
class Candidate:
    """One device of a pool the search may pick, with the slice that publishes it."""

    did: DeviceID
    device: Obj
    slice: Obj
    pool: Pool
