"""``dra-lab check``: the suite against a real cluster (``--kubeconfig``) or a twin (``--twin``, the default)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from checks.catalog import load_instance
from checks.errors import UsageError


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--kubeconfig", type=click.Path(path_type=Path), help="Real cluster: its kubeconfig.")
@click.option("--context", help="Real cluster: the kubeconfig context (required unless --yes).")
@click.option("--twin", "twin", metavar="INSTANCE", help="Run against an embedded twin of this instance type.")
@click.option("--instance", default="gpu_1x_a10", show_default=True,
              help="Instance type of the cluster (and of the default twin).")
@click.option("--twin-mig", default=None, metavar="all|none|0,1,..",
              help="Twin only: GPUs whose MIG mode is on at boot (Ampere needs it for DynamicMIG).")
@click.option("--twin-k8s", default="1.36", show_default=True, help="Twin only: Kubernetes minor it behaves as.")
@click.option("--profile", "profile_name", metavar="NAME",
              help="Validation profile: its instance type (unless --twin/--instance say otherwise) and check "
                   "selection; b200 = the B200 presubmit with compute domains (README).")
@click.option("-m", "markers", help="pytest marker expression (multi_gpu, dynmig, version_specific, stress...).")
@click.option("-k", "keyword", help="pytest -k expression.")
@click.option("--dry-run", is_flag=True, help="Print the plan; touch no cluster, start no twin.")
@click.option("--run-id", help="Run id (default: a new one).")
@click.option("--output", type=click.Path(path_type=Path),
              help="Output folder (default outputs/<instance>/checks/<run-id>).")
@click.option("--chart", help="Chart reference [env TEST_CHART_REPO].")
@click.option("--chart-version", help="Chart version [env TEST_CHART_VERSION].")
@click.option("--last-stable-chart", help="Baseline chart for upgrade/downgrade [env TEST_CHART_LASTSTABLE_REPO].")
@click.option("--last-stable-version", help="Baseline chart version [env TEST_CHART_LASTSTABLE_VERSION].")
@click.option("--driver-root", help="nvidiaDriverRoot [env TEST_NVIDIA_DRIVER_ROOT] (Lambda: /).")
@click.option("--stress-pods", type=int, help="Stress: pods per iteration [env TEST_GPU_STRESS_PODS_N].")
@click.option("--stress-iterations", type=int, help="Stress: iterations [env TEST_GPU_STRESS_ITERATIONS].")
@click.option("--timeout-scale", type=float, help="Multiply every wait timeout.")
@click.option("--yes", is_flag=True, help="Real cluster: proceed without an explicit --context.")
@click.option("--adopt", is_flag=True, help="Take over a driver release not installed by dra-lab.")
@click.option("--disruptive", is_flag=True, help="Also run disruptive checks.")
@click.option("--no-internet", is_flag=True, help="Skip checks whose workloads download packages.")
@click.option("--keep-driver", is_flag=True, help="Leave the driver installed at the end.")
@click.option("--clean-leftovers", is_flag=True,
              help="Remove what earlier (killed) runs left holding devices before starting, instead of refusing.")
@click.option("--lock-timeout", type=float,
              help="Seconds to wait for another run's cluster lock (default 0: refuse at once, naming it).")
@click.option("-q", "quiet", is_flag=True, help="Less output.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def command(kubeconfig: Path | None, context: str | None, twin: str | None, instance: str, twin_mig: str | None,
            twin_k8s: str, profile_name: str | None, markers: str | None, keyword: str | None, dry_run: bool,
            run_id: str | None,
            output: Path | None, chart: str | None, chart_version: str | None, last_stable_chart: str | None,
            last_stable_version: str | None,
            driver_root: str | None, stress_pods: int | None, stress_iterations: int | None,
            timeout_scale: float | None, yes: bool, adopt: bool, disruptive: bool, no_internet: bool,
            keep_driver: bool, clean_leftovers: bool, lock_timeout: float | None, quiet: bool,
            pytest_args: tuple[str, ...]) -> None:
    """Run the check suite. Without --kubeconfig it starts a twin of --instance (or of --twin)."""
    from checks.kube.labels import check_run_id, new_run_id
    from checks.runner import preflight
    from checks.runner.check import CheckRun, run_checks
    from checks.runner.targets import open_target, parse_mig_enabled
    from checks.twin.options import TwinOptions

    if profile_name is not None:
        from checks.runner.profiles import profile

        prof = profile(profile_name)
        explicit = click.get_current_context().get_parameter_source("instance") != click.core.ParameterSource.DEFAULT
        if twin is None and not explicit:
            instance = prof.instance
        prof.check_instance(load_instance(twin or instance))
        markers = prof.marker_expression(markers)
    inst = load_instance(twin or instance)
    rid = check_run_id(run_id, where="--run-id") if run_id else new_run_id()
    out = preflight.output_dir(output or Path("outputs") / inst.instance_type / "checks" / rid)
    for name, val in (("--stress-pods", stress_pods), ("--stress-iterations", stress_iterations)):
        if val is not None and val < 1:
            raise UsageError("must be at least 1", where=name)
    if lock_timeout is not None and lock_timeout < 0:
        raise UsageError("must be zero or more seconds", where="--lock-timeout")
    preflight.markers(markers)
    options = {"chart": chart, "chart_version": chart_version, "last_stable_chart": last_stable_chart,
               "last_stable_version": last_stable_version,
               "driver_root": driver_root, "stress_pods": stress_pods, "stress_iterations": stress_iterations,
               "timeout_scale": timeout_scale, "adopt": adopt, "disruptive": disruptive,
               "no_internet": no_internet, "keep_driver": keep_driver, "dry_run": dry_run,
               "yes": yes, "clean_leftovers": clean_leftovers, "lock_timeout": lock_timeout}
    run = CheckRun(run_id=rid, output_dir=out, markers=markers, keyword=keyword,
                   options=options, extra_args=list(pytest_args), verbose=not quiet)
    if dry_run:
        code = run_checks(run, None, inst.instance_type)
        sys.exit(0 if code in (0, 5) else code)  # 5 = pytest's "no tests ran": the plan deselects everything
    if kubeconfig is not None and twin is not None:
        raise UsageError("give either --kubeconfig (a real cluster) or --twin INSTANCE, not both", where="--twin")
    if kubeconfig is not None:
        preflight.cluster(kubeconfig, context, yes=yes, run=preflight.RunGate(
            rid, lock_timeout_s=lock_timeout or 0.0, clean_leftovers=clean_leftovers))
    if kubeconfig is None and twin is None:
        twin = inst.instance_type
    opts = TwinOptions(kube_version=twin_k8s, mig_enabled=parse_mig_enabled(twin_mig, inst.gpu.count))
    click.echo(f"dra-lab check: run {rid}, output {out}", err=True)
    # A twin's folder (its kubeconfig holds a bearer token) lives outside the outputs and goes with the twin.
    with open_target(kubeconfig=kubeconfig, context=context, twin=twin, instance=inst.instance_type,
                     twin_options=opts) as target:
        click.echo(f"dra-lab check: target {target.description}", err=True)
        code = run_checks(run, target, inst.instance_type)
    click.echo(f"dra-lab check: JUnit {out / 'junit.xml'}, results {out / 'results.json'}", err=True)
    sys.exit(code)
