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
@click.option("--release", is_flag=True,
              help="Also uninstall the suite's own driver release (dra-lab-driver, only if dra-lab installed it) "
                   "and the driver namespace if a run created it.")
@click.option("--force", is_flag=True,
              help="Delete pods still terminating after half the timeout with grace period 0 (pods whose node or "
                   "GPU plugin is gone get that anyway).")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds the whole clean may take.")
def command(run_id: str | None, kubeconfig: Path | None, context: str | None, twin_kubeconfig: Path | None,
            yes: bool, release: bool, force: bool, timeout: float) -> None:
    from checks.runner import preflight
    from checks.scenarios.driverconfig import remove_release

    if run_id is not None:
        check_run_id(run_id, where="--run-id")
    if (kubeconfig is None) == (twin_kubeconfig is None):
        raise UsageError("give exactly one of --kubeconfig or --twin-kubeconfig", where="clean")
    if timeout <= 0:
        raise UsageError("must be positive", where="--timeout")
    chosen = kubeconfig if kubeconfig is not None else twin_kubeconfig
    assert chosen is not None
    preflight.cluster(chosen, context, yes=yes or twin_kubeconfig is not None, destructive="clean")
    target = ClusterTarget(chosen, context)
    with ClusterClient(target) as cluster:
        click.echo(f"cleaning objects with {run_selector(run_id)} on {target.describe()}")
        from checks.kube.lease import LOCK_NAME, LOCK_NAMESPACE, remove_stale

        report = cleanup(cluster, run_id, timeout=timeout, force=force)
        released: list[str] = []
        stale = remove_stale(cluster, run_id)
        if stale:
            released.append(f"stale lock lease {LOCK_NAMESPACE}/{LOCK_NAME} of run {stale}")
        if release:
            try:
                released += remove_release(cluster, timeout_s=max(30.0, timeout / 2))
            except Exception as exc:
                report.errors.append(f"release: {' '.join(str(exc).split())[:300]}")
    for plural, names in report.removed.items():
        for name in names:
            click.echo(f"deleted {plural}/{name}")
    for line in report.forced:
        click.echo(f"forced (grace period 0): pods/{line}")
    for line in released:
        click.echo(f"removed {line}")
    click.echo(f"{report.count} object(s) removed" + (f", {len(report.forced)} forced" if report.forced else "")
               + (f", {len(released)} release item(s) removed" if release else ""))
    if not report.complete:
        for line in report.left:
            click.echo(f"still there: {line}", err=True)
        for line in report.errors:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(1)
