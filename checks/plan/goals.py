"""What a plan is for (a goal) and how often it runs (a schedule).

A goal is one of:

- a **use case** of the roadmap's §4.4 cost table (``presubmit``, ``dynmig``, ``multi-gpu`` a.k.a. "2+ GPUs",
  ``compute-domains``, ``full`` a.k.a. "full coverage", ``arm64``), registered in :data:`USE_CASES` with the
  checks it means (a marker expression and/or declared needs), where it may run (:class:`Scope`) and what the
  roadmap claims is cheapest — the claim is only compared with, never used to decide;
- ``markers=EXPR``: a pytest ``-m`` expression, exactly what ``dra-lab check -m EXPR`` selects;
- ``checks=NAME,NAME``: check names (function names, ``file::function`` or node ids).

Anything else is a :class:`~checks.errors.UsageError` (one line, exit 2).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from _pytest.mark.expression import Expression  # pytest's own -m grammar, so goals select what -m selects

from checks.catalog import Instance, compute_domains_enabled
from checks.errors import UsageError
from checks.plan.inventory import CheckInfo
from checks.runner.profiles import PROFILES

HOURS_PER_MONTH = 365.25 * 24 / 12
"""Average month (730.5 h): what "per month" means in every cost here."""


@dataclass(frozen=True)
class Scope:
    """Which instance types a goal may use (the use case's hardware, not the checks' needs)."""

    min_gpus: int = 1
    """At least this many GPUs (the "2+ GPUs" use case is about what only a multi-GPU node exercises)."""
    max_gpus: int | None = None
    """At most this many GPUs (None: no limit)."""
    cpu_arch: str | None = None
    """Only this host architecture (``arm64`` for the arm64 use case); None: any."""
    architecture: str | None = None
    """Only this GPU architecture; None: any."""
    compute_domains: bool = False
    """Only types where compute domains auto-enable (upstream CI's *b200/*gb200/*gb300 rule, as the b200
    validation profile requires)."""
    only: tuple[str, ...] = ()
    """Only these instance types (a job the roadmap pins to a type); empty: any."""

    def why_not(self, inst: Instance) -> str | None:
        """None if ``inst`` is in scope, else why not (one phrase)."""
        if self.only and inst.instance_type not in self.only:
            return f"the goal is pinned to {', '.join(self.only)}"
        if self.architecture and inst.gpu.architecture != self.architecture:
            return f"the goal is {self.architecture}; {inst.instance_type} has {inst.gpu.architecture}"
        if self.compute_domains and not compute_domains_enabled(inst):
            return f"the goal needs compute domains enabled; {inst.instance_type} is not a *b200/*gb200/*gb300 type"
        if inst.gpu.count < self.min_gpus:
            return f"the goal needs {self.min_gpus}+ GPUs; {inst.instance_type} has {inst.gpu.count}"
        if self.max_gpus is not None and inst.gpu.count > self.max_gpus:
            return f"the goal uses at most {self.max_gpus} GPU(s); {inst.instance_type} has {inst.gpu.count}"
        if self.cpu_arch and inst.host.cpu_arch != self.cpu_arch:
            return f"the goal is {self.cpu_arch}; {inst.instance_type} is {inst.host.cpu_arch}"
        return None

    def describe(self) -> str:
        parts = []
        if self.min_gpus > 1:
            parts.append(f"{self.min_gpus}+ GPUs")
        if self.max_gpus is not None:
            parts.append(f"≤{self.max_gpus} GPU(s)")
        if self.cpu_arch:
            parts.append(self.cpu_arch)
        if self.architecture:
            parts.append(self.architecture)
        if self.compute_domains:
            parts.append("compute domains enabled")
        if self.only:
            parts.append("pinned to " + ", ".join(self.only))
        return ", ".join(parts) or "any instance type"


@dataclass(frozen=True)
class RoadmapClaim:
    """What the roadmap's §4.4 table says for a use case (roadmap.md "Also in scope")."""

    types: tuple[str, ...]
    """The instance type(s) the roadmap names as the cheapest for this use case."""
    text: str
    """The roadmap's words, for the comparison line."""
    usd_per_run: float | None = None
    """The roadmap's cost of one run, where it gives one."""
    minutes_per_run: float | None = None
    """The roadmap's wall time of one run, where it gives one."""


@dataclass(frozen=True)
class UseCase:
    """One row of the roadmap's §4.4 cost table, as a selection of checks plus a hardware scope."""

    name: str
    """Registry key (``--goal NAME``)."""
    summary: str
    """What the use case is for, one line."""
    markers: str | None = None
    """pytest ``-m`` expression selecting its checks; None = every check (unless ``needs`` narrows)."""
    needs: tuple[str, ...] = ()
    """Names of :class:`~checks.catalog.needs.Needs` fields; a check declaring any of them is selected too."""
    scope: Scope = Scope()
    """Instance types the use case may use."""
    roadmap: RoadmapClaim | None = None
    """The roadmap's claim to compare the derived choice with."""
    aliases: tuple[str, ...] = ()
    """Other spellings accepted by ``--goal`` (e.g. ``2+ GPUs``)."""
    schedule: str = "nightly"
    """The schedule its monthly cost assumes unless ``--schedule`` says otherwise."""
    profile: str | None = None
    """A ``dra-lab check --profile`` whose marker expression the use case is (its job passes the profile)."""
    disruptive: bool = False
    """Whether its runs pass ``--disruptive`` (roadmap item 14: disruptive checks run in periodics only)."""


USE_CASES: dict[str, UseCase] = {u.name: u for u in (
    UseCase("presubmit", "fast feedback on whatever single GPU is available",
            markers="fastfeedback and not multi_gpu and not mig and not dynmig and not compute_domains",
            scope=Scope(max_gpus=1),
            roadmap=RoadmapClaim(("gpu_1x_a10", "gpu_1x_a100_sxm4", "gpu_1x_gh200", "gpu_1x_h100_pcie",
                                  "gpu_1x_h100_sxm5"), "presubmit: any available $1.29–4.29")),
    UseCase("dynmig", "DynamicMIG: partitions created on demand, over-capacity and fragmentation negatives",
            markers="dynmig",
            roadmap=RoadmapClaim(("gpu_1x_h100_pcie",), "DynMIG: gpu_1x_h100_pcie $3.29")),
    UseCase("multi-gpu", "what only a node with 2+ GPUs exercises: distinct GPUs per claim and MIG across GPUs",
            markers="multi_gpu or mig or dynmig", scope=Scope(min_gpus=2), aliases=("2+ gpus", "multi gpu"),
            roadmap=RoadmapClaim(("gpu_2x_h100_sxm5",),
                                 "multi-GPU: gpu_2x_h100_sxm5 $8.38 beats gpu_8x_a100 $15.92")),
    UseCase("compute-domains", "ComputeDomains and IMEX channels on one node",
            markers="compute_domains", needs=("compute_domains", "imex"), aliases=("compute domains", "cd"),
            roadmap=RoadmapClaim(("gpu_1x_b200_sxm6",), "compute domains: gpu_1x_b200_sxm6 $6.99")),
    UseCase("full", "every check that can run on some Lambda instance type", disruptive=True,
            aliases=("full coverage", "full-coverage", "all"),
            roadmap=RoadmapClaim(("gpu_8x_h100_sxm5",), "full coverage: gpu_8x_h100_sxm5 $31.92")),
    UseCase("nightly", "roadmap item 5: the full single-GPU set plus upgrade/downgrade and stress, every 6 h",
            markers="not multi_gpu", scope=Scope(max_gpus=1), schedule="nightly", disruptive=True),
    UseCase("weekly", "roadmap item 11: the full GPU target (static MIG, stress, upgrade, multi-GPU) once a week",
            scope=Scope(only=("gpu_8x_h100_sxm5",)), schedule="weekly", disruptive=True,
            roadmap=RoadmapClaim(("gpu_8x_h100_sxm5",), "weekly multi-GPU: gpu_8x_h100_sxm5, ~$16 a run (30 min)",
                                 usd_per_run=16.0, minutes_per_run=30.0)),
    UseCase("b200", "roadmap item 9: the `--profile b200` set where compute domains auto-enable",
            markers=PROFILES["b200"].markers, profile="b200", scope=Scope(max_gpus=1, compute_domains=True),
            aliases=("b200 validation",)),
    UseCase("arm64", "the presubmit set on the Arm host", markers="fastfeedback and not multi_gpu",
            scope=Scope(max_gpus=1, cpu_arch="arm64"),
            roadmap=RoadmapClaim(("gpu_1x_gh200",), "arm64: gpu_1x_gh200 $2.29")),
)}


@dataclass(frozen=True)
class Schedule:
    """How often a plan runs."""

    name: str
    """Registry key (``--schedule NAME``)."""
    interval_h: float
    """Hours between runs."""
    why: str
    """Where the cadence comes from."""

    @property
    def runs_per_month(self) -> float:
        return HOURS_PER_MONTH / self.interval_h


SCHEDULES: dict[str, Schedule] = {s.name: s for s in (
    Schedule("nightly", 6, "roadmap item 5: a periodic every 6 h (the existing Lambda periodics' interval)"),
    Schedule("daily", 24, "once a day"),
    Schedule("weekly", 168, "roadmap item 11: the weekly multi-GPU periodic"),
)}


def schedule(name: str) -> Schedule:
    """The registered schedule ``name``; UsageError naming the known ones otherwise."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UsageError(f"unknown schedule {name!r} (known: {', '.join(SCHEDULES)})", where="--schedule") from None


@functools.cache
def _compiled(text: str) -> Expression:
    return Expression.compile(text)


def marker_matches(expr: Expression, check: CheckInfo) -> bool:
    """Whether ``-m EXPR`` selects ``check`` (marker names only, as the suite's markers take no kwargs)."""
    return expr.evaluate(lambda name, /, **kwargs: not kwargs and name in check.markers)


def compile_markers(text: str, where: str) -> Expression:
    """A pytest ``-m`` expression; UsageError (one line) when pytest would reject it."""
    try:
        return _compiled(text)
    except SyntaxError as exc:
        raise UsageError(f"bad marker expression {text!r}: {exc.msg}", where=where) from None


@dataclass(frozen=True)
class Goal:
    """A resolved goal: which checks, on which types."""

    label: str
    """How reports name it (the use case name, ``markers=…`` or ``checks=…``)."""
    markers: str | None = None
    """``-m`` expression of the goal (also what its Prow job passes); None = no marker filter."""
    needs: tuple[str, ...] = ()
    """Needs fields that select a check as well (use cases only)."""
    check_names: frozenset[str] = frozenset()
    """Explicit check node ids (``checks=`` goals); empty = not an explicit list."""
    scope: Scope = Scope()
    """Instance types allowed."""
    use_case: UseCase | None = None
    """The §4.4 use case, when the goal is one."""
    disruptive: bool = True
    """Whether disruptive checks (opt-in ``--disruptive``) belong to the goal; its runs pass the flag."""

    def selects(self, check: CheckInfo) -> bool:
        if check.needs.get("disruptive") and not self.disruptive:
            return False
        if self.check_names:
            return check.nodeid in self.check_names
        if self.markers is None and not self.needs:
            return True
        if self.markers is not None and marker_matches(compile_markers(self.markers, "--goal"), check):
            return True
        return any(check.needs.get(n) for n in self.needs)

    def select(self, checks: Iterable[CheckInfo]) -> list[CheckInfo]:
        return [c for c in checks if self.selects(c)]


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def use_case(name: str) -> UseCase | None:
    """The use case called ``name`` (or one of its aliases; case, ``-``, ``_`` and spaces ignored)."""
    want = _norm(name)
    for uc in USE_CASES.values():
        if want in {_norm(uc.name), *(_norm(a) for a in uc.aliases)}:
            return uc
    return None


def for_use_case(uc: UseCase) -> Goal:
    """The goal a use case stands for."""
    return Goal(uc.name, uc.markers, uc.needs, scope=uc.scope, use_case=uc, disruptive=uc.disruptive)


def parse_goal(text: str, checks: Iterable[CheckInfo]) -> Goal:
    """``--goal`` text → :class:`Goal`; UsageError (one line, exit 2) for anything not understood."""
    raw = text.strip()
    uc = use_case(raw)
    if uc is not None:
        return for_use_case(uc)
    key, sep, value = raw.partition("=")
    key = key.strip().lower()
    if sep and key in ("markers", "m"):
        if not value.strip():
            raise UsageError("empty marker expression", where="--goal")
        compile_markers(value.strip(), "--goal")
        return Goal(f"markers={value.strip()}", value.strip())
    if sep and key in ("checks", "k"):
        known = list(checks)
        chosen: set[str] = set()
        for name in (n.strip() for n in value.split(",")):
            if not name:
                continue
            hits = {c.nodeid for c in known if name in (c.nodeid, c.name, c.function)
                    or c.function.split("[")[0] == name}
            if not hits:
                raise UsageError(f"no check named {name!r} (see `dra-lab plan matrix`)", where="--goal")
            chosen |= hits
        if not chosen:
            raise UsageError("checks= names no check", where="--goal")
        return Goal(f"checks={value.strip()}", check_names=frozenset(chosen))
    names = ", ".join(USE_CASES)
    raise UsageError(f"unknown goal {raw!r}: give a use case ({names}), markers=EXPR or checks=NAME,...",
                     where="--goal")
