"""Notebook registry and typed parameter schemas.

Every notebook the lab runs is registered in :data:`NOTEBOOKS` with a pydantic model of its parameters.
The runner validates the merged parameters (instance facts from ``params/<TYPE>.yaml`` overridden by
``-p name=value``) against that model *before* papermill starts a kernel: a typo or a wrong type costs one
line and exit code 2, not a half-executed notebook.

Why the facts are filtered by the schema: only parameters a notebook declares are passed, so a notebook
never receives a value it would silently ignore (papermill would inject it as a stray variable).

Notebooks receive a kubeconfig *path* (``kubeconfig``), never its contents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from checks.catalog import Instance
from checks.errors import UsageError
from checks.twin.options import TwinOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


class _Params(BaseModel):
    """Common to every notebook: strict types, no unknown names."""

    model_config = ConfigDict(extra="forbid", strict=True)

    instance_type: str = ""
    """Lambda instance type the run is for (from the params file)."""
    output_dir: str = "."
    """Folder the notebook writes results.json, CSV tables and PNG plots into (set by the runner)."""


class ImexParams(_Params):
    """``imex_channels``: host-level, reads this machine."""

    allow_changes: bool = False
    """Only when true may the notebook create the IMEX channel0 device node."""
    probe_json: str = ""
    """Read a saved probe instead of probing this host."""


class ClusterParams(_Params):
    """Notebooks that talk to a cluster (real or twin)."""

    kubeconfig: str = ""
    """Path of the kubeconfig (set by the runner; never its contents)."""
    context: str = ""
    """kubeconfig context ('' = current)."""
    chart: str = ""
    """Chart reference for the driver ('' = the upstream chart; a twin passes its own chart)."""
    chart_version: str = ""
    """Chart version ('' = newest / the local chart)."""
    driver_root: str = "/"
    """``nvidiaDriverRoot`` (Lambda hosts: /)."""
    gpu_model: str = ""
    """GPU product name from the params file (the notebook prefers what the cluster publishes)."""
    gpu_count: int = Field(default=1, ge=1)
    """GPUs per node from the params file."""
    run_id: str = ""
    """Run id: labels and namespace names of the objects the notebook creates."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Budget for each wait."""
    adopt: bool = False
    """Take over a driver release dra-lab did not install."""


class DynmigParams(ClusterParams):
    """``dynmig_fragmentation``: MIG claim sequences against the oracle."""

    gpu_index: int = Field(default=0, ge=0)
    """GPU minor whose MIG devices the sequences use."""
    small_profile: str = ""
    """Profile used to fill the GPU ('' = the smallest non-media profile)."""
    large_profile: str = ""
    """Profile asked for after freeing ('' = the 3g profile)."""
    keep: list[int] | None = None
    """Memory-slice starts of the small instances to keep when freeing (None = the oracle's fragmentation blocker)."""
    uninstall: bool = True
    """Uninstall the driver at the end."""
    fail_on_disagreement: bool = True
    """Fail the run (after writing every output) when a step differs from the oracle."""


class StressParams(ClusterParams):
    """``stress_timing``: N pods × M iterations on one shared claim."""

    pods: int = Field(default=10, ge=1, le=500)
    """Pods sharing the claim per iteration (N)."""
    iterations: int = Field(default=2, ge=1, le=100)
    """Iterations (M)."""
    uninstall: bool = True
    """Uninstall the driver at the end."""


class CoverageParams(_Params):
    """``coverage_plan``: matrix, cost-optimal plan and monthly cost for one goal (no cluster)."""

    goal: str = "full"
    """A roadmap §4.4 use case, ``markers=EXPR`` or ``checks=NAME,...`` (as ``dra-lab plan cost --goal``)."""
    schedules: list[str] = Field(default_factory=lambda: ["nightly", "weekly"])
    """Schedules whose monthly cost is shown."""
    outputs_root: str = ""
    """Where earlier results.json give measured durations ('' = the outputs folder this run writes into)."""
    provision_min: float = Field(default=15.0, ge=0)
    """Provisioning overhead per run, minutes."""

    @field_validator("goal")
    @classmethod
    def _goal_shape(cls, value: str) -> str:
        from checks.plan.goals import compile_markers, use_case

        key, sep, rest = value.partition("=")
        if use_case(value) is not None or (sep and key.strip() in ("checks", "k") and rest.strip()):
            return value
        if sep and key.strip() in ("markers", "m") and rest.strip():
            try:
                compile_markers(rest.strip(), "goal")
            except UsageError as exc:
                raise ValueError(exc.message) from None
            return value
        raise ValueError("expected a use case, markers=EXPR or checks=NAME,...")

    @field_validator("schedules")
    @classmethod
    def _known_schedules(cls, value: list[str]) -> list[str]:
        from checks.plan.goals import SCHEDULES

        bad = [s for s in value if s not in SCHEDULES]
        if bad or not value:
            raise ValueError(f"unknown schedule {bad[0] if bad else '(none)'!r} (known: {', '.join(SCHEDULES)})")
        return value


def _no_twin_options(_inst: Instance) -> TwinOptions:
    return TwinOptions()


def _mig_twin_options(inst: Instance) -> TwinOptions:
    """Ampere exposes MIG partitions only with MIG mode on (nvidia-dra-driver.md §4.5): boot GPU 0 with it on."""
    if inst.gpu.mig_capable and inst.gpu.architecture == "Ampere":
        return TwinOptions(mig_enabled=(0,))
    return TwinOptions()


@dataclass(frozen=True)
class NotebookSpec:
    """One registered notebook."""

    name: str
    """Registry key and output folder name."""
    path: Path
    """The source notebook."""
    schema: type[_Params]
    """Its parameter model."""
    needs_cluster: bool
    """Whether the runner must provide a target (kubeconfig or twin)."""
    twin_options: Callable[[Instance], TwinOptions] = _no_twin_options
    """How to boot a twin for this notebook on a given instance."""
    summary: str = ""
    """One line for help and reports."""


NOTEBOOKS: dict[str, NotebookSpec] = {
    spec.name: spec for spec in (
        NotebookSpec("imex_channels", NOTEBOOK_DIR / "imex_channels.ipynb", ImexParams, needs_cluster=False,
                     summary="Host: can single-node compute-domain checks run here (IMEX channels)?"),
        NotebookSpec("dynmig_fragmentation", NOTEBOOK_DIR / "dynmig_fragmentation.ipynb", DynmigParams,
                     needs_cluster=True, twin_options=_mig_twin_options,
                     summary="Cluster: DynamicMIG over-capacity and fragmentation vs the MIG oracle."),
        NotebookSpec("stress_timing", NOTEBOOK_DIR / "stress_timing.ipynb", StressParams, needs_cluster=True,
                     summary="Cluster: N pods x M iterations on one claim, pod start latency percentiles."),
        NotebookSpec("coverage_plan", NOTEBOOK_DIR / "coverage_plan.ipynb", CoverageParams, needs_cluster=False,
                     summary="No cluster: which checks run on which type, the cheapest plan for a goal, its cost "
                             "per month."),
    )
}


def notebook(name: str) -> NotebookSpec:
    """The registered notebook ``name``; UsageError naming the known ones otherwise."""
    try:
        return NOTEBOOKS[name]
    except KeyError:
        raise UsageError(f"unknown notebook {name!r} (known: {', '.join(sorted(NOTEBOOKS))})",
                         where="NOTEBOOK") from None


def instance_facts(inst: Instance) -> dict[str, Any]:
    """Parameters every notebook may take from the params file."""
    return {"instance_type": inst.instance_type, "gpu_model": inst.gpu.model, "gpu_count": inst.gpu.count}


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``name=value`` strings → dict; values are YAML scalars (``10`` int, ``true`` bool, ``[1, 5]`` list)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"expected name=value, got {pair!r}", where="-p")
        try:
            out[name] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UsageError(f"value {raw!r} is not a YAML scalar", where=f"-p {name}") from None
    return out


def validate(spec: NotebookSpec, facts: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Facts (only those the schema declares) overridden by ``overrides`` (all must be declared) → parameters.

    Raises UsageError with one line for the first problem: an unknown name, or a value of the wrong type.
    """
    fields = spec.schema.model_fields
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UsageError(f"unknown parameter {unknown[0]!r} for notebook {spec.name} "
                         f"(known: {', '.join(sorted(fields))})", where=f"-p {unknown[0]}")
    merged = {k: v for k, v in facts.items() if k in fields}
    merged.update(overrides)
    try:
        model = spec.schema.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(x) for x in err.get("loc", ())) or "?"
        raise UsageError(f"{err.get('msg', 'invalid')} (got {err.get('input')!r})",
                         where=f"parameter {name} of {spec.name}") from None
    return model.model_dump()


__all__ = ["NOTEBOOKS", "ClusterParams", "CoverageParams", "DynmigParams", "ImexParams", "NotebookSpec", "StressParams",
           "instance_facts", "notebook", "parse_overrides", "validate"]
