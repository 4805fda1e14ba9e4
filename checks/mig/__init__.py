"""MIG geometry oracle: profiles, placements, fit/why-not, DRA device names and scheduler order per GPU.

Facts come from ``shared/reference/mig-geometry.{yaml,md}`` (copied into ``data/geometry.yaml`` in our
own structure) and device naming/order from ``nvidia-dra-driver.md`` §4.1-§4.2. The twin's NVIDIA
driver model and the suite's MIG checks use this module so that both predict the same placements.

Public API::

    geo = gpu("NVIDIA H100 80GB HBM3")           # or gpu("H100-SXM5-80GB")
    fits(geo, "3g.40gb", [Placement("1g.10gb", 0), Placement("1g.10gb", 4)]).kind  # "fragmentation"
    predict_sequence(geo, 0, ["1g.10gb"] * 8)       # where each lands, or why not
"""

from __future__ import annotations

from checks.mig.geometry import Engines, GpuGeometry, Profile, gpu, known_gpus, non_mig_gpus
from checks.mig.naming import MigDeviceName, device_name, parse_device_name, profile_slug
from checks.mig.placement import (
    FitResult,
    Placement,
    Step,
    Usage,
    arrange,
    capacity_ok,
    fits,
    fragmentation_blocker,
    free_placements,
    predict_sequence,
    scheduler_order,
    usage,
    validate_arrangement,
)
from checks.mig.render import render_slice_map, slice_owners

__all__ = [
    "Engines",
    "FitResult",
    "GpuGeometry",
    "MigDeviceName",
    "Placement",
    "Profile",
    "Step",
    "Usage",
    "arrange",
    "capacity_ok",
    "device_name",
    "fits",
    "fragmentation_blocker",
    "free_placements",
    "gpu",
    "known_gpus",
    "non_mig_gpus",
    "parse_device_name",
    "predict_sequence",
    "profile_slug",
    "render_slice_map",
    "scheduler_order",
    "slice_owners",
    "usage",
    "validate_arrangement",
]
