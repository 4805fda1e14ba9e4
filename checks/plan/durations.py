"""How long a check takes on an instance type: measured where an earlier run says so, else a marked estimate.

Measurements come from the suite's own ``outputs/<instance>/checks/<run-id>/results.json`` (written by every
``dra-lab check`` run). A run against a real cluster (``emulated_gpus: false``) is a **measurement**; a run
against a twin is kept apart (**twin**): the twin pulls no images and runs no CUDA, so its time is a floor —
it replaces the estimate only where it is longer. The median of all runs counts; a check's time includes its
setup, so the first check of a driver configuration carries that installation.

Without a measurement the estimate is the largest of the rules in :data:`ESTIMATES` that apply — each rule
says where its number comes from. Every duration carries its source, and reports print it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from checks.plan.inventory import CheckInfo


@dataclass(frozen=True)
class Duration:
    """Expected wall time of one check on one instance type."""

    seconds: float
    """Expected seconds (setup + call)."""
    source: str
    """``measured`` (real cluster, this type), ``measured:<type>`` (real, another type), ``twin``,
    ``twin:<type>``, or ``estimate`` (see :data:`ESTIMATES`)."""
    samples: int = 0
    """How many runs the measurement is the median of (0 for estimates)."""

    @property
    def estimated(self) -> bool:
        return self.source == "estimate"


@dataclass(frozen=True)
class EstimateRule:
    """One estimate: applies when ``applies(check)``; the largest applicable rule wins."""

    name: str
    """Short name shown in reports."""
    seconds: float
    """Estimated seconds on a real Lambda node."""
    why: str
    """Where the number comes from."""
    applies: Callable[[CheckInfo], bool]
    """Whether the rule is about this check."""


ESTIMATES: tuple[EstimateRule, ...] = (
    EstimateRule("any check", 30, "a namespace, one or two pods started and deleted (ubuntu image cached after the "
                 "first pull); upstream waits 8–30 s for READY", lambda c: True),
    EstimateRule("DynamicMIG", 60, "MIG devices are created at prepare and destroyed at unprepare, several "
                 "seconds each (upstream waits 10 s per step)", lambda c: bool(c.needs.get("dynmig"))),
    EstimateRule("static MIG", 120, "nvidia-smi mig create/destroy from a privileged pod plus a driver restart",
                 lambda c: bool(c.needs.get("static_mig"))),
    EstimateRule("stress", 120, "CI sizes: 20 pods × 1 iteration on one claim (upstream allows 120 s to allocate "
                 "and 180 s to Ready)", lambda c: "stress" in c.markers),
    EstimateRule("compute domains", 120, "a ComputeDomain, its IMEX daemon DaemonSet and a channel workload "
                 "(upstream waits up to 100 s for READY)",
                 lambda c: bool(c.needs.get("compute_domains") or c.needs.get("imex"))),
    EstimateRule("leader election", 90, "two controller replicas Ready, the Lease held, the leader deleted and the "
                 "standby taking over (upstream LE1/LE2: 15 s lease, 20 s for the new holder and its Ready)",
                 lambda c: "leader_election" in c.markers),
    EstimateRule("webhook", 90, "TLS material, an install with the webhook, admission requests, the webhook taken "
                 "down for the failure policy", lambda c: "webhook" in c.markers),
    EstimateRule("upgrade/downgrade", 300, "last-stable install, a running workload, upgrade, a new claim, downgrade: "
                 "three helm transitions with --wait (upstream allows 120 s per install)",
                 lambda c: "upgrade" in c.markers),
    EstimateRule("disruptive", 300, "a node reboot or driver restart and the recovery wait",
                 lambda c: bool(c.needs.get("disruptive"))),
    EstimateRule("real CUDA", 420, "apt install of the CUDA demo suite, then the samples (upstream allows 900 s)",
                 lambda c: bool(c.needs.get("real_cuda"))),
)


def estimate(check: CheckInfo) -> Duration:
    """The largest applicable rule of :data:`ESTIMATES`."""
    best = max((r for r in ESTIMATES if r.applies(check)), key=lambda r: r.seconds)
    return Duration(best.seconds, "estimate")


@dataclass(frozen=True)
class Sample:
    """One check's time in one earlier run."""

    instance: str
    """Instance type of the run."""
    check: str
    """:attr:`CheckInfo.name` of the check."""
    seconds: float
    """Its duration_s."""
    real: bool
    """True for a real cluster, False for a twin."""


def read_samples(outputs: Path) -> list[Sample]:
    """Every executed (passed or failed) check time in ``outputs/*/checks/*/results.json``."""
    out: list[Sample] = []
    for path in sorted(outputs.glob("*/checks/*/results.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
            continue
        inst = str(data.get("instance") or path.parts[-4])
        real = data.get("emulated_gpus") is False
        for entry in data["checks"]:
            if not isinstance(entry, dict) or entry.get("outcome") not in ("passed", "failed"):
                continue
            secs = entry.get("duration_s")
            if isinstance(secs, int | float) and secs > 0:
                out.append(Sample(inst, str(entry.get("nodeid", "")).rsplit("/", 1)[-1], float(secs), real))
    return out


class Durations:
    """Lookup of :class:`Duration` per (check, instance type)."""

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        self._by: dict[tuple[str, bool], dict[str, list[float]]] = {}
        for s in samples:
            self._by.setdefault((s.check, s.real), {}).setdefault(s.instance, []).append(s.seconds)

    @classmethod
    def from_outputs(cls, outputs: Path | None) -> Durations:
        return cls(read_samples(outputs) if outputs is not None and outputs.is_dir() else ())

    def __call__(self, check: CheckInfo, instance: str) -> Duration:
        """Real measurement (this type, else another), else the estimate — raised to a twin measurement when the
        twin was slower (a twin time is a floor: no image pulls, no CUDA)."""
        guess = estimate(check)
        for real, word in ((True, "measured"), (False, "twin")):
            per_type = self._by.get((check.name, real))
            if not per_type:
                continue
            where = instance if instance in per_type else sorted(per_type)[0]
            vals = per_type[where]
            found = Duration(round(statistics.median(vals), 1), word if where == instance else f"{word}:{where}",
                             len(vals))
            if real or found.seconds > guess.seconds:
                return found
        return guess
