"""Where MIG GPU instances can go, and why a profile does not fit.

Model (reference ``mig-geometry.md`` §2): a GPU has 8 memory slices and 7 compute slices; a GI of a
profile occupies the memory slots ``[start, start+size)`` for one of the profile's allowed starts; two GIs
conflict iff those ranges overlap; a GPU holds at most 7 GIs and at most ``max_instances`` of one profile.

A request that does not fit fails for one of two reasons, and checks need to tell them apart:

* **over capacity** — not enough free compute or memory slices, the per-profile maximum, or the 7-GI
  limit. No rearrangement of the existing GIs would help.
* **fragmentation** — the capacity suffices but every allowed placement overlaps an existing GI. The
  reference shows that on an *empty* GPU the capacity check is exact for every multiset, so this is
  purely a matter of where earlier GIs sit.

Scheduler order (reference ``nvidia-dra-driver.md`` §4.1): with DynamicMIG the driver publishes every
(profile, placement) as a device, sorted lexically by device name inside a GPU's slice, and
kube-scheduler takes the first free device that matches. So a sequence of identical requests lands on
placements in lexical order of their names — which equals numeric start order only while starts are
single digits.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from checks.errors import UsageError
from checks.mig.geometry import GpuGeometry, Profile
from checks.mig.naming import device_name

FitKind = Literal["fits", "over_capacity", "fragmentation"]
Limit = Literal["", "compute_slices", "memory_slices", "max_instances", "gpu_instances"]


@dataclass(frozen=True, order=True)
class Placement:
    """A GPU instance of ``profile`` (profile name) placed at memory slice ``start``."""

    profile: str
    """Profile name, e.g. ``1g.10gb``."""
    start: int
    """Placement start on the memory-slice axis."""

    def __str__(self) -> str:
        return f"{self.profile}@{self.start}"


@dataclass(frozen=True)
class Usage:
    """What a set of GIs uses of one GPU."""

    compute_slices: int
    """Compute slices in use."""
    memory_slices: int
    """Memory slices in use."""
    instances: int
    """GPU instances in place."""
    slots: frozenset[int]
    """Memory slots taken."""
    per_profile: dict[str, int]
    """Count of GIs per profile name."""


@dataclass(frozen=True)
class FitResult:
    """Whether one more GI of ``profile`` fits next to the occupied ones, and if not, why."""

    profile: str
    """The profile asked about."""
    kind: FitKind
    """``fits``, ``over_capacity`` or ``fragmentation``."""
    reason: str
    """One human line, e.g. ``7 of 7 compute slices used``."""
    limit: Limit = ""
    """For over-capacity: which limit was hit first (compute, memory, per-profile max, GI count)."""
    placements: tuple[Placement, ...] = ()
    """When it fits: every free placement of the profile, in scheduler order (first = where it lands)."""

    @property
    def fits(self) -> bool:
        """True when at least one placement is free."""
        return self.kind == "fits"


def usage(geo: GpuGeometry, occupied: Iterable[Placement]) -> Usage:
    """Sum up what ``occupied`` uses (no validation; see :func:`validate_arrangement`)."""
    compute = memory = count = 0
    slots: set[int] = set()
    per: Counter[str] = Counter()
    for pl in occupied:
        p = geo.profile(pl.profile)
        compute += p.compute_slices
        memory += p.memory_slices
        count += 1
        slots.update(p.slots(pl.start))
        per[p.name] += 1
    return Usage(compute, memory, count, frozenset(slots), dict(per))


def _capacity_problem(geo: GpuGeometry, p: Profile, use: Usage) -> tuple[Limit, str] | None:
    """First capacity limit ``p`` would break, in a fixed order: compute, memory, per-profile, GI count."""
    if use.compute_slices + p.compute_slices > geo.compute_slices:
        text = f"{use.compute_slices} of {geo.compute_slices} compute slices used"
        if use.compute_slices < geo.compute_slices:
            text += f", {p.name} needs {p.compute_slices}"
        return "compute_slices", text
    if use.memory_slices + p.memory_slices > geo.memory_slices:
        text = f"{use.memory_slices} of {geo.memory_slices} memory slices used"
        if use.memory_slices < geo.memory_slices:
            text += f", {p.name} needs {p.memory_slices}"
        return "memory_slices", text
    if use.per_profile.get(p.name, 0) >= p.max_instances:
        return "max_instances", f"{use.per_profile.get(p.name, 0)} of max {p.max_instances} {p.name} placed"
    if use.instances >= geo.max_gpu_instances:
        return "gpu_instances", f"{use.instances} of {geo.max_gpu_instances} GPU instances placed"
    return None


def _order_key(p: Profile, start: int) -> str:
    # Lexical order of the device name; the minor prefix is the same for every device of one GPU.
    return device_name(0, p.name, p.nvml_id, start)


def _free_starts(p: Profile, use: Usage) -> list[int]:
    starts = [s for s in p.starts if use.slots.isdisjoint(p.slots(s))]
    return sorted(starts, key=lambda s: _order_key(p, s))


def fits(geo: GpuGeometry, profile: str, occupied: Iterable[Placement] = ()) -> FitResult:
    """Whether one more GI of ``profile`` fits next to ``occupied``, and why not if it does not.

    Capacity is judged first: if a limit is hit the answer is over-capacity even when, in addition, no
    placement is free — rearranging would not help then. Only when capacity suffices and no placement
    is free is it fragmentation.
    """
    p = geo.profile(profile)
    use = usage(geo, occupied)
    problem = _capacity_problem(geo, p, use)
    if problem is not None:
        limit, text = problem
        return FitResult(p.name, "over_capacity", text, limit=limit)
    starts = _free_starts(p, use)
    if not starts:
        text = (
            f"{geo.compute_slices - use.compute_slices} compute and {geo.memory_slices - use.memory_slices} "
            f"memory slices free, but every {p.name} placement {{{','.join(map(str, p.starts))}}}:"
            f"{p.memory_slices} overlaps a GI"
        )
        return FitResult(p.name, "fragmentation", text)
    free = tuple(Placement(p.name, s) for s in starts)
    return FitResult(p.name, "fits", f"lands at memory slice {starts[0]}", placements=free)


def validate_arrangement(geo: GpuGeometry, occupied: Sequence[Placement]) -> None:
    """UsageError unless ``occupied`` could exist on ``geo``: known profiles, allowed starts, no overlap, limits."""
    placed: list[Placement] = []
    for pl in occupied:
        p = geo.profile(pl.profile)
        if pl.start not in p.starts:
            raise UsageError(
                f"{p.name} cannot start at memory slice {pl.start} on {geo.key} (starts {list(p.starts)})",
                where=str(pl),
            )
        result = fits(geo, p.name, placed)
        if not result.fits or Placement(p.name, pl.start) not in result.placements:
            why = result.reason if not result.fits else "overlaps another GI"
            raise UsageError(f"cannot place {pl} next to {', '.join(map(str, placed))}: {why}", where=str(pl))
        placed.append(Placement(p.name, pl.start))


def free_placements(geo: GpuGeometry, occupied: Iterable[Placement] = ()) -> list[Placement]:
    """Every placement, of any profile, that could be created next to ``occupied`` (all limits applied).

    Ordered by profile (data order) and, within a profile, by scheduler order.
    """
    occ = list(occupied)
    out: list[Placement] = []
    for p in geo.profiles:
        out.extend(fits(geo, p.name, occ).placements)
    return out


def scheduler_order(geo: GpuGeometry, minor: int, profile: str) -> list[str]:
    """DynamicMIG device names of ``profile`` on GPU ``minor``, in the order kube-scheduler tries them."""
    p = geo.profile(profile)
    return sorted(device_name(minor, p.name, p.nvml_id, s) for s in p.starts)


@dataclass(frozen=True)
class Step:
    """Outcome of one request in :func:`predict_sequence`."""

    index: int
    """1-based position of the request in the sequence."""
    profile: str
    """Requested profile."""
    result: FitResult
    """The fit answer at the time of this request."""
    placement: Placement | None
    """Where it landed, or None when it did not fit."""
    device: str | None
    """DRA device name it landed on, or None."""


def predict_sequence(
    geo: GpuGeometry, minor: int, requests: Sequence[str], occupied: Sequence[Placement] = ()
) -> list[Step]:
    """Where each of a sequence of single-profile requests lands: the first free device in scheduler order.

    A request that does not fit leaves the GPU unchanged and the sequence goes on, as pending pods do
    not block later ones that fit.
    """
    validate_arrangement(geo, occupied)
    state = list(occupied)
    steps: list[Step] = []
    for i, name in enumerate(requests, start=1):
        result = fits(geo, name, state)
        if result.fits:
            pl = result.placements[0]
            p = geo.profile(pl.profile)
            state.append(pl)
            steps.append(Step(i, p.name, result, pl, device_name(minor, p.name, p.nvml_id, pl.start)))
        else:
            steps.append(Step(i, result.profile, result, None, None))
    return steps


def capacity_ok(geo: GpuGeometry, profiles: Sequence[str]) -> bool:
    """The simple capacity check for a multiset on an empty GPU (reference §2):
    Σcompute ≤ 7, Σmemory ≤ 8, per-profile max, ≤ 7 GIs."""
    ps = [geo.profile(n) for n in profiles]
    counts = Counter(p.name for p in ps)
    return (
        sum(p.compute_slices for p in ps) <= geo.compute_slices
        and sum(p.memory_slices for p in ps) <= geo.memory_slices
        and len(ps) <= geo.max_gpu_instances
        and all(counts[p.name] <= p.max_instances for p in ps)
    )


def arrange(
    geo: GpuGeometry, profiles: Sequence[str], occupied: Sequence[Placement] = ()
) -> tuple[Placement, ...] | None:
    """Exhaustive search: one arrangement of ``profiles`` next to ``occupied`` where everything fits, or None.

    Independent of :func:`capacity_ok` (it only places GIs one by one under :func:`fits`), so tests
    can compare the two.
    """
    ps = sorted((geo.profile(n) for n in profiles), key=lambda p: (-p.memory_slices, -p.compute_slices, p.name))

    def place(i: int, state: list[Placement]) -> list[Placement] | None:
        if i == len(ps):
            return state
        for pl in fits(geo, ps[i].name, state).placements:
            # identical profiles: only try starts after the previous one of the same profile (symmetry)
            if i > 0 and ps[i - 1].name == ps[i].name and pl.start < state[-1].start:
                continue
            found = place(i + 1, [*state, pl])
            if found is not None:
                return found
        return None

    result = place(0, list(occupied))
    return None if result is None else tuple(result[len(occupied) :])


def fragmentation_blocker(geo: GpuGeometry, profile: str) -> tuple[Placement, ...] | None:
    """A minimal set of GIs that blocks ``profile`` by fragmentation only, or None if none can.

    Minimal = fewest GIs; ties broken by fewest compute slices, then fewest memory slices, then
    placement order. The arrangement itself is valid, and with it in place :func:`fits` answers
    ``fragmentation`` for ``profile``. The 7g profile can never be blocked this way (any GI leaves
    fewer than 7 compute slices free).
    """
    target = geo.profile(profile)
    if target.compute_slices >= geo.compute_slices:
        return None  # any GI at all already breaks the compute capacity: over capacity, never fragmentation
    candidates = sorted(
        (Placement(p.name, s) for p in geo.profiles if not p.media_extension for s in p.starts),
        key=lambda pl: (geo.profile(pl.profile).compute_slices, geo.profile(pl.profile).memory_slices, pl.start),
    )
    for k in range(1, geo.max_gpu_instances + 1):
        best: tuple[tuple[int, int], tuple[Placement, ...]] | None = None
        for combo in itertools.combinations(candidates, k):
            use = usage(geo, combo)
            if use.memory_slices != len(use.slots):  # overlapping GIs
                continue
            if fits(geo, target.name, combo).kind != "fragmentation":
                continue
            try:
                validate_arrangement(geo, combo)
            except UsageError:
                continue
            score = (use.compute_slices, use.memory_slices)
            if best is None or score < best[0]:
                best = (score, tuple(sorted(combo, key=lambda pl: pl.start)))
        if best is not None:
            return best[1]
    return None
