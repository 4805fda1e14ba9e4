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
@click.option("--mig-enabled", "mig", default="none", show_default=True, metavar="all|none|0,1,...",
              help="GPUs whose MIG mode is on at boot (Ampere needs it before DynamicMIG can partition them).")
@click.option("--feature-gates", "gates", default="", metavar="A=true,B=false",
              help="DRA feature gates over the Kubernetes version's defaults (kubeadm featureGates); the scheduler "
                   "honours them and the kube-apiserver pod shows them.")
@click.option("--driver", is_flag=True, help="Install the NVIDIA DRA driver (real helm) once the twin serves.")
@click.option("--chart", default="", metavar="PATH|REF",
              help="Chart for --driver: a directory (e.g. an upstream checkout's deployments/helm/"
                   "dra-driver-nvidia-gpu) or a chart reference; default: the chart shipped with dra-lab.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Chart value for --driver (repeatable; dotted keys, YAML scalars as helm --set parses them).")
def up(instance: str, port: int, kubeconfig: Path | None, kube_version: str, mig: str, gates: str, driver: bool,
       chart: str, sets: tuple[str, ...]) -> None:
    """Start the twin and block until interrupted; every container and thread stops on exit."""
    from checks.catalog import load_instance
    from checks.runner.targets import parse_mig_enabled
    from checks.twin.lambda_twin import Twin, TwinOptions

    if (chart or sets) and not driver:
        raise UsageError("--chart and --set only apply with --driver", where="--driver")
    values = [parse_set(s) for s in sets]

    try:
        gpus = load_instance(instance).gpu.count
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise UsageError(f"unknown instance type {instance!r} ({exc})", where="--instance") from exc
    try:
        mig_enabled = parse_mig_enabled(mig, gpus)
    except UsageError as exc:
        raise UsageError(exc.message, where="--mig-enabled") from None
    twin = Twin(instance, options=TwinOptions(kube_version=kube_version, port=port, mig_enabled=mig_enabled,
                                              feature_gates=parse_gates(gates)))
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
            if driver:
                click.echo(install_driver(twin, chart, values))
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


def parse_set(text: str) -> tuple[str, Any]:
    """``a.b=c`` → ``("a.b", "c")``; the value is a YAML scalar as helm ``--set`` reads it (``true``, ``3``)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set {text!r} is not KEY=VALUE with a dotted KEY", where="--set")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key, value if isinstance(value, str | int | float | bool) or value is None else raw


def install_driver(twin: Any, chart: str, values: list[tuple[str, Any]]) -> str:
    """``helm upgrade --install`` the driver into the running twin (as a person would, real helm) and wait for
    the kubelet plugin to be Ready; returns the line to print."""
    import dataclasses

    from checks.kube.client import ClusterClient, ClusterTarget, ToolFailed
    from checks.scenarios import driverconfig
    from checks.twin.nvidia import chart_path

    ref = chart or str(chart_path())
    if chart and Path(chart).exists() and not (Path(chart) / "Chart.yaml").is_file():
        raise UsageError(f"--chart {chart}: no Chart.yaml there", where="--chart")
    cfg = dataclasses.replace(driverconfig.for_instance(driverconfig.DEFAULT, twin.instance), extra=tuple(values))
    run_dir = Path(twin.run_dir) / "driver-install"
    run_dir.mkdir(parents=True, exist_ok=True)
    with ClusterClient(ClusterTarget(Path(twin.kubeconfig)), run_dir=run_dir) as cluster:
        try:
            status = driverconfig.install_driver(cluster, cfg, chart=ref)
        except ToolFailed as exc:
            raise UsageError(f"installing the driver from {ref} failed: {exc}", where="--driver") from exc
    return (f"driver installed: release {status.name} in {status.namespace} (chart {status.chart}, from {ref}); "
            f"kubelet plugin Ready")


def parse_gates(text: str) -> tuple[tuple[str, bool], ...]:
    """``A=true,B=false`` → ``(("A", True), ("B", False))`` (kube-apiserver's ``--feature-gates`` syntax)."""
    out: list[tuple[str, bool]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or value.lower() not in ("true", "false") or not name:
            raise UsageError(f"feature gate {item!r} is not NAME=true|false", where="--feature-gates")
        out.append((name, value.lower() == "true"))
    return tuple(out)
