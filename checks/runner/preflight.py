"""What a run checks before it starts anything: every bad input is one line and exit 2, within seconds.

Each check here used to surface much later and much louder (issue 14, item 6): a garbage kubeconfig as one
parser trace per check, an unreachable server as 18 s of retries and a pytest error block, ``--output`` under
a regular file as a traceback, ``-m no_such_marker`` as pytest's exit 5 after a twin had been started. The
commands call these first, in this order: outputs, markers, cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from checks.errors import UsageError
from checks.kube.client import ClusterClient, ClusterTarget, ServerVersion, check_kubeconfig

#: Seconds the reachability probe may take (connect + read) before the run is refused.
PING_TIMEOUT_S = 5.0


def output_dir(path: Path, *, where: str = "--output") -> Path:
    """``path`` if it is, or can become, a folder: UsageError when it or a parent is a regular file."""
    p = path.expanduser()
    for candidate in (p, *p.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is" if candidate == p else f"is under {candidate}, which is"
                raise UsageError(f"{p} {what} a file, not a folder", where=where)
            break
    return p


def marker_names() -> frozenset[str]:
    """The markers ``-m`` may name: the suite's tags (the plugin's registry) and its own two markers."""
    from checks.suite.plugin import UPSTREAM_TAGS

    return frozenset(UPSTREAM_TAGS) | {"needs", "driver"}


def markers(expression: str | None, *, where: str = "-m") -> None:
    """UsageError unless ``expression`` is a pytest marker expression over known markers only.

    pytest itself accepts any name (an unknown one just selects nothing, exit 5) — after the twin has started.
    """
    if not expression:
        return
    from _pytest.mark.expression import Expression

    try:
        compiled = Expression.compile(expression)
    except SyntaxError as exc:
        raise UsageError(f"not a marker expression: {exc.msg}", where=where) from None
    known = marker_names()
    used: list[str] = []

    def record(name: str, **_kwargs: object) -> bool:
        used.append(name)
        return False

    compiled.evaluate(record)  # type: ignore[arg-type]
    unknown = sorted(set(used) - known)
    if unknown:
        raise UsageError(f"unknown marker {unknown[0]!r} (known: {', '.join(sorted(known))})", where=where)


def cluster(kubeconfig: Path, context: str | None, *, yes: bool, destructive: str = "run against",
            run: RunGate | None = None) -> ServerVersion:
    """UsageError unless the kubeconfig is valid, the context is named (or ``yes``) and the server answers;
    with ``run``, also unless the cluster is free for that run (see :class:`RunGate`)."""
    path = kubeconfig.expanduser()
    check_kubeconfig(path, context)
    if context is None and not yes:
        raise UsageError(f"refusing to {destructive} a cluster whose context was not named: pass --context NAME "
                         "or --yes", where="--context")
    with ClusterClient(ClusterTarget(path, context)) as client:
        version = client.ping(PING_TIMEOUT_S)
        if run is not None:
            run.check(client)
        return version


@dataclass(frozen=True)
class RunGate:
    """What must be true of a cluster before a run that installs the driver starts (read-only checks).

    The suite's plugin takes the lock and handles leftovers for real once pytest runs; these are the same
    checks made before pytest (and a twin, and the report machinery) start, so the refusal is one line.
    """

    run_id: str
    """The run about to start."""
    lock_timeout_s: float = 0.0
    """When positive the run will wait for the lock: no refusal here."""
    clean_leftovers: bool = False
    """The run will clean other runs' leftovers: no refusal here."""

    def check(self, client: ClusterClient) -> None:
        from checks.kube import labels
        from checks.kube.lease import RunLock

        if self.lock_timeout_s > 0:
            return  # the run will wait for the lock; leftovers are judged once it holds it (the plugin)
        RunLock(client, self.run_id).check_free()
        if not self.clean_leftovers:
            labels.refuse_leftovers(labels.find_leftovers(client, self.run_id))


__all__ = ["PING_TIMEOUT_S", "RunGate", "cluster", "marker_names", "markers", "output_dir"]
