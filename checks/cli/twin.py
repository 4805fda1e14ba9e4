"""``dra-lab twin up``: run an embedded twin until Ctrl-C/SIGTERM and say how to point kubectl at it."""

from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import click

from checks.errors import UsageError


@click.group(name="twin")
def command() -> None:
    """Run an embedded twin cluster of a Lambda instance type."""


@command.command(name="up")
@click.option("--instance", default="gpu_1x_a10", show_default=True, help="Lambda instance type (or alias).")
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="API server port (0 = a free one).")
@click.option("--kubeconfig", "kubeconfig", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the kubeconfig here.")
@click.option("--kube-version", default="1.36", show_default=True, help="Kubernetes minor the twin reports.")
def up(instance: str, port: int, kubeconfig: Path | None, kube_version: str) -> None:
    """Start the twin and block until interrupted; every container and thread stops on exit."""
    from checks.twin.lambda_twin import Twin

    try:
        twin = Twin(instance, kube_version=kube_version, port=port)
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise UsageError(f"unknown instance type {instance!r} ({exc})", where="--instance") from exc
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        with twin:
            path = twin.kubeconfig
            if kubeconfig is not None:
                kubeconfig.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, kubeconfig)
                kubeconfig.chmod(0o600)
                path = kubeconfig
            click.echo(f"twin of {twin.instance.instance_type} serving at {twin.url} "
                       f"(node {', '.join(twin.node_names)})")
            click.echo("point kubectl at it with:")
            click.echo(f"  export KUBECONFIG={path}")
            click.echo("press Ctrl-C to stop")
            try:
                while not done.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            click.echo("stopping the twin")
    finally:
        signal.signal(signal.SIGTERM, old)
