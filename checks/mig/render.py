"""Text slice map: which GPU instance occupies each of a GPU's memory slices.

A GI spanning several slices is drawn as one merged cell, so fragmentation is visible at a glance::

    slice | 0       | 1       | 2       | 3       | 4       | 5       | 6       | 7       |
    GI    | 1g.5gb  | .       | .       | .       | 1g.5gb  | .       | .       | .       |
"""

from __future__ import annotations

from collections.abc import Iterable

from checks.mig.geometry import GpuGeometry
from checks.mig.placement import Placement

EMPTY = "."


def slice_owners(geo: GpuGeometry, occupied: Iterable[Placement]) -> list[Placement | None]:
    """For each memory slice 0..n-1, the placement occupying it (None when free)."""
    owners: list[Placement | None] = [None] * geo.memory_slices
    for pl in occupied:
        for slot in geo.profile(pl.profile).slots(pl.start):
            owners[slot] = pl
    return owners


def render_slice_map(geo: GpuGeometry, occupied: Iterable[Placement]) -> str:
    """Two-line map of the memory slices; merged cells for GIs wider than one slice."""
    owners = slice_owners(geo, occupied)
    width = max([len(EMPTY), *(len(o.profile) for o in owners if o is not None), 2]) + 1
    head = "slice |" + "".join(f" {i:<{width}}|" for i in range(geo.memory_slices))
    cells: list[str] = []
    i = 0
    while i < geo.memory_slices:
        owner = owners[i]
        span = 1 if owner is None else geo.profile(owner.profile).memory_slices
        label = EMPTY if owner is None else owner.profile
        cell_width = span * (width + 2) - 2
        cells.append(f" {label:<{cell_width}}|")
        i += span
    return head + "\n" + "GI    |" + "".join(cells)
