"""Suite settings: pytest options with env-var equivalents mirroring the upstream TEST_* interface.

Options win over environment variables, environment variables over defaults (upstream-e2e-tests.md §2.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.errors import UsageError
from checks.scenarios.driverconfig import UPSTREAM_CHART

#: option dest -> (env var, default, type, help)
OPTIONS: dict[str, tuple[str | None, Any, type, str]] = {
    "kubeconfig": ("KUBECONFIG", None, str, "kubeconfig of the cluster under test"),
    "context": (None, None, str, "kubeconfig context (required on a real cluster unless --yes)"),
    "instance": ("DRA_LAB_INSTANCE", "gpu_1x_a10", str, "Lambda instance type the cluster runs on"),
    "run_id": ("DRA_LAB_RUN_ID", None, str, "run id (labels every object; default: a new one)"),
    "output_dir": ("DRA_LAB_OUTPUT", None, str, "where results.json and artifacts go"),
    "chart": ("TEST_CHART_REPO", UPSTREAM_CHART, str, "chart reference (OCI, repo/chart or local path)"),
    "chart_version": ("TEST_CHART_VERSION", None, str, "chart version (none: the chart's own)"),
    "last_stable_chart": ("TEST_CHART_LASTSTABLE_REPO", UPSTREAM_CHART, str, "baseline chart for upgrades"),
    "last_stable_version": ("TEST_CHART_LASTSTABLE_VERSION", "0.4.0", str, "baseline chart version"),
    "driver_root": ("TEST_NVIDIA_DRIVER_ROOT", "/", str, "nvidiaDriverRoot (Lambda hosts: /)"),
    "image_tag": ("DRA_LAB_IMAGE_TAG", None, str, "image.tag override"),
    "stress_pods": ("TEST_GPU_STRESS_PODS_N", None, int, "stress: pods sharing one claim (10; 20 in CI)"),
    "stress_iterations": ("TEST_GPU_STRESS_ITERATIONS", None, int, "stress: iterations (2; 1 in CI)"),
    "timeout_scale": ("DRA_LAB_TIMEOUT_SCALE", 1.0, float, "multiply every wait timeout"),
    "lock_timeout": ("DRA_LAB_LOCK_TIMEOUT", 0.0, float,
                     "seconds to wait for another run's cluster lock (0: refuse at once, naming the holder)"),
}
FLAGS: dict[str, tuple[str | None, str]] = {
    "yes": ("DRA_LAB_YES", "run against a cluster whose context was not named explicitly"),
    "adopt": ("DRA_LAB_ADOPT", "take over an existing driver release not installed by dra-lab"),
    "disruptive": ("DRA_LAB_DISRUPTIVE", "also run disruptive checks"),
    "no_internet": ("DRA_LAB_NO_INTERNET", "skip checks whose workloads download packages"),
    "keep_driver": ("DRA_LAB_KEEP_DRIVER", "leave the driver installed at the end"),
    "dry_run": (None, "print the plan (checks, skips and reasons, driver configs) and touch nothing"),
    "clean_leftovers": ("DRA_LAB_CLEAN_LEFTOVERS", "remove what earlier runs left holding devices, then start"),
}


@dataclass(frozen=True)
class SuiteSettings:
    """Everything the suite needs to know before it touches a cluster."""

    kubeconfig: Path | None
    """kubeconfig path; None only in --dry-run."""
    context: str | None
    """Context inside the kubeconfig."""
    instance: str
    """Lambda instance type (params/<instance>.yaml)."""
    run_id: str
    """Run id labelling every created object."""
    output_dir: Path
    """Run output folder (results.json, junit.xml, artifacts/)."""
    chart: str
    """Chart under test."""
    chart_version: str | None
    """Chart version under test."""
    last_stable_chart: str
    """Baseline chart for upgrade/downgrade checks."""
    last_stable_version: str
    """Baseline chart version."""
    driver_root: str
    """``nvidiaDriverRoot``."""
    image_tag: str | None
    """``image.tag`` override."""
    stress_pods: int
    """Pods sharing one claim in the stress check."""
    stress_iterations: int
    """Stress iterations."""
    timeout_scale: float
    """Factor applied to every wait timeout."""
    lock_timeout: float
    """Seconds to wait for another run's cluster lock before refusing (0: refuse at once)."""
    yes: bool
    """Destructive guard acknowledged."""
    adopt: bool
    """May take over a foreign driver release."""
    disruptive: bool
    """Run disruptive checks."""
    no_internet: bool
    """Skip checks that download."""
    keep_driver: bool
    """Do not uninstall the driver at the end."""
    dry_run: bool
    """Plan only."""
    clean_leftovers: bool
    """Remove other runs' leftovers holding devices before starting (else refuse, naming them)."""

    def timeout(self, seconds: float) -> float:
        return seconds * self.timeout_scale


def from_pytest(config: Any) -> SuiteSettings:
    """Build settings from pytest options + env; bad values become a UsageError naming the option."""
    from checks.kube.labels import new_run_id

    values: dict[str, Any] = {}
    for dest, (env, default, typ, _help) in OPTIONS.items():
        raw = config.getoption(f"dra_{dest}")
        source = f"--{dest.replace('_', '-')}"
        if raw is None and env and os.environ.get(env):
            raw, source = os.environ[env], env
        if raw is None:
            values[dest] = default
            continue
        try:
            values[dest] = typ(raw)
        except ValueError:
            raise UsageError(f"expected {typ.__name__}, got {raw!r}", where=source) from None
    for dest, (env, _help) in FLAGS.items():
        values[dest] = bool(config.getoption(f"dra_{dest}")) or bool(env and os.environ.get(env) in ("1", "true"))
    ci = bool(os.environ.get("CI"))
    if values["stress_pods"] is None:
        values["stress_pods"] = 20 if ci else 10
    if values["stress_iterations"] is None:
        values["stress_iterations"] = 1 if ci else 2
    for dest in ("stress_pods", "stress_iterations"):
        if values[dest] < 1:
            raise UsageError("must be at least 1", where=f"--{dest.replace('_', '-')}")
    if values["timeout_scale"] <= 0:
        raise UsageError("must be positive", where="--timeout-scale")
    if values["lock_timeout"] < 0:
        raise UsageError("must be zero or more seconds", where="--lock-timeout")
    run_id = values["run_id"] or new_run_id()
    out = (Path(values["output_dir"]) if values["output_dir"]
           else Path("outputs") / values["instance"] / "checks" / run_id)
    kube = Path(values["kubeconfig"]).expanduser() if values["kubeconfig"] else None
    return SuiteSettings(kubeconfig=kube, context=values["context"], instance=values["instance"], run_id=run_id,
                         output_dir=out, chart=values["chart"], chart_version=values["chart_version"],
                         last_stable_chart=values["last_stable_chart"],
                         last_stable_version=values["last_stable_version"], driver_root=values["driver_root"],
                         image_tag=values["image_tag"], stress_pods=values["stress_pods"],
                         stress_iterations=values["stress_iterations"], timeout_scale=values["timeout_scale"],
                         lock_timeout=values["lock_timeout"], clean_leftovers=values["clean_leftovers"],
                         yes=values["yes"], adopt=values["adopt"], disruptive=values["disruptive"],
                         no_internet=values["no_internet"], keep_driver=values["keep_driver"],
                         dry_run=values["dry_run"])
