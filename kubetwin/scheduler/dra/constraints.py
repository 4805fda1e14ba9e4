"""Claim constraints, shared counters and consumable capacity: the checks a device must pass beyond its
selectors before the search may take it (kubernetes-dra.md §3.6, §3.7, §3.10).

Why apart from the search: each is bookkeeping with an add and an undo that the depth-first search calls on
the way down and back up; keeping them here leaves the search module about the walk. Device taints are checked
with :mod:`kubetwin.predicates` (the same toleration rule as for node taints, §3.11).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from kubetwin.scheduler.dra.pools import Pool, spec_of
from kubetwin.scheduler.dra.state import AllocatedState, DeviceID
from kubetwin.scheduler.quantity import parse_quantity

__all__ = ["Constraint", "DistinctAttribute", "MatchAttribute", "SharedCounters", "capacity_fits", "consumed_for"]


# ---------------------------------------------------------------------------------------------
# matchAttribute / distinctAttribute


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


class MatchAttribute(_AttributeConstraint):
    """matchAttribute: every device of the covered requests has the same value."""

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


class DistinctAttribute(_AttributeConstraint):
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


Constraint = MatchAttribute | DistinctAttribute


# ---------------------------------------------------------------------------------------------
# Shared counters


class SharedCounters:
    """Shared-counter bookkeeping for one Allocate call (kubernetes-dra.md §3.7): what each pool's counter sets
    have left after the allocated state, and what the devices picked so far consume.

    Keyed by pool *name* only, as upstream keys its per-call caches (a quirk reproduced on purpose)."""

    def __init__(self, state: AllocatedState) -> None:
        self.state = state
        self.available: dict[str, dict[str, dict[str, Fraction]]] = {}
        self.consumed: dict[str, dict[str, dict[str, Fraction]]] = {}

    def take(self, pool: Pool, device: Mapping[str, Any]) -> bool:
        """Consume ``device``'s counters if every counter of ``pool`` still fits, else change nothing."""
        key = pool.name
        avail = self.available.get(key)
        if avail is None:
            avail = {n: dict(c) for n, c in pool.counter_sets.items()}
            for s in [*pool.device_slices, *pool.other_slices]:
                sp = spec_of(s)
                for d in sp.get("devices") or []:
                    did = (str(sp.get("driver")), str((sp.get("pool") or {}).get("name")), str(d.get("name")))
                    if not self.state.is_allocated(did):
                        continue
                    for cc in d.get("consumesCounters") or []:
                        cset = avail.get(str(cc.get("counterSet")), {})
                        for cname, c in (cc.get("counters") or {}).items():
                            if cname in cset:
                                cset[cname] -= parse_quantity(str(c.get("value", "0")))
            self.available[key] = avail
        consumed = self.consumed.setdefault(key, {})
        self._add(consumed, device, 1)
        for set_name, counters in avail.items():
            used = consumed.get(set_name, {})
            for cname, value in counters.items():
                if value < used.get(cname, Fraction(0)):
                    self._add(consumed, device, -1)
                    return False
        return True

    def release(self, pool: Pool, device: Mapping[str, Any]) -> None:
        """Give back what :meth:`take` consumed for ``device``."""
        self._add(self.consumed[pool.name], device, -1)

    @staticmethod
    def _add(consumed: dict[str, dict[str, Fraction]], device: Mapping[str, Any], sign: int) -> None:
        for cc in device.get("consumesCounters") or []:
            cset = consumed.setdefault(str(cc.get("counterSet")), {})
            for cname, c in (cc.get("counters") or {}).items():
                cset[cname] = cset.get(cname, Fraction(0)) + sign * parse_quantity(str(c.get("value", "0")))


# ---------------------------------------------------------------------------------------------
# Consumable capacity


def consumed_for(request: str | None, cap: Mapping[str, Any]) -> Fraction:
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


def violates_policy(value: Fraction, policy: Mapping[str, Any] | None) -> bool:
    """An amount the capacity's ``requestPolicy`` does not allow (above max, off step, not a valid value)."""
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


def capacity_fits(device: Mapping[str, Any], requests: Mapping[str, str] | None,
                  current: Mapping[str, Fraction], allocating: Mapping[str, Fraction]) -> bool:
    """One more allocation of ``device`` with these capacity ``requests`` fits next to what allocated claims
    (``current``) and this call's earlier picks (``allocating``) already consume."""
    caps = device.get("capacity") or {}
    reqs = requests or {}
    if any(name not in caps for name in reqs):
        return False
    for name, cap in caps.items():
        consumed = consumed_for(reqs.get(name), cap)
        if violates_policy(consumed, cap.get("requestPolicy")):
            return False
        total = current.get(name, Fraction(0)) + consumed + allocating.get(name, Fraction(0))
        if total > parse_quantity(str(cap.get("value", "0"))):
            return False
    return True
