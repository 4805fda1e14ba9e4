"""What a person needs to understand a failed check, written to disk while the evidence still exists.

Collected for one check namespace: pods (YAML and a ``kubectl describe``-like summary), ResourceClaims with
their status, the namespace's events in time order, every ResourceSlice, and the driver pods with their logs
(every container, and the previous instance of any container that restarted).

Robust by construction: each collector runs on its own; one that fails (RBAC, a vanished pod, an API hiccup)
writes ``<name>.error.txt`` and the others still run — a partial picture beats none. Secrets are never read,
so they cannot be dumped; ``managedFields`` are dropped as noise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes.client.exceptions import ApiException

from checks.driver import names
from checks.kube.retry import call_with_retry, describe_error
from checks.kube.wait import describe_object, describe_pod, event_sort_key

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

Obj = dict[str, Any]
#: Namespace the driver is installed into by default (reference nvidia-dra-driver.md §1.5).
DEFAULT_DRIVER_NAMESPACE = names.NAMESPACE
#: Most bytes kept per container log (the tail is what matters; a runaway log must not fill the disk).
LOG_LIMIT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class _Ctx:
    cluster: ClusterClient
    namespace: str
    driver_namespace: str
    out_dir: Path


def _raw_list(cluster: ClusterClient, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Obj]:
    def once() -> list[Obj]:
        resp = fn(*args, _preload_content=False, **kwargs)
        try:
            return list(json.loads(resp.data).get("items") or [])
        finally:
            resp.release_conn()

    return call_with_retry(cluster.retry, once, what=f"{getattr(fn, '__name__', 'list')} {args}")


def _clean(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {**obj, "metadata": meta}


def _write(ctx: _Ctx, name: str, text: str) -> Path:
    path = ctx.out_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _yaml(items: list[Obj]) -> str:
    return yaml.safe_dump_all([_clean(i) for i in items], sort_keys=False) if items else "# none\n"


def _events_for(events: list[Obj], kind: str, name: str) -> list[Obj]:
    return [e for e in events
            if (e.get("involvedObject") or {}).get("kind") == kind and (e.get("involvedObject") or {}).get("name")
            == name]


def _event_line(ev: Obj) -> str:
    inv = ev.get("involvedObject") or {}
    count = f" (x{ev['count']})" if (ev.get("count") or 1) > 1 else ""
    return (f"{event_sort_key(ev) or '-'}  {ev.get('type', '')}  {ev.get('reason', '')}  "
            f"{inv.get('kind', '')}/{inv.get('name', '')}: {ev.get('message', '')}{count}")


def _pod_summary(pod: Obj, events: list[Obj]) -> str:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    lines = [f"Pod {pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}",
             f"  node: {spec.get('nodeName') or '<none>'}", f"  summary: {describe_pod(pod)}"]
    for rc in spec.get("resourceClaims") or []:
        lines.append(f"  claim {rc.get('name')}: "
                     f"{rc.get('resourceClaimName') or 'template ' + str(rc.get('resourceClaimTemplateName'))}")
    for rcs in status.get("resourceClaimStatuses") or []:
        lines.append(f"  generated claim {rcs.get('name')} -> {rcs.get('resourceClaimName')}")
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        lines.append(f"  container {cs.get('name')}: ready={cs.get('ready')} restarts={cs.get('restartCount', 0)} "
                     f"state={json.dumps(cs.get('state') or {}, sort_keys=True)}")
    mine = sorted(_events_for(events, "Pod", str(pod["metadata"].get("name"))), key=event_sort_key)
    lines.append("  events:" if mine else "  events: <none>")
    lines += [f"    {_event_line(e)}" for e in mine]
    return "\n".join(lines)


def _collect_events(ctx: _Ctx) -> list[Path]:
    events = sorted(_raw_list(ctx.cluster, ctx.cluster.core.list_namespaced_event, ctx.namespace),
                    key=event_sort_key)
    return [_write(ctx, "events.txt", "\n".join(_event_line(e) for e in events) + "\n" if events else "# none\n"),
            _write(ctx, "events.yaml", _yaml(events))]


def _collect_pods(ctx: _Ctx) -> list[Path]:
    pods = _raw_list(ctx.cluster, ctx.cluster.core.list_namespaced_pod, ctx.namespace)
    try:
        events = _raw_list(ctx.cluster, ctx.cluster.core.list_namespaced_event, ctx.namespace)
    except Exception:
        events = []  # the summary is still worth having without events; events.txt reports the error
    summary = "\n\n".join(_pod_summary(p, events) for p in pods) + "\n" if pods else "# none\n"
    return [_write(ctx, "pods.yaml", _yaml(pods)), _write(ctx, "pods.txt", summary)]


def _collect_claims(ctx: _Ctx) -> list[Path]:
    claims = _raw_list(ctx.cluster, ctx.cluster.resource.list_namespaced_resource_claim, ctx.namespace)
    lines = []
    for claim in claims:
        results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
        devices = ", ".join(f"{r.get('driver')}/{r.get('pool')}/{r.get('device')}" for r in results)
        lines.append(f"{describe_object({**claim, 'kind': 'ResourceClaim'})}"
                     + (f"; devices {devices}" if devices else ""))
    text = "\n".join(lines) + "\n" if lines else "# none\n"
    return [_write(ctx, "resourceclaims.yaml", _yaml(claims)), _write(ctx, "resourceclaims.txt", text)]


def _collect_slices(ctx: _Ctx) -> list[Path]:
    slices = _raw_list(ctx.cluster, ctx.cluster.resource.list_resource_slice)
    return [_write(ctx, "resourceslices.yaml", _yaml(slices))]


def _read_log(ctx: _Ctx, pod: str, container: str, previous: bool) -> str:
    resp: Any = ctx.cluster.core.read_namespaced_pod_log(
        pod, ctx.driver_namespace, container=container, previous=previous, limit_bytes=LOG_LIMIT_BYTES,
        timestamps=True, _preload_content=False)
    try:
        return bytes(resp.data).decode("utf-8", errors="replace")
    finally:
        resp.release_conn()


def _collect_driver(ctx: _Ctx) -> list[Path]:
    pods = _raw_list(ctx.cluster, ctx.cluster.core.list_namespaced_pod, ctx.driver_namespace)
    written = [_write(ctx, "driver/pods.yaml", _yaml(pods))]
    for pod in pods:
        name = str(pod["metadata"]["name"])
        statuses = {cs.get("name"): cs for cs in ((pod.get("status") or {}).get("initContainerStatuses") or [])
                    + ((pod.get("status") or {}).get("containerStatuses") or [])}
        containers = [c["name"] for c in ((pod.get("spec") or {}).get("initContainers") or [])
                      + ((pod.get("spec") or {}).get("containers") or [])]
        for container in containers:
            wanted = [False] + ([True] if int((statuses.get(container) or {}).get("restartCount") or 0) > 0
                                else [])
            for previous in wanted:
                suffix = ".previous.log" if previous else ".log"
                rel = f"driver/logs/{name}/{container}{suffix}"
                try:
                    written.append(_write(ctx, rel, _read_log(ctx, name, container, previous)))
                except (ApiException, OSError) as exc:  # e.g. a container that never started
                    written.append(_write(ctx, rel + ".error.txt", f"{describe_error(exc)}\n"))
    return written


#: name -> collector; each writes its own files under the output folder.
COLLECTORS: dict[str, Callable[[_Ctx], list[Path]]] = {
    "pods": _collect_pods,
    "resourceclaims": _collect_claims,
    "events": _collect_events,
    "resourceslices": _collect_slices,
    "driver": _collect_driver,
}


def collect(cluster: ClusterClient, namespace: str, out_dir: Path, *,
            driver_namespace: str = DEFAULT_DRIVER_NAMESPACE) -> list[Path]:
    """Write the evidence for ``namespace`` under ``out_dir``; return every file written (error notes too)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(cluster, namespace, driver_namespace, out_dir)
    written: list[Path] = []
    for name, collector in COLLECTORS.items():
        try:
            written += collector(ctx)
        except Exception as exc:  # one broken collector must not cost the others
            written.append(_write(ctx, f"{name}.error.txt", f"collecting {name} failed: {describe_error(exc)}\n"))
    return written


