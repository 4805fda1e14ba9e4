"""``dra-lab check``: run the suite (pytest over ``checks.suite``) against a target.

pytest runs in this process, so a twin started here serves it; the plugin turns SIGTERM into
KeyboardInterrupt, so teardown and the label sweep run, and results.json + JUnit are written whatever
happens. The exit code is pytest's (0 all passed, 1 failures, 2 usage/interrupted...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from checks.runner.targets import Target


@dataclass
class CheckRun:
    """One invocation of the suite."""

    run_id: str
    """Run id (labels, folder name)."""
    output_dir: Path
    """Where junit.xml, results.json and artifacts go."""
    markers: str | None = None
    """pytest ``-m`` expression (upstream tags: multi_gpu, dynmig, version_specific...)."""
    keyword: str | None = None
    """pytest ``-k`` expression."""
    options: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    """Suite options by dest name (see checks.suite.settings)."""
    extra_args: list[str] = field(default_factory=list)
    """Further pytest arguments."""
    verbose: bool = True
    """One line per check (progress)."""


def pytest_args(run: CheckRun, target: Target | None, instance: str) -> list[str]:
    args = ["-p", "checks.suite.plugin", "--pyargs", "checks.suite", "-p", "no:cacheprovider",
            "--instance", instance, "--run-id", run.run_id, "--output-dir", str(run.output_dir),
            "--junitxml", str(run.output_dir / "junit.xml"), "-o", "junit_family=xunit2",
            "-o", "junit_suite_name=dra-lab", "-o", "console_output_style=count", "-rs"]
    if run.verbose:
        args.append("-v")
    if target is not None:
        args += ["--kubeconfig", str(target.kubeconfig)]
        if target.context:
            args += ["--context", target.context]
        if target.chart and not run.options.get("chart"):
            args += ["--chart", target.chart]
        if target.last_stable_chart and not run.options.get("last_stable_chart"):
            args += ["--last-stable-chart", target.last_stable_chart]
            if target.last_stable_version and not run.options.get("last_stable_version"):
                args += ["--last-stable-version", target.last_stable_version]
        if target.is_twin:
            args.append("--yes")
    if run.markers:
        args += ["-m", run.markers]
    if run.keyword:
        args += ["-k", run.keyword]
    from checks.suite.settings import FLAGS, OPTIONS

    unknown = sorted(set(run.options) - set(OPTIONS) - set(FLAGS))
    if unknown:  # the suite's settings are the one definition of these names
        raise ValueError(f"not suite options: {', '.join(unknown)}")
    for dest, value in run.options.items():
        if value is None or value is False:
            continue
        flag = f"--{dest.replace('_', '-')}"
        args += [flag] if value is True else [flag, str(value)]
    return args + list(run.extra_args)


def run_checks(run: CheckRun, target: Target | None, instance: str) -> int:
    """Run pytest in-process; returns its exit code."""
    import pytest

    run.output_dir.mkdir(parents=True, exist_ok=True)
    code = pytest.main(pytest_args(run, target, instance))
    return int(code)
