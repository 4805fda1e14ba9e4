"""Validation profiles: named check selections for one kind of instance (``dra-lab check --profile NAME``).

A profile fixes what a person would otherwise have to remember: which instance type it is for, which checks
(a pytest marker expression over the upstream tags) and what must hold on the instance. Registry, not flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.catalog import Instance, compute_domains_enabled
from checks.errors import UsageError


@dataclass(frozen=True)
class Profile:
    """One named selection."""

    name: str
    """``--profile`` value."""
    instance: str
    """Instance type used when neither ``--twin`` nor ``--instance`` names one."""
    markers: str
    """pytest ``-m`` expression (AND-ed with a user's ``-m``)."""
    description: str
    """What it validates and why (shown in ``--help`` and the README)."""
    compute_domains: bool = False
    """The instance must be one where compute domains auto-enable (upstream CI's *b200/*gb200/*gb300 rule)."""

    def check_instance(self, instance: Instance) -> None:
        """UsageError when ``instance`` cannot run this profile."""
        if self.compute_domains and not compute_domains_enabled(instance):
            raise UsageError(f"profile {self.name} needs an instance type where compute domains auto-enable "
                             f"(*b200/*gb200/*gb300); {instance.instance_type} is not one", where="--profile")

    def marker_expression(self, user: str | None) -> str:
        return f"({self.markers}) and ({user})" if user else self.markers


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile(
        name="b200",
        instance="gpu_1x_b200_sxm6",
        markers="not version_specific and not stress and not disruptive",
        description=("roadmap item 9: the presubmit set (upstream's filter for *b200: !version-specific, "
                     "!multi-gpu on one GPU; no stress, no node disruption — those are periodic) on a B200 with "
                     "compute domains auto-enabled — driver loads, basic allocation, the compute-domain "
                     "controller Running with its metrics, IMEX channel checks"),
        compute_domains=True,
    ),
)}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r} (known: {', '.join(sorted(PROFILES))})",
                         where="--profile") from None


__all__ = ["PROFILES", "Profile", "profile"]
