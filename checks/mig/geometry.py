"""MIG geometry data model: GPUs, their GPU-instance profiles, and the loader for ``data/geometry.yaml``.

The numbers are facts from ``shared/reference/mig-geometry.yaml`` / ``mig-geometry.md`` §2-§3, kept in our
own data file so that the oracle, the twin's NVIDIA driver model and the host probe's comparison all
read one table. Everything here is immutable: a :class:`GpuGeometry` is safe to share between threads
and to use as a dict key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from checks.errors import UsageError


@dataclass(frozen=True)
class Engines:
    """Media/copy engines of a GPU instance, as ``nvidia-smi mig -lgip`` prints them.

    Where the reference never captured a value (B200 3g/4g/7g) every field is 0 and the owning
    :class:`Profile` has ``engines_known=False``; consumers that turn engines into DRA counters must
    check that flag rather than trust the zeros.
    """

    ce: int
    """Copy engines."""
    dec: int
    """Video decoders (NVDEC)."""
    enc: int
    """Video encoders (NVENC); 0 on every MIG profile of these data-centre parts."""
    jpeg: int
    """JPEG decoders (NVJPG)."""
    ofa: int
    """Optical-flow accelerators; only the ``+me`` and full-GPU (7g) profiles get the GPU's single OFA."""


@dataclass(frozen=True)
class Profile:
    """One GPU-instance profile of one GPU model (one row of ``nvidia-smi mig -lgip`` plus its placements)."""

    name: str
    """Profile name as NVML/nvidia-smi spell it without the ``MIG`` prefix, e.g. ``1g.10gb+me``."""
    nvml_id: int
    """NVML GPU-instance profile id (``-lgip`` "ID"); 19/20/15/14/9/5/0 on every GPU here (reference §2)."""
    compute_slices: int
    """Compute slices (NVML ``sliceCount``); the double-memory 1g reports 1."""
    memory_slices: int
    """Memory slices = size of every placement on the 8-slot memory axis."""
    memory_mib: int
    """NVML ``memorySizeMB`` (MiB). Drifts by driver branch; see ``memory_mib_alternatives``."""
    sms: int
    """Streaming multiprocessors (NVML ``multiprocessorCount``)."""
    max_instances: int
    """NVML ``instanceCount``: the most GIs of this profile on an otherwise empty GPU."""
    starts: tuple[int, ...]
    """Allowed placement starts on the memory-slice axis (``-lgipp``)."""
    engines: Engines
    """Copy/media engines; see ``engines_known``."""
    media_extension: bool = False
    """True for ``+me``: limited to one per GPU because it takes the single OFA (and on A100 JPEG) unit."""
    nvml_profile_index: int = -1
    """Numeric value of the ``NVML_GPU_INSTANCE_PROFILE_*`` constant (1_SLICE=0 … 1_SLICE_REV2=9)."""
    memory_mib_alternatives: tuple[int, ...] = ()
    """Other ``memorySizeMB`` values observed on other driver branches (reference §5.2)."""
    memory_estimated: bool = False
    """True when ``memory_mib`` is an estimate, not a capture (H200 7g.141gb)."""
    engines_known: bool = True
    """False when the reference has no engine capture for this profile and ``engines`` is all zeros."""

    @property
    def size(self) -> int:
        """Placement size (memory slices), the name nvidia-smi's ``{starts}:size`` notation uses."""
        return self.memory_slices

    @property
    def profile_class(self) -> str:
        """GPU-independent class of the profile: ``1g``, ``1g+me``, ``1g-dbl``, ``2g``, ``3g``, ``4g``, ``7g``.

        Reference §2 states every MIG GPU here shares one layout per class, so tests and maps written
        for H100 names carry over to the other GPUs through this key.
        """
        base = f"{self.compute_slices}g"
        if self.media_extension:
            return base + "+me"
        if self.compute_slices == 1 and self.memory_slices == 2:
            return "1g-dbl"
        return base

    def slots(self, start: int) -> range:
        """Memory slots ``[start, start+size)`` a GI of this profile placed at ``start`` occupies."""
        return range(start, start + self.memory_slices)


@dataclass(frozen=True)
class GpuGeometry:
    """MIG geometry of one GPU model: slice counts, limits and every GPU-instance profile."""

    key: str
    """Our key for the GPU model, e.g. ``H100-SXM5-80GB``; params files reference it as ``mig_geometry``."""
    names: tuple[str, ...]
    """Exact product names ``nvidia-smi``/NVML print for this model."""
    architecture: str
    """go-nvlib architecture string: ``Ampere``, ``Hopper`` or ``Blackwell``."""
    compute_capability: str
    """CUDA compute capability ``major.minor``."""
    memory_slices: int
    """Memory slices per GPU (the placement axis): 8 on every GPU here."""
    compute_slices: int
    """Compute slices per GPU: 7 on every GPU here."""
    max_gpu_instances: int
    """Most GPU instances the GPU holds at once: 7."""
    total_sms: int
    """SMs of the whole GPU with MIG off (more than the 7g profile gets on A100)."""
    profiles: tuple[Profile, ...]
    """Profiles in the reference's order (1g, 1g+me, 1g-dbl, 2g, 3g, 4g, 7g)."""
    pci_device_id: str = ""
    """PCI device id as NVML prints it, e.g. ``0x233010DE``."""
    confidence: str = ""
    """The reference's confidence note for this GPU (which numbers are captured vs inferred)."""
    _by_name: dict[str, Profile] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.profiles})

    def profile(self, name: str) -> Profile:
        """The profile called ``name`` (``MIG `` prefix and case ignored); UsageError naming the choices if unknown."""
        wanted = name.strip()
        if wanted.upper().startswith("MIG "):
            wanted = wanted[4:].strip()
        found = self._by_name.get(wanted) or self._by_name.get(wanted.lower())
        if found is None:
            choices = ", ".join(p.name for p in self.profiles)
            raise UsageError(f"unknown MIG profile {name!r} on {self.key} (known: {choices})", where="profile")
        return found

    def profile_by_id(self, nvml_id: int) -> Profile:
        """The profile with NVML GI profile id ``nvml_id``; UsageError if this GPU has none."""
        for p in self.profiles:
            if p.nvml_id == nvml_id:
                return p
        raise UsageError(f"no MIG profile with NVML id {nvml_id} on {self.key}", where="profile")


def _engines(raw: list[int] | None) -> tuple[Engines, bool]:
    if raw is None:
        return Engines(0, 0, 0, 0, 0), False
    ce, dec, enc, jpeg, ofa = raw
    return Engines(ce=ce, dec=dec, enc=enc, jpeg=jpeg, ofa=ofa), True


def _profile(row: dict[str, Any]) -> Profile:
    engines, known = _engines(row["eng"])
    mib = row["mib"]
    estimated = mib is None
    if estimated:
        mib = row["estimate"]
    return Profile(
        name=row["name"],
        nvml_id=row["id"],
        compute_slices=row["cs"],
        memory_slices=row["ms"],
        memory_mib=int(mib),
        sms=row["sms"],
        max_instances=row["max"],
        starts=tuple(row["starts"]),
        engines=engines,
        media_extension=bool(row.get("me", False)),
        nvml_profile_index=row["enum"],
        memory_mib_alternatives=tuple(row.get("alt", ())),
        memory_estimated=estimated,
        engines_known=known,
    )


@functools.cache
def _load() -> tuple[dict[str, GpuGeometry], dict[str, tuple[str, ...]]]:
    text = resources.files("checks.mig").joinpath("data/geometry.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    gpus: dict[str, GpuGeometry] = {}
    for key, g in raw["gpus"].items():
        gpus[key] = GpuGeometry(
            key=key,
            names=tuple(g["names"]),
            architecture=g["architecture"],
            compute_capability=str(g["compute_capability"]),
            memory_slices=g["memory_slices"],
            compute_slices=g["compute_slices"],
            max_gpu_instances=g["max_gpu_instances"],
            total_sms=g["total_sms"],
            profiles=tuple(_profile(p) for p in g["profiles"]),
            pci_device_id=g["pci_device_id"],
            confidence=g.get("confidence", ""),
        )
    non_mig = {key: tuple(v["names"]) for key, v in raw.get("non_mig_gpus", {}).items()}
    return gpus, non_mig


def known_gpus() -> list[GpuGeometry]:
    """Every MIG-capable GPU the oracle knows, in data-file order."""
    return list(_load()[0].values())


def non_mig_gpus() -> dict[str, tuple[str, ...]]:
    """GPUs Lambda types carry that have no MIG (A10, V100): key → nvidia-smi names."""
    return dict(_load()[1])


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def gpu(key_or_name: str) -> GpuGeometry:
    """Look a GPU up by our key (``H100-SXM5-80GB``) or by the exact name nvidia-smi prints.

    Matching ignores case and a missing ``NVIDIA `` prefix, because R450-era drivers print
    ``A100-SXM4-40GB`` where later ones print ``NVIDIA A100-SXM4-40GB`` (reference md §5.5).
    A known non-MIG GPU and an unknown name both raise UsageError, with different reasons.
    """
    gpus, non_mig = _load()
    wanted = _norm(key_or_name)
    stripped = wanted.removeprefix("nvidia ")
    for geo in gpus.values():
        candidates = {_norm(geo.key)} | {_norm(n) for n in geo.names}
        candidates |= {c.removeprefix("nvidia ") for c in candidates}
        if wanted in candidates or stripped in candidates:
            return geo
    for key, names in non_mig.items():
        if wanted in {_norm(key), *(_norm(n) for n in names)}:
            raise UsageError(f"{key_or_name!r} has no MIG (not a MIG-capable GPU)", where="gpu")
    choices = ", ".join(gpus)
    raise UsageError(f"unknown GPU {key_or_name!r} (known MIG GPUs: {choices})", where="gpu")
