"""``dra-lab clean``: remove what earlier check runs left behind, by label — never anything unlabelled.

Against a real cluster it is destructive, so it runs only when the context is named (``--context``) or
``--yes`` is given: a bare ``--kubeconfig`` with whatever the file's current context happens to be is too easy
to point at the wrong cluster. A twin's kubeconfig (``--twin-kubeconfig``) needs no such guard.
"""

from __future__ import annotations

from pathlib import Path

import click

from checks.errors import UsageError
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.labels import check_run_id, cleanup, run_selector


@click.command(help="Delete objects labelled by earlier runs (one run with --run-id, else every run).")
@click.option("--run-id", default=None, help="Only this run's objects (e.g. r20261126-175800-ab12).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig of a real cluster.")
@click.option("--context", default=None, help="Context in the kubeconfig (required on a real cluster unless --yes).")
@click.option("--twin-kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig written by `dra-lab twin up` (no confirmation needed).")
@click.option("--yes", is_flag=True, help="Allow cleaning the kubeconfig's current context without naming it.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for the deleted objects to be gone.")
def command(run_id: str | None, kubeconfig: Path | None, context: str | None, twin_kubeconfig: Path | None,
            yes: bool, timeout: float) -> None:
    if run_id is not None:
        check_run_id(run_id, where="--run-id")
    if (kubeconfig is None) == (twin_kubeconfig is None):
        raise UsageError("give exactly one of --kubeconfig or --twin-kubeconfig", where="clean")
    if kubeconfig is not None and context is None and not yes:
        raise UsageError("refusing to clean a real cluster without --context NAME or --yes", where="--context")
    chosen = kubeconfig if kubeconfig is not None else twin_kubeconfig
    assert chosen is not None
    target = ClusterTarget(chosen, context)
    with ClusterClient(target) as cluster:
        click.echo(f"cleaning objects with {run_selector(run_id)} on {target.describe()}")
        report = cleanup(cluster, run_id, timeout=timeout)
    for plural, names in report.removed.items():
        for name in names:
            click.echo(f"deleted {plural}/{name}")
    click.echo(f"{report.count} object(s) removed")
    if report.errors:
        for line in report.errors:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(1)
