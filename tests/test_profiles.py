"""Validation profiles (``dra-lab check --profile``): registry lookups and instance rules."""

from __future__ import annotations

import pytest

from checks.catalog import load_instance
from checks.errors import UsageError
from checks.runner.profiles import PROFILES, profile


def test_b200_profile() -> None:
    p = profile("b200")
    assert p.instance == "gpu_1x_b200_sxm6" and p is PROFILES["b200"]
    p.check_instance(load_instance("gpu_8x_b200_sxm6"))
    with pytest.raises(UsageError, match="compute domains auto-enable"):
        p.check_instance(load_instance("gpu_1x_h100_sxm5"))
    assert p.marker_expression(None) == p.markers
    assert p.marker_expression("compute_domains") == f"({p.markers}) and (compute_domains)"


def test_unknown_profile() -> None:
    with pytest.raises(UsageError, match="unknown profile 'x'"):
        profile("x")
