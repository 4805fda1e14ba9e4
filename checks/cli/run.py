"""``dra-lab run``: the main job — check suite, the three notebooks and the report — against twins of one
instance type (or a real cluster with ``--kubeconfig``).

Every part runs even when an earlier one failed, so a user always gets every artifact that can be produced;
the exit code is non-zero when any part failed. One run id names every folder of the job.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from checks.errors import UsageError


@dataclass
class Part:
    """One line of the final summary."""

    name: str
    """What ran."""
    status: str
    """``passed``, ``failed`` or ``error``."""
    where: Path | None
    """Its output folder."""
    detail: str = ""
    """One line (error or counts)."""
    seconds: float = 0.0
    """Wall time."""


@click.command()
@click.option("--instance", default="gpu_1x_h100_sxm5", show_default=True, help="Lambda instance type.")
@click.option("--kubeconfig", type=click.Path(path_type=Path),
              help="Run against a real cluster instead of twins (the suite's destructive guard applies).")
@click.option("--context", help="Real cluster: kubeconfig context.")
@click.option("--outputs", type=click.Path(path_type=Path), default=Path("outputs"), show_default=True,
              help="Root of the outputs tree.")
@click.option("--stress-pods", type=int, default=10, show_default=True, help="Stress notebook: pods (N).")
@click.option("--stress-iterations", type=int, default=2, show_default=True, help="Stress notebook: iterations (M).")
@click.option("--skip-checks", is_flag=True, help="Only the notebooks and the report.")
@click.option("--run-id", help="Run id (default: a new one).")
def command(instance: str, kubeconfig: Path | None, context: str | None, outputs: Path, stress_pods: int,
            stress_iterations: int, skip_checks: bool, run_id: str | None) -> None:
    """Check suite + notebooks (imex_channels, dynmig_fragmentation, stress_timing) + report."""
    from checks.catalog import load_instance
    from checks.kube.labels import check_run_id, new_run_id
    from checks.lab.notebook_run import LabRequest, prepare, run_notebook
    from checks.lab.report import build_report
    from checks.runner import preflight

    outputs = preflight.output_dir(outputs, where="--outputs")
    inst = load_instance(instance).instance_type
    rid = check_run_id(run_id, where="--run-id") if run_id else new_run_id()
    if context and kubeconfig is None:
        raise UsageError("--context needs --kubeconfig", where="--context")
    for flag, val in (("--stress-pods", stress_pods), ("--stress-iterations", stress_iterations)):
        if val < 1:
            raise UsageError("must be at least 1", where=flag)
    stress_params = {"pods": stress_pods, "iterations": stress_iterations}
    requests = [LabRequest("imex_channels", inst, {}, outputs=outputs, run_id=rid),
                LabRequest("dynmig_fragmentation", inst, {}, kubeconfig=kubeconfig, context=context,
                           outputs=outputs, run_id=rid),
                LabRequest("stress_timing", inst, stress_params, kubeconfig=kubeconfig, context=context,
                           outputs=outputs, run_id=rid)]
    for req in requests:
        prepare(req)  # parameter problems stop the job before anything starts
    if kubeconfig is not None:
        preflight.cluster(kubeconfig, context, yes=True)  # the suite's own guard still applies to --context
    target = f"real cluster {kubeconfig}" if kubeconfig else f"twins of {inst}"
    click.echo(f"dra-lab run {rid}: {inst} against {target}; outputs under {outputs}/", err=True)
    parts: list[Part] = []
    if not skip_checks:
        parts.append(_checks(inst, rid, outputs, kubeconfig, context, stress_pods, stress_iterations))
    for req in requests:
        t0 = time.monotonic()
        click.echo(f"dra-lab run: notebook {req.notebook} ...", err=True)
        try:
            res = run_notebook(req)
        except UsageError:
            raise
        except Exception as exc:  # a twin that fails to boot must not cost the other parts
            parts.append(Part(f"notebook {req.notebook}", "error", None, " ".join(str(exc).split())[:300],
                              time.monotonic() - t0))
            continue
        metrics = res.results.get("metrics") or {}
        detail = res.error or ("not applicable to this GPU" if metrics.get("applicable") is False else "")
        parts.append(Part(f"notebook {req.notebook}", res.status, res.output_dir, detail, time.monotonic() - t0))
    t0 = time.monotonic()
    try:
        rep = build_report(outputs)
        parts.append(Part("report", "passed", rep.folder, f"{rep.runs} run(s) aggregated", time.monotonic() - t0))
    except Exception as exc:
        parts.append(Part("report", "error", outputs / "report", " ".join(str(exc).split())[:300]))
    click.echo("")
    click.echo(f"dra-lab run {rid} ({inst}):")
    for p in parts:
        line = f"  {p.status:7} {p.name:32} {p.seconds:6.1f}s  {p.where or ''}"
        click.echo(line + (f"\n          {p.detail}" if p.detail else ""))
    failed = [p for p in parts if p.status != "passed"]
    click.echo(f"{'FAILED: ' + ', '.join(p.name for p in failed) if failed else 'all parts passed'}; "
               f"report: {outputs / 'report' / 'report.md'}")
    sys.exit(1 if failed else 0)


def _checks(inst: str, rid: str, outputs: Path, kubeconfig: Path | None, context: str | None, pods: int,
            iterations: int) -> Part:
    """The check suite in-process (pytest), against a twin of ``inst`` or the given cluster."""
    from checks.runner.check import CheckRun, run_checks
    from checks.runner.targets import open_target

    out = outputs / inst / "checks" / rid
    t0 = time.monotonic()
    click.echo(f"dra-lab run: check suite -> {out}", err=True)
    run = CheckRun(run_id=rid, output_dir=out, verbose=False,
                   options={"stress_pods": pods, "stress_iterations": iterations})
    try:
        with open_target(kubeconfig=kubeconfig, context=context, twin=None if kubeconfig else inst,
                         instance=inst) as target:
            code = run_checks(run, target, inst)
    except Exception as exc:
        return Part("check suite", "error", out, " ".join(str(exc).split())[:300], time.monotonic() - t0)
    status = "passed" if code == 0 else "failed"
    return Part("check suite", status, out, "" if code == 0 else f"pytest exit status {code} (see junit.xml)",
                time.monotonic() - t0)
