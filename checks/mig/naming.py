"""DRA device names of MIG devices, as the NVIDIA DRA driver announces them.

Reference ``nvidia-dra-driver.md`` §4.2: static and dynamic MIG devices are both called
``gpu-<parentMinor>-mig-<profile'>-<giProfileID>-<placementStart>``, where ``<profile'>`` is the profile
string lower-cased with dots removed, every character outside ``[a-z0-9-.]`` replaced by ``-`` and
leading/trailing ``-`` trimmed (so ``1g.10gb+me`` becomes ``1g10gb-me``). The driver parses names back
with ``^gpu-(\\d+)-mig-(.+)-(\\d+)-(\\d+)$``; :func:`parse_device_name` uses the same pattern so that a
name we accept is one the driver would accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from checks.errors import UsageError
from checks.mig.geometry import GpuGeometry, Profile

_NAME_RE = re.compile(r"^gpu-(\d+)-mig-(.+)-(\d+)-(\d+)$")
_NOT_RFC1123 = re.compile(r"[^a-z0-9.-]")


def profile_slug(profile_name: str) -> str:
    """The ``<profile'>`` part of a device name (reference §4.2 order: lower, drop dots, sanitise, trim)."""
    text = profile_name.lower().replace(".", "")
    return _NOT_RFC1123.sub("-", text).strip("-")


def device_name(minor: int, profile_name: str, nvml_id: int, start: int) -> str:
    """Device name of the MIG device of ``profile_name`` placed at ``start`` on the GPU with NVML minor ``minor``.

    ``minor`` is the ``/dev/nvidia<minor>`` number, not the NVML index (§4.2).
    """
    if minor < 0 or nvml_id < 0 or start < 0:
        raise UsageError(f"minor, NVML id and start must be >= 0 (got {minor}, {nvml_id}, {start})")
    return f"gpu-{minor}-mig-{profile_slug(profile_name)}-{nvml_id}-{start}"


@dataclass(frozen=True)
class MigDeviceName:
    """A parsed MIG device name. ``profile_slug`` is not the profile name (dots are gone); use :meth:`profile`."""

    minor: int
    """Parent GPU's NVML minor number."""
    profile_slug: str
    """Sanitised profile, e.g. ``1g10gb-me``."""
    nvml_id: int
    """NVML GPU-instance profile id."""
    start: int
    """Placement start on the memory-slice axis."""

    def name(self) -> str:
        """The device name again (round trip)."""
        return f"gpu-{self.minor}-mig-{self.profile_slug}-{self.nvml_id}-{self.start}"

    def profile(self, geo: GpuGeometry) -> Profile:
        """The profile of ``geo`` this name denotes; UsageError if slug and id do not match one profile there."""
        for p in geo.profiles:
            if p.nvml_id == self.nvml_id and profile_slug(p.name) == self.profile_slug:
                if self.start not in p.starts:
                    raise UsageError(
                        f"{self.name()}: {p.name} cannot start at memory slice {self.start} on {geo.key} "
                        f"(starts {list(p.starts)})"
                    )
                return p
        raise UsageError(f"{self.name()}: no profile {self.profile_slug!r} with NVML id {self.nvml_id} on {geo.key}")


def parse_device_name(name: str) -> MigDeviceName:
    """Split a MIG device name into its parts; UsageError if it is not one (e.g. a full GPU ``gpu-0``)."""
    match = _NAME_RE.match(name)
    if match is None:
        raise UsageError(f"{name!r} is not a MIG device name (gpu-<minor>-mig-<profile>-<id>-<start>)")
    minor, slug, nvml_id, start = match.groups()
    return MigDeviceName(minor=int(minor), profile_slug=slug, nvml_id=int(nvml_id), start=int(start))
