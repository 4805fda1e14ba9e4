"""``dra-lab lab``: run a registered notebook with papermill (``lab run``), list them (``lab list``), and
aggregate every run's results into one report (``lab report``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from checks.errors import UsageError


@click.group()
def command() -> None:
    """Run papermill notebooks and build reports."""


@command.command("list")
def list_() -> None:
    """The registered notebooks and their parameters."""
    from checks.lab.params import NOTEBOOKS

    for spec in NOTEBOOKS.values():
        where = "cluster" if spec.needs_cluster else "host"
        click.echo(f"{spec.name} ({where}): {spec.summary}")
        click.echo(f"    parameters: {', '.join(sorted(spec.schema.model_fields))}")


@command.command("run")
@click.argument("notebook")
@click.option("--instance", required=True, help="Lambda instance type (parameters from params/<TYPE>.yaml).")
@click.option("-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Override a parameter; the value is a YAML scalar (10, true, [1, 5]). Repeatable.")
@click.option("--kubeconfig", type=click.Path(path_type=Path), help="Real cluster: its kubeconfig path.")
@click.option("--context", help="Real cluster: the kubeconfig context.")
@click.option("--twin", is_flag=True, help="Run against an embedded twin of --instance (the default for "
              "cluster notebooks without --kubeconfig).")
@click.option("--outputs", type=click.Path(path_type=Path), default=Path("outputs"), show_default=True,
              help="Root of the outputs tree.")
@click.option("--run-id", help="Run id (default: a new one).")
def run(notebook: str, instance: str, params: tuple[str, ...], kubeconfig: Path | None, context: str | None,
        twin: bool, outputs: Path, run_id: str | None) -> None:
    """Execute NOTEBOOK; output under OUTPUTS/<instance>/<notebook>/<run-id>/."""
    from checks.lab.notebook_run import LabRequest, prepare, run_notebook
    from checks.lab.params import parse_overrides

    if twin and kubeconfig is not None:
        raise UsageError("give either --kubeconfig (a real cluster) or --twin, not both", where="--twin")
    if context and kubeconfig is None:
        raise UsageError("--context needs --kubeconfig", where="--context")
    req = LabRequest(notebook, instance, parse_overrides(params), kubeconfig=kubeconfig, context=context,
                     outputs=outputs, run_id=run_id)
    prepare(req)  # every parameter problem surfaces here, before a twin or kernel starts
    res = run_notebook(req)
    click.echo(f"dra-lab lab: {res.notebook} on {res.instance} {res.status}"
               + (f" ({res.target})" if res.target else "") + f"; outputs in {res.output_dir}")
    if not res.ok:
        click.echo(f"dra-lab lab: {res.notebook} failed: {res.error}; executed notebook: {res.executed}", err=True)
        sys.exit(1)


@command.command("report")
@click.option("--outputs", type=click.Path(path_type=Path), default=Path("outputs"), show_default=True,
              help="Root of the outputs tree.")
def report(outputs: Path) -> None:
    """Aggregate every OUTPUTS/*/*/*/results.json into OUTPUTS/report/ (CSV, Markdown, PNG)."""
    from checks.lab.report import build_report

    if not outputs.is_dir():
        raise UsageError("no such folder", where=str(outputs))
    rep = build_report(outputs)
    click.echo(f"dra-lab lab report: {rep.runs} run(s) aggregated into {rep.folder}")
    for f in rep.files:
        click.echo(f"  {f}")
