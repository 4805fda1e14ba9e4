"""The cheapest set of Lambda instance types whose runs cover a goal: exact weighted set cover.

A **run** is one provisioned instance of a type executing every check of the goal that type can run (what
``dra-lab check -m <goal>`` does there, and what a Prow job pinned to that type does). Its weight is
``$/hr × wall time``, with wall time = provisioning overhead + one driver installation per distinct driver
configuration + the checks' expected durations (:mod:`checks.plan.durations`). The plan is the set of runs of
least total cost whose checks together include every check of the goal that some allowed type can run.

With 15 instance types there are at most 2^15 − 1 sets: every one is evaluated (no heuristic, ties broken by
fewer runs, then by name), so the choice follows from prices, needs and durations alone — change a price and
the choice changes. Goal checks that no allowed type can run are listed with the reason, not silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.catalog import Instance
from checks.plan.goals import Goal, RoadmapClaim, Schedule
from checks.plan.inventory import CheckInfo
from checks.plan.matrix import Matrix


@dataclass(frozen=True)
class CostModel:
    """The fixed costs of a run besides the checks themselves (estimates; each says where it comes from)."""

    provision_s: float = 900.0
    """Launch through lambdactl (polls every 30 s until SSH answers), single-node kubeadm set-up, dra-lab
    set-up (venv + kubectl/helm) and teardown: ~15 min, an estimate (upstream's job allows 2 h in total)."""
    install_s: float = 60.0
    """One ``helm upgrade --install`` of a driver configuration until the plugin is Ready and its
    ResourceSlices are published (the suite allows 180 s + 120 s)."""


@dataclass(frozen=True)
class Run:
    """One instance of a type running the goal's checks it can run."""

    instance: Instance
    """The instance type."""
    checks: tuple[CheckInfo, ...]
    """The goal's checks this run executes."""
    configs: tuple[str, ...]
    """Distinct driver configurations installed, in order."""
    check_s: float
    """Sum of the checks' expected durations."""
    wall_s: float
    """Provisioning + installations + checks."""
    estimated_checks: int
    """How many of the durations are estimates rather than measurements."""

    @property
    def cost_usd(self) -> float:
        return self.instance.price_usd_per_hour * self.wall_s / 3600.0


def make_run(matrix: Matrix, checks: list[CheckInfo], inst: Instance, model: CostModel) -> Run:
    """The run of ``inst`` executing the members of ``checks`` it can run."""
    mine = [c for c in checks if matrix.cell(c, inst).runs]
    configs = tuple(dict.fromkeys(c.driver_config for c in mine))
    durs = [matrix.cell(c, inst).duration for c in mine]
    check_s = sum(d.seconds for d in durs if d is not None)
    return Run(inst, tuple(mine), configs, check_s, model.provision_s + model.install_s * len(configs) + check_s,
               sum(1 for d in durs if d is not None and d.estimated))


@dataclass(frozen=True)
class Plan:
    """A set of runs covering a goal."""

    goal: Goal
    """What the plan is for."""
    runs: tuple[Run, ...]
    """The runs (cheapest first)."""
    uncovered: tuple[tuple[CheckInfo, str], ...]
    """Goal checks no allowed instance type can run, with why."""

    @property
    def cost_usd(self) -> float:
        """Cost of one execution of the plan (all its runs)."""
        return sum(r.cost_usd for r in self.runs)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(r.instance.instance_type for r in self.runs)

    @property
    def covered(self) -> frozenset[str]:
        return frozenset(c.nodeid for r in self.runs for c in r.checks)

    def per_month(self, schedule: Schedule) -> float:
        return self.cost_usd * schedule.runs_per_month


@dataclass(frozen=True)
class Comparison:
    """The derived choice next to the roadmap's §4.4 claim."""

    claim: RoadmapClaim
    """What the roadmap says."""
    agrees: bool
    """Whether the derived cheapest plan is one of the roadmap's types on its own."""
    text: str
    """One paragraph: agreement, or where and why the data disagrees."""


@dataclass(frozen=True)
class Result:
    """The answer to ``dra-lab plan cost``."""

    best: Plan
    """The cheapest plan."""
    alternatives: tuple[Plan, ...]
    """Next-cheapest minimal plans (no run removable), cheapest first."""
    excluded: tuple[tuple[str, str], ...]
    """(instance type, why) for the types the goal's scope rules out or that run none of its checks."""
    comparison: Comparison | None
    """Against the roadmap, for §4.4 use cases."""


def _describe_missing(matrix: Matrix, plan_types: tuple[str, ...], universe: list[CheckInfo],
                      inst: Instance) -> str:
    missing = [c for c in universe if not matrix.cell(c, inst).runs]
    if not missing:
        return ""
    first = matrix.cell(missing[0], inst).reason
    return f"{inst.instance_type} cannot run {len(missing)} of the goal's checks (e.g. {missing[0].function}: {first})"


def compare(matrix: Matrix, goal: Goal, best: Plan, universe: list[CheckInfo], model: CostModel) -> Comparison | None:
    """The roadmap's claim for ``goal`` (if a §4.4 use case) checked against the derived plan."""
    if goal.use_case is None or goal.use_case.roadmap is None:
        return None
    claim = goal.use_case.roadmap
    by_name = {i.instance_type: i for i in matrix.instances}
    est = sum(r.estimated_checks for r in best.runs)
    basis = (f" (durations: {est} estimated)" if est else " (durations: measured)")
    if not best.runs:
        return Comparison(claim, False, f"roadmap: {claim.text}; no check of this goal exists yet, so nothing to "
                                        "compare")
    if len(best.runs) == 1 and best.types[0] in claim.types:
        r = best.runs[0]
        text = (f"agrees with the roadmap ({claim.text}): {r.instance.instance_type} "
                f"${r.instance.price_usd_per_hour:.2f}/h, ${r.cost_usd:.2f} a run{basis}")
        if claim.usd_per_run is not None and abs(r.cost_usd - claim.usd_per_run) > 0.25 * claim.usd_per_run:
            text += (f"; but a run costs ${r.cost_usd:.2f} ({r.wall_s / 60:.0f} min), not the roadmap's "
                     f"~${claim.usd_per_run:.0f} ({claim.minutes_per_run or 0:.0f} min): {len(r.checks)} checks "
                     f"take {r.check_s / 60:.0f} min and {len(r.configs)} driver configurations "
                     f"{len(r.configs) * model.install_s / 60:.0f} min on top of {model.provision_s / 60:.0f} min "
                     "provisioning")
        if len(claim.types) > 1:
            singles = [i for i in matrix.instances if goal.scope.why_not(i) is None
                     and not _describe_missing(matrix, best.types, universe, i)]
            prices = sorted(i.price_usd_per_hour for i in singles)
            text += (f"; {len(singles)} types run the whole set alone (${prices[0]:.2f}–{prices[-1]:.2f}/h: "
                     f"{', '.join(i.instance_type for i in singles)})") if singles else ""
        return Comparison(claim, True, text)
    notes: list[str] = []
    for name in claim.types:
        inst = by_name.get(name)
        if inst is None:
            notes.append(f"{name} is not in the catalog")
            continue
        out_of_scope = goal.scope.why_not(inst)
        missing = _describe_missing(matrix, best.types, universe, inst)
        if out_of_scope:
            notes.append(f"{name}: {out_of_scope}")
        elif missing:
            notes.append(missing)
        else:
            alone = make_run(matrix, universe, inst, model)
            notes.append(f"{name} alone costs ${alone.cost_usd:.2f} a run vs ${best.cost_usd:.2f}")
    derived = " + ".join(f"{r.instance.instance_type} (${r.instance.price_usd_per_hour:.2f}/h)" for r in best.runs)
    return Comparison(claim, False, f"disagrees with the roadmap ({claim.text}): cheapest is {derived}, "
                                    f"${best.cost_usd:.2f} a run{basis}; " + "; ".join(notes))


def optimal(matrix: Matrix, goal: Goal, model: CostModel | None = None, alternatives: int = 3) -> Result:
    """Exact weighted set cover of ``goal`` over the matrix's instance types (see module doc)."""
    model = model or CostModel()
    checks = goal.select(matrix.checks)
    excluded: list[tuple[str, str]] = []
    candidates: list[Instance] = []
    for inst in matrix.instances:
        why = goal.scope.why_not(inst)
        if why is None and not any(matrix.cell(c, inst).runs for c in checks):
            why = "runs none of the goal's checks"
        if why is None:
            candidates.append(inst)
        else:
            excluded.append((inst.instance_type, why))
    allowed = {i.instance_type for i in candidates}
    universe = [c for c in checks if any(i.instance_type in allowed for i in matrix.runnable_on(c))]
    uncovered = []
    for c in checks:
        if c in universe:
            continue
        reasons = [matrix.cell(c, i).reason for i in matrix.instances if not matrix.cell(c, i).runs]
        scoped = [i.instance_type for i in matrix.runnable_on(c)]
        uncovered.append((c, reasons[0] if not scoped else f"runs only on {', '.join(scoped)}, outside the "
                                                            f"goal's scope ({goal.scope.describe()})"))
    runs = [make_run(matrix, universe, i, model) for i in candidates]
    index = {c.nodeid: n for n, c in enumerate(universe)}
    bits = [sum(1 << index[c.nodeid] for c in r.checks) for r in runs]
    full = (1 << len(universe)) - 1
    n = len(runs)
    cover = [0] * (1 << n)
    cost = [0.0] * (1 << n)
    for mask in range(1, 1 << n):
        low = (mask & -mask).bit_length() - 1
        rest = mask & (mask - 1)
        cover[mask] = cover[rest] | bits[low]
        cost[mask] = cost[rest] + runs[low].cost_usd
    minimal: list[int] = []
    for mask in range(1, 1 << n):
        if cover[mask] != full:
            continue
        if all(cover[mask & ~(1 << k)] != full for k in range(n) if mask >> k & 1):
            minimal.append(mask)

    def plan_of(mask: int) -> Plan:
        chosen = sorted((runs[k] for k in range(n) if mask >> k & 1),
                        key=lambda r: (r.cost_usd, r.instance.instance_type))
        return Plan(goal, tuple(chosen), tuple(uncovered))

    def order(mask: int) -> tuple[float, int, tuple[str, ...]]:
        return (round(cost[mask], 6), bin(mask).count("1"), plan_of(mask).types)

    minimal.sort(key=order)
    best = plan_of(minimal[0]) if minimal else Plan(goal, (), tuple(uncovered))
    alts = tuple(plan_of(m) for m in minimal[1:1 + alternatives])
    return Result(best, alts, tuple(excluded), compare(matrix, goal, best, universe, model))


def render(result: Result, schedule: Schedule | None) -> str:
    """Human-readable plan: runs with their cost, per month for the schedule, the roadmap comparison."""
    best = result.best
    lines = [f"goal: {best.goal.label}" + (f" — {best.goal.use_case.summary}" if best.goal.use_case else "")]
    if best.goal.scope.describe() != "any instance type":
        lines.append(f"scope: {best.goal.scope.describe()}")
    if not best.runs:
        lines.append("no check of the suite can be covered for this goal")
    for r in best.runs:
        est = f", {r.estimated_checks} estimated" if r.estimated_checks else ""
        lines.append(f"run {r.instance.instance_type} (${r.instance.price_usd_per_hour:.2f}/h): {len(r.checks)} checks "
                     f"({r.check_s / 60:.1f} min{est}) + {len(r.configs)} driver configs + provisioning = "
                     f"{r.wall_s / 60:.1f} min → ${r.cost_usd:.2f}")
    lines.append(f"per run: ${best.cost_usd:.2f}")
    if schedule is not None:
        lines.append(f"per month ({schedule.name}, every {schedule.interval_h:g} h, {schedule.runs_per_month:.1f} "
                     f"runs): ${best.per_month(schedule):,.2f}")
    infeasible = [c.function for c, why in best.uncovered if why.startswith("not feasible on Lambda")]
    if infeasible:
        lines.append(f"not feasible on any Lambda type (roadmap's list, {len(infeasible)}): {', '.join(infeasible)}")
    for c, why in best.uncovered:
        if not why.startswith("not feasible on Lambda"):
            lines.append(f"not covered: {c.function} — {why}")
    for alt in result.alternatives:
        lines.append(f"alternative: {' + '.join(alt.types)} ${alt.cost_usd:.2f} a run")
    if result.comparison is not None:
        lines.append(result.comparison.text)
    return "\n".join(lines) + "\n"
