"""DynamicMIG claim sequences run against a cluster next to the MIG oracle's prediction.

The scenario (TC-MIG-DYN-004/005 of the suite, issue 5, made observable step by step):

1. **fill**: request the smallest profile one claim at a time until one more than fits; the oracle says where
   each lands (first free device in scheduler order) and that the last is over capacity;
2. **free**: delete the pending request, then every small instance except those at the ``keep`` starts
   (default: the oracle's minimal fragmentation blocker for the large profile);
3. **ask**: request the large profile: with capacity enough but no aligned free range, the oracle says
   fragmentation and the pod must stay Pending;
4. **release**: delete the kept instances in start order until the oracle says the large request fits: it must
   now be placed where the oracle says (freeing all at once would race: the first deallocation decides).

Each step records the cluster's outcome (device name → placement, or Pending with the scheduler's message)
beside the oracle's, and the occupancy of both after the step, for the notebook's plot and tables.
Claims are pinned to one parent GPU (``parentUUID``) and profile with CEL selectors, so nothing else on the
node interferes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checks.kube import wait as W
from checks.mig import GpuGeometry, Placement, fits, fragmentation_blocker, predict_sequence
from checks.scenarios import manifests as M
from checks.scenarios.readers import (
    MigDevice,
    allocated_devices,
    condition_message,
    is_unschedulable,
    parent_selector,
    placement_of,
    profile_of_class,
    smallest_profile,
)
from checks.scenarios.workspace import Workspace

Obj = dict[str, Any]


@dataclass
class StepRecord:
    """One step: what was asked or freed, what the oracle predicted, what the cluster did."""

    step: int
    """1-based step number."""
    phase: str
    """``fill``, ``free``, ``ask`` or ``release``."""
    action: str
    """Human description (``request 1g.5gb``, ``free 1g.5gb@2, 1g.5gb@3``)."""
    profile: str = ""
    """Requested profile ('' for free/release steps)."""
    predicted: str = ""
    """Oracle: ``fits``, ``over_capacity`` or ``fragmentation`` ('' for free steps)."""
    predicted_placement: str = ""
    """Oracle placement (``1g.5gb@3``) or ''."""
    predicted_reason: str = ""
    """Oracle's reason when it does not fit."""
    observed: str = ""
    """Cluster: ``allocated``, ``pending`` ('' for free steps without a waiting request)."""
    observed_placement: str = ""
    """Placement parsed from the allocated device name, or ''."""
    device: str = ""
    """Allocated device name, or ''."""
    message: str = ""
    """Scheduler message when pending."""
    agree: bool = True
    """Whether outcome and placement match the oracle."""
    occupied_observed: list[Placement] = field(default_factory=list)
    """Cluster occupancy after the step."""
    occupied_predicted: list[Placement] = field(default_factory=list)
    """Oracle occupancy after the step."""
    pending_profile: str = ""
    """A request left Pending after this step (for the plot), or ''."""

    @property
    def label(self) -> str:
        """Short label for plots: ``fill: 1g.5gb``, ``free: 5 GI(s)``."""
        if self.phase in ("fill", "ask"):
            return f"{self.phase}: {self.profile}"
        return f"{self.phase}: {self.action.count('@')} GI(s)"

    def row(self) -> dict[str, Any]:
        """Flat row for the CSV table."""
        return {"step": self.step, "phase": self.phase, "action": self.action, "profile": self.profile,
                "predicted": self.predicted, "predicted_placement": self.predicted_placement,
                "observed": self.observed, "observed_placement": self.observed_placement, "device": self.device,
                "agree": self.agree, "predicted_reason": self.predicted_reason, "message": self.message,
                "occupied_observed": " ".join(map(str, sorted(self.occupied_observed, key=lambda p: p.start))),
                "occupied_predicted": " ".join(map(str, sorted(self.occupied_predicted, key=lambda p: p.start)))}


@dataclass
class _Held:
    name: str
    profile: str
    placement: Placement | None


@dataclass
class Plan:
    """The profiles and the kept set of one run, resolved from the parameters and the oracle."""

    small: str
    """Profile used to fill."""
    large: str
    """Profile asked for after freeing."""
    keep: tuple[int, ...]
    """Starts of the small instances kept when freeing."""
    fill_count: int
    """Requests in the fill phase (one more than the oracle says fit)."""


def make_plan(geo: GpuGeometry, small: str = "", large: str = "", keep: list[int] | None = None) -> Plan:
    """Resolve defaults: smallest profile, the 3g profile, and the oracle's fragmentation blocker."""
    small = small or smallest_profile(geo)
    large = large or profile_of_class(geo, "3g")
    geo.profile(small)
    geo.profile(large)  # unknown names raise here, before anything is created
    fit_count = sum(1 for s in predict_sequence(geo, 0, [small] * (geo.max_gpu_instances + 1)) if s.result.fits)
    if keep is None:
        blocker = fragmentation_blocker(geo, large) or ()
        if any(b.profile != small for b in blocker):
            blocker = ()
        keep = [b.start for b in blocker]
    return Plan(small, large, tuple(sorted(keep)), fit_count + 1)


class Experiment:
    """Runs the steps on one GPU; the oracle's state is kept independently of the cluster's."""

    def __init__(self, ws: Workspace, geo: GpuGeometry, parent: MigDevice, *, timeout_s: float) -> None:
        self.ws = ws
        self.geo = geo
        self.minor = parent.minor
        self.parent_uuid = parent.parent_uuid
        self.timeout_s = timeout_s
        self.held: list[_Held] = []
        """Requests made and not yet freed (placement None = Pending)."""
        self.predicted: list[Placement] = []
        self.records: list[StepRecord] = []
        self._n = 0

    # -- state -------------------------------------------------------------------------------------------
    def observed(self) -> list[Placement]:
        return [h.placement for h in self.held if h.placement is not None]

    def _record(self, rec: StepRecord) -> StepRecord:
        rec.occupied_observed = sorted(self.observed(), key=lambda p: p.start)
        rec.occupied_predicted = sorted(self.predicted, key=lambda p: p.start)
        pend = [h.profile for h in self.held if h.placement is None]
        rec.pending_profile = pend[-1] if pend else ""
        rec.agree = rec.agree and rec.occupied_observed == rec.occupied_predicted
        self.records.append(rec)
        return rec

    # -- actions -----------------------------------------------------------------------------------------
    def request(self, profile: str, phase: str) -> StepRecord:
        """Create claim + pod for ``profile``; wait until it runs or is Unschedulable; compare with the oracle."""
        self._n += 1
        name = f"mig-{self._n:02d}-{profile.replace('.', '-').replace('+', '-')}"
        pred = predict_sequence(self.geo, self.minor, [profile], self.predicted)[0]
        spec = M.claim_spec([M.request("mig", M.MIG_CLASS, selectors=parent_selector(self.parent_uuid, profile))])
        self.ws.apply(M.claim(name, self.ws.labels, spec))
        self.ws.apply(M.pod(name, self.ws.labels, [M.container(claims=["mig"], image=M.MIG_IMAGE)],
                            claims={"mig": ("claim", name)}, grace_s=1))
        pod = self.ws.scheduling_outcome(name, timeout=self.timeout_s)
        rec = StepRecord(len(self.records) + 1, phase, f"request {profile}", profile=profile,
                         predicted=pred.result.kind,
                         predicted_placement=str(pred.placement) if pred.placement else "",
                         predicted_reason="" if pred.result.fits else pred.result.reason)
        if pred.placement is not None:
            self.predicted.append(pred.placement)
        if is_unschedulable(pod):
            rec.observed, rec.message = "pending", condition_message(pod, "PodScheduled")
            self.held.append(_Held(name, profile, None))
            rec.agree = not pred.result.fits
        else:
            devices = allocated_devices(self.ws.get("resourceclaims", name))
            rec.device = devices[0] if devices else ""
            placement = placement_of(rec.device, self.geo) if rec.device else None
            rec.observed = "allocated"
            rec.observed_placement = str(placement) if placement else ""
            self.held.append(_Held(name, profile, placement))
            rec.agree = pred.result.fits and placement == pred.placement
        return self._record(rec)

    def free(self, phase: str, *, keep_starts: tuple[int, ...] = (), pending_only: bool = False,
             release_waiting: bool = False) -> StepRecord:
        """Delete pending requests, then (unless ``pending_only``) every placed one whose start is not kept.

        With ``release_waiting``, the requests still Pending are kept and the step waits for the newest of
        them to be placed once the space is free (the scheduler retries it when claims go away).
        """
        waiting = [h for h in self.held if h.placement is None] if release_waiting else []
        gone = [h for h in self.held if h.placement is None and h not in waiting]
        if not pending_only:
            placed = sorted((h for h in self.held if h.placement is not None and h.placement.start not in keep_starts),
                            key=lambda h: h.placement.start if h.placement else 0)
            if waiting:
                # The scheduler retries the waiting request as soon as any freed device makes it fit, so freeing
                # everything at once races (which instance's claim is deallocated first decides the placement, on
                # a real cluster as on a twin). Free in start order and stop at the first release after which the
                # oracle says the request fits: that placement is then determined.
                placed = self._until_fits(placed, waiting[-1].profile)
            gone += placed
        names_ = [h.name for h in gone]
        self.ws.delete_all("pods", names_, timeout=self.timeout_s)
        self.ws.delete_all("resourceclaims", names_, timeout=self.timeout_s)
        self.held = [h for h in self.held if h not in gone]
        freed = [h.placement for h in gone if h.placement is not None]
        self.predicted = [p for p in self.predicted if p not in freed]
        what = ", ".join(map(str, freed)) or "nothing placed"
        pend = len([h for h in gone if h.placement is None])
        rec = StepRecord(len(self.records) + 1, phase, f"free {what}" + (f" (+{pend} pending)" if pend else ""))
        if waiting:
            self._await_placement(waiting[-1], rec)
        return self._record(rec)

    def _until_fits(self, candidates: list[_Held], profile: str) -> list[_Held]:
        """The shortest prefix of ``candidates`` whose release lets the oracle place ``profile`` (all if none)."""
        for i in range(1, len(candidates) + 1):
            freed = [h.placement for h in candidates[:i]]
            left = [p for p in self.predicted if p not in freed]
            if predict_sequence(self.geo, self.minor, [profile], left)[0].result.fits:
                return candidates[:i]
        return candidates

    def _await_placement(self, held: _Held, rec: StepRecord) -> None:
        pred = predict_sequence(self.geo, self.minor, [held.profile], self.predicted)[0]
        rec.profile, rec.predicted = held.profile, pred.result.kind
        rec.predicted_placement = str(pred.placement) if pred.placement else ""
        if pred.placement is not None:
            self.predicted.append(pred.placement)
        try:
            self.ws.pod_ready(held.name, timeout=self.timeout_s)
        except W.WaitTimeout as exc:
            rec.observed, rec.message = "pending", str(exc)
            rec.agree = not pred.result.fits
            return
        devices = allocated_devices(self.ws.get("resourceclaims", held.name))
        rec.device = devices[0] if devices else ""
        held.placement = placement_of(rec.device, self.geo) if rec.device else None
        rec.observed, rec.observed_placement = "allocated", str(held.placement or "")
        rec.agree = pred.result.fits and held.placement == pred.placement


def run_scenario(ws: Workspace, geo: GpuGeometry, parent: MigDevice, plan: Plan, *,
                 timeout_s: float) -> Experiment:
    """fill → free → ask → release (see module doc)."""
    ex = Experiment(ws, geo, parent, timeout_s=timeout_s)
    for _ in range(plan.fill_count):
        ex.request(plan.small, "fill")
    ex.free("free", keep_starts=plan.keep)
    ex.request(plan.large, "ask")
    ex.free("release", keep_starts=(), release_waiting=True)
    return ex


def summary(ex: Experiment, plan: Plan) -> dict[str, Any]:
    """Scalar facts for results.json and the report."""
    recs = ex.records
    fill = [r for r in recs if r.phase == "fill"]
    ask = [r for r in recs if r.phase == "ask"]
    kept = [Placement(plan.small, s) for s in plan.keep]
    return {
        "gpu": ex.geo.key, "small_profile": plan.small, "large_profile": plan.large,
        "kept_starts": list(plan.keep), "steps": len(recs),
        "agreements": sum(r.agree for r in recs), "disagreements": sum(not r.agree for r in recs),
        "fill_allocated": sum(r.observed == "allocated" for r in fill),
        "over_capacity_predicted": any(r.predicted == "over_capacity" for r in fill),
        "over_capacity_observed": any(r.observed == "pending" for r in fill),
        "fragmentation_predicted": any(r.predicted == "fragmentation" for r in ask),
        "fragmentation_observed": any(r.observed == "pending" for r in ask),
        "fragmentation_capacity_ok": fits(ex.geo, plan.large, kept).kind == "fragmentation",
        "oracle_agrees": all(r.agree for r in recs),
    }


__all__ = ["Experiment", "Plan", "StepRecord", "make_plan", "run_scenario", "summary"]
