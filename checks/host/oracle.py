"""Compare what NVML reported on a host with the MIG geometry oracle.

``checks.host`` and ``checks.mig`` are independent siblings in the layer contract (they may not import
each other), so the oracle lookup is passed in: callers above both layers hand over ``checks.mig.gpu``.
Only the attributes below are read, described structurally so any object with them will do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from checks.host.report import HostReport, MigProfile


class OracleEngines(Protocol):
    """Engine counts of an oracle profile."""

    @property
    def ce(self) -> int: ...

    @property
    def dec(self) -> int: ...

    @property
    def enc(self) -> int: ...

    @property
    def jpeg(self) -> int: ...

    @property
    def ofa(self) -> int: ...



class OracleProfile(Protocol):
    """The parts of ``checks.mig`` ``Profile`` that NVML can confirm."""

    @property
    def name(self) -> str: ...

    @property
    def nvml_id(self) -> int: ...

    @property
    def compute_slices(self) -> int: ...

    @property
    def memory_slices(self) -> int: ...

    @property
    def memory_mib(self) -> int: ...

    @property
    def sms(self) -> int: ...

    @property
    def max_instances(self) -> int: ...

    @property
    def starts(self) -> tuple[int, ...]: ...

    @property
    def engines(self) -> OracleEngines: ...

    @property
    def memory_mib_alternatives(self) -> tuple[int, ...]: ...



class OracleGpu(Protocol):
    """The parts of ``checks.mig`` ``GpuGeometry`` that NVML can confirm (read-only, as frozen dataclasses are)."""

    @property
    def key(self) -> str: ...

    @property
    def profiles(self) -> Sequence[OracleProfile]: ...


@dataclass(frozen=True)
class Mismatch:
    """One disagreement between NVML on a real GPU and the oracle's table."""

    gpu_index: int
    """GPU the fact came from."""
    profile: str
    """Profile name (or ``*`` for GPU-wide facts)."""
    field: str
    """What differs."""
    nvml: str
    """What NVML said."""
    oracle: str
    """What the oracle says."""

    def __str__(self) -> str:
        return f"GPU {self.gpu_index} {self.profile} {self.field}: NVML {self.nvml}, oracle {self.oracle}"


def _profile_mismatches(index: int, got: MigProfile, want: OracleProfile) -> list[Mismatch]:
    out: list[Mismatch] = []

    def check(field: str, nvml: object, oracle: object) -> None:
        if nvml != oracle:
            out.append(Mismatch(index, want.name, field, str(nvml), str(oracle)))

    check("nvml_id", got.nvml_id, want.nvml_id)
    check("compute_slices", got.compute_slices, want.compute_slices)
    check("sms", got.sms, want.sms)
    check("max_instances", got.max_instances, want.max_instances)
    check("engines(ce,dec,enc,jpeg,ofa)",
          (got.copy_engines, got.decoders, got.encoders, got.jpegs, got.ofas),
          (want.engines.ce, want.engines.dec, want.engines.enc, want.engines.jpeg, want.engines.ofa))
    allowed = (want.memory_mib, *want.memory_mib_alternatives)
    if got.memory_mib not in allowed:  # reference mig-geometry.md §5.2: memory drifts by driver branch
        out.append(Mismatch(index, want.name, "memory_mib", str(got.memory_mib),
                            " or ".join(str(m) for m in allowed)))
    if got.placements is None:
        out.append(Mismatch(index, want.name, "placements", f"unavailable ({got.placements_error})",
                            str(want.starts)))
    else:
        check("placement starts", got.starts, tuple(sorted(want.starts)))
        check("memory_slices (placement size)", got.memory_slices, want.memory_slices)
    return out


def compare_with_oracle(report: HostReport, lookup: Callable[[str], OracleGpu]) -> list[Mismatch]:
    """Every difference between each GPU's NVML MIG profiles and ``lookup(gpu.name)``; empty when they agree.

    A profile NVML offers that the oracle lacks, or the reverse, is a mismatch too. A GPU the oracle does
    not know (lookup raises) yields one ``*`` mismatch naming the error, so a new GPU is never silently
    skipped.
    """
    mismatches: list[Mismatch] = []
    for gpu in report.gpus:
        try:
            geometry = lookup(gpu.name)
        except Exception as exc:  # the oracle's own error (UsageError for unknown/non-MIG GPUs) is the finding
            mismatches.append(Mismatch(gpu.index, "*", "oracle lookup", gpu.name, str(exc)))
            continue
        by_name = {p.name: p for p in gpu.mig_profiles}
        for want in geometry.profiles:
            got = by_name.pop(want.name, None)
            if got is None:
                mismatches.append(Mismatch(gpu.index, want.name, "profile", "absent", "present"))
            else:
                mismatches.extend(_profile_mismatches(gpu.index, got, want))
        for extra in sorted(by_name):
            mismatches.append(Mismatch(gpu.index, extra, "profile", "present", f"absent from {geometry.key}"))
    return mismatches
