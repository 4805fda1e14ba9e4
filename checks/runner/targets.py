"""Targets: the cluster a run is pointed at — a real kubeconfig or an embedded twin — behind one interface.

Everything downstream (the suite, the notebooks) receives only a kubeconfig path, a context and the instance
type; whether a twin answers is known here and nowhere below (the suite never imports the twin).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from checks.catalog import load_instance
from checks.errors import UsageError
from checks.twin.options import TwinOptions


@dataclass
class Target:
    """A cluster to run against."""

    kubeconfig: Path
    """kubeconfig path (written by the twin for twins)."""
    context: str | None
    """Context in that kubeconfig."""
    instance: str
    """Lambda instance type."""
    chart: str | None = None
    """Chart reference to install the driver from; None = the real upstream chart."""
    last_stable_chart: str | None = None
    """Baseline chart for upgrade/downgrade checks; None = the published last-stable chart."""
    last_stable_version: str | None = None
    """Its version."""
    is_twin: bool = False
    """Only for reporting and to acknowledge the destructive guard: the twin is ours to change."""
    description: str = ""
    """One line for humans ("twin of gpu_1x_h100_sxm5 at https://127.0.0.1:port")."""
    extra: dict[str, str] = field(default_factory=dict)
    """Free-form facts for reports (server version, twin options)."""


def parse_mig_enabled(text: str | None, gpu_count: int) -> tuple[int, ...]:
    """``all``, ``none`` or comma-separated GPU indexes → indexes; UsageError on nonsense."""
    if not text or text == "none":
        return ()
    if text == "all":
        return tuple(range(gpu_count))
    try:
        idx = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise UsageError(f"expected 'all', 'none' or GPU indexes like 0,1; got {text!r}",
                         where="--twin-mig") from None
    bad = [i for i in idx if i < 0 or i >= gpu_count]
    if bad:
        raise UsageError(f"GPU index {bad[0]} out of range (the instance has {gpu_count} GPUs)", where="--twin-mig")
    return idx


@contextlib.contextmanager
def open_target(*, kubeconfig: Path | None = None, context: str | None = None, twin: str | None = None,
                instance: str | None = None, run_dir: Path | None = None,
                twin_options: TwinOptions | None = None) -> Iterator[Target]:
    """Yield a :class:`Target`; a twin is started here and stopped on exit (also on Ctrl-C/SIGTERM)."""
    if kubeconfig is not None and twin is not None:
        raise UsageError("give either --kubeconfig (a real cluster) or --twin INSTANCE, not both", where="--twin")
    if kubeconfig is not None:
        if not kubeconfig.expanduser().is_file():
            raise UsageError("kubeconfig file not found", where=str(kubeconfig))
        inst = load_instance(instance or "gpu_1x_a10").instance_type
        yield Target(kubeconfig.expanduser(), context, inst, description=f"cluster {kubeconfig} "
                     f"(context {context or '<current>'}), instance {inst}")
        return
    inst_obj = load_instance(twin or instance or "gpu_1x_a10")
    from checks.twin.lambda_twin import Twin
    from checks.twin.nvidia import LAST_STABLE_VERSION, chart_at_version, chart_path

    opts = twin_options or TwinOptions()
    tw = Twin(inst_obj.instance_type, run_dir=run_dir, options=opts)
    tw.start()
    try:
        baseline = chart_at_version(Path(tw.run_dir), LAST_STABLE_VERSION)
        yield Target(Path(tw.kubeconfig), None, inst_obj.instance_type, chart=str(chart_path()), is_twin=True,
                     last_stable_chart=str(baseline), last_stable_version=LAST_STABLE_VERSION,
                     description=f"twin of {inst_obj.instance_type} at {tw.url}",
                     extra={"kube_version": opts.kube_version,
                            "mig_enabled": ",".join(map(str, opts.mig_enabled)) or "none"})
    finally:
        tw.stop()
