"""Execute a registered notebook with papermill against a target; keep the executed notebook as the record.

Order matters: parameters are validated first (nothing starts on a typo), then the target opens (a twin
boots here, in this process, and the notebook's kernel reaches it over HTTPS through the kubeconfig path),
then papermill runs. Papermill writes the executed notebook after every cell, so a failing cell still
leaves a complete record; the runner turns the failure into one line and a ``failed`` status. Finally every
output file is scanned for the target's credentials; a hit is redacted and fails the run.

Output layout: ``<outputs>/<instance>/<notebook>/<run-id>/`` with ``<notebook>.ipynb``, ``results.json``
(the notebook's own results plus a ``run`` block written here), CSV tables and PNG plots.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checks.catalog import load_instance
from checks.errors import UsageError
from checks.lab import secrets as S
from checks.lab.params import NotebookSpec, instance_facts, notebook, validate
from checks.runner.targets import Target, open_target

if TYPE_CHECKING:
    from checks.kube.lease import RunLock
from checks.twin.options import TwinOptions

KERNEL = "python3"
"""Kernel papermill starts (the project's venv registers it)."""


@dataclass
class LabRequest:
    """One notebook execution."""

    notebook: str
    """Registered notebook name (see :data:`checks.lab.params.NOTEBOOKS`)."""
    instance: str
    """Lambda instance type whose params fill the notebook's parameters."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """``-p`` values (already parsed as YAML scalars)."""
    kubeconfig: Path | None = None
    """Real cluster: kubeconfig path. None = a twin of ``instance`` (cluster notebooks only)."""
    context: str | None = None
    """Real cluster: kubeconfig context."""
    outputs: Path = Path("outputs")
    """Root of all outputs."""
    run_id: str | None = None
    """Run id (default: a new one)."""
    twin_options: TwinOptions | None = None
    """Override the notebook's own twin options."""
    cell_timeout_s: int = 600
    """Papermill per-cell execution timeout."""


@dataclass
class LabResult:
    """What happened."""

    notebook: str
    """Notebook name."""
    instance: str
    """Instance type."""
    run_id: str
    """Run id."""
    output_dir: Path
    """The run's folder."""
    executed: Path
    """The executed notebook (present also after a failing cell)."""
    status: str
    """``passed`` or ``failed``."""
    error: str = ""
    """One line when failed."""
    results: dict[str, Any] = field(default_factory=dict)
    """The content of results.json."""
    target: str = ""
    """Human description of the target ('' for host notebooks)."""

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def prepare(req: LabRequest) -> tuple[NotebookSpec, dict[str, Any], str]:
    """Validate everything that can be validated without a cluster: (spec, parameters, run id)."""
    from checks.kube.labels import check_run_id, new_run_id

    spec = notebook(req.notebook)
    inst = load_instance(req.instance)
    params = validate(spec, instance_facts(inst), req.overrides)
    if not spec.needs_cluster and req.kubeconfig is not None:
        raise UsageError(f"notebook {spec.name} reads this host, not a cluster", where="--kubeconfig")
    if not spec.path.is_file():
        raise UsageError(f"notebook file {spec.path} is missing", where=spec.name)
    run_id = check_run_id(req.run_id, where="--run-id") if req.run_id else new_run_id()
    return spec, params, run_id


@contextlib.contextmanager
def _target(spec: NotebookSpec, req: LabRequest, instance: str) -> Iterator[Target | None]:
    if not spec.needs_cluster:
        yield None
        return
    opts = req.twin_options or spec.twin_options(load_instance(instance))
    with open_target(kubeconfig=req.kubeconfig, context=req.context,
                     twin=None if req.kubeconfig is not None else instance, instance=instance,
                     twin_options=opts) as target:
        yield target


def _cluster_lock(target: Target | None, run_id: str) -> RunLock | None:
    """Hold the cluster lock while a notebook installs the driver on a cluster given by kubeconfig (a twin the
    runner started is its own); LockHeld (one line, exit 2) when another run holds it."""
    if target is None or target.is_twin:
        return None
    from checks.kube.client import ClusterClient, ClusterTarget
    from checks.kube.lease import RunLock

    client = ClusterClient(ClusterTarget(target.kubeconfig, target.context))
    lock = RunLock(client, run_id)
    try:
        lock.acquire()
    except BaseException:
        client.close()
        raise
    return lock


def _failure_line(exc: BaseException) -> str:
    """One line for a failed execution: the cell and the notebook's own exception."""
    ename = getattr(exc, "ename", None)
    if ename is not None:
        count = getattr(exc, "exec_count", None)
        evalue = " ".join(str(getattr(exc, "evalue", "")).split())
        return f"cell {count}: {ename}: {evalue}"[:400]
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:400]


def run_notebook(req: LabRequest) -> LabResult:
    """Validate, open the target, execute, scan for secrets, write results.json; never raises for a failing cell."""
    import papermill

    spec, params, run_id = prepare(req)
    instance = str(params.get("instance_type") or load_instance(req.instance).instance_type)
    out = (req.outputs / instance / spec.name / run_id).resolve()
    out.mkdir(parents=True, exist_ok=True)
    executed = out / f"{spec.name}.ipynb"
    params["output_dir"] = str(out)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    status, error, target_desc = "passed", "", ""
    secrets: list[str] = S.env_secrets()
    with _target(spec, req, instance) as target:
        if target is not None:
            target_desc = target.description
            secrets += S.kubeconfig_secrets(target.kubeconfig)
            params.update(kubeconfig=str(target.kubeconfig), context=target.context or "", run_id=run_id)
            if not params.get("chart") and target.chart:
                params["chart"] = target.chart
            params = validate(spec, {}, params)  # what the runner filled in obeys the schema too
            params["output_dir"] = str(out)
        lock = _cluster_lock(target, run_id)  # a real cluster: one dra-lab run at a time (checks.kube.lease)
        try:
            papermill.execute_notebook(str(spec.path), str(executed), parameters=params, kernel_name=KERNEL,
                                       cwd=str(out), progress_bar=False, log_output=False,
                                       execution_timeout=req.cell_timeout_s)
        except Exception as exc:  # papermill's execution error, a dead kernel, a timeout: all are failures
            status, error = "failed", _failure_line(exc)
        finally:
            if lock is not None:
                lock.release()
                lock.cluster.close()
    leaked = S.scan(out, secrets)
    for path in leaked:
        S.redact(path, secrets)
    if leaked:
        status = "failed"
        error = (error + "; " if error else "") + \
            f"credentials found (and redacted) in {', '.join(p.name for p in leaked)}"
    results_path = out / "results.json"
    results: dict[str, Any] = {}
    if results_path.is_file():
        with contextlib.suppress(ValueError):
            results = json.loads(results_path.read_text())
    if not results and status == "passed":
        status, error = "failed", "the notebook wrote no results.json"
    results.setdefault("notebook", spec.name)
    results.setdefault("instance_type", instance)
    results["run"] = {"run_id": run_id, "status": status, "error": error, "target": target_desc,
                      "started": started.isoformat(timespec="seconds"),
                      "duration_s": round(time.monotonic() - t0, 2), "executed": executed.name,
                      "parameters": {k: v for k, v in params.items() if k != "output_dir"}}
    results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return LabResult(spec.name, instance, run_id, out, executed, status, error, results, target_desc)


__all__ = ["KERNEL", "LabRequest", "LabResult", "prepare", "run_notebook"]
