"""Property tests: the capacity check and an exhaustive placement search agree (reference §2)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from checks.mig import GpuGeometry, Placement, arrange, capacity_ok, fits, known_gpus

GPUS = known_gpus()


@st.composite
def multisets(draw: st.DrawFn) -> tuple[GpuGeometry, list[str]]:
    geo = draw(st.sampled_from(GPUS))
    names = draw(st.lists(st.sampled_from([p.name for p in geo.profiles]), min_size=0, max_size=9))
    return geo, names


def brute_force_placeable(geo: GpuGeometry, names: list[str]) -> bool:
    """Pure geometry, independent of checks.mig.placement: try every start for every GI, allowing only
    non-overlapping memory ranges, the per-profile maxima and the GI limit. Compute slices are NOT
    checked here — the reference claims the placement sets make that limit redundant, and this test
    would catch a counterexample."""
    profiles = [geo.profile(n) for n in names]
    if len(profiles) > geo.max_gpu_instances:
        return False
    if any(names.count(p.name) > p.max_instances for p in profiles):
        return False

    def place(i: int, used: frozenset[int]) -> bool:
        if i == len(profiles):
            return True
        p = profiles[i]
        for start in p.starts:
            slots = frozenset(range(start, start + p.memory_slices))
            if not slots & used and place(i + 1, used | slots):
                return True
        return False

    return place(0, frozenset())


@settings(max_examples=400, deadline=None)
@given(multisets())
def test_capacity_check_equals_exhaustive_search_on_empty_gpu(case: tuple[GpuGeometry, list[str]]) -> None:
    geo, names = case
    expected = brute_force_placeable(geo, names)
    assert capacity_ok(geo, names) == expected, names
    assert (arrange(geo, names) is not None) == expected, names


@st.composite
def states(draw: st.DrawFn) -> tuple[GpuGeometry, list[Placement], str]:
    """A reachable GPU state (GIs created one by one at any free placement) and a next request."""
    geo = draw(st.sampled_from(GPUS))
    occupied: list[Placement] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from([p.name for p in geo.profiles]))
        result = fits(geo, name, occupied)
        if result.fits:
            occupied.append(draw(st.sampled_from(result.placements)))
    return geo, occupied, draw(st.sampled_from([p.name for p in geo.profiles]))


@settings(max_examples=400, deadline=None)
@given(states())
def test_why_not_is_consistent_with_rearranging(case: tuple[GpuGeometry, list[Placement], str]) -> None:
    """Over capacity ⇔ no arrangement of the whole set exists; fragmentation ⇒ another arrangement exists."""
    geo, occupied, name = case
    result = fits(geo, name, occupied)
    whole = [p.profile for p in occupied] + [name]
    rearranged = arrange(geo, whole)
    if result.kind == "over_capacity":
        assert rearranged is None and not capacity_ok(geo, whole)
    elif result.kind == "fragmentation":
        assert rearranged is not None and capacity_ok(geo, whole)
    else:
        assert result.placements and arrange(geo, [name], occupied) is not None
