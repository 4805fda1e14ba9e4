"""Server-side ``Table`` printing (``meta.k8s.io/v1``), as ``kubectl get`` asks for it (kubernetes-dra.md §8.8).

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever columns the server
returns, so a faithful twin must compute the same cells as the apiserver's printers
(``kubernetes/kubernetes:pkg/printers/internalversion/printers.go``): a pod's STATUS column is derived from
container states exactly as there (``ContainerCreating``, ``CrashLoopBackOff``, ``Init:0/1``, ``Completed``,
``Terminating``...), a claim's STATE is ``allocated,reserved``, ages are ``HumanDuration``. Users and
notebooks read these cells; tests grep them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Obj = dict[str, Any]
Cell = str | int | float | None


@dataclass(frozen=True)
class Column:
    """One ``columnDefinitions`` entry."""

    name: str
    """Header as the server names it (kubectl upper-cases it)."""
    type: str = "string"
    """OpenAPI type of the cells: ``string``, ``integer``, ``date``..."""
    description: str = ""
    """Shown by ``kubectl explain``-like tools; kept short."""
    priority: int = 0
    """0: always shown; 1: only with ``-o wide``."""
    format: str = ""
    """``name`` for the NAME column."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format, "description": self.description,
                "priority": self.priority}


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column("Age", description="CreationTimestamp is a timestamp representing the server time when this "
                                "object was created.")


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: ``5s``, ``3m2s``, ``15m``, ``4h``, ``2d3h``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp as the API serialises it, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def age(value: Any, now: dt.datetime) -> str:
    """``translateTimestampSince``: ``<unknown>`` for an unset time."""
    t = parse_time(value)
    return "<unknown>" if t is None else human_duration((now - t).total_seconds())


def _meta(o: Obj) -> Obj:
    m = o.get("metadata")
    return m if isinstance(m, dict) else {}


def _d(o: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(o, dict):
            return None
        o = o.get(p)
    return o


def _none(values: Iterable[str]) -> str:
    text = ",".join(values)
    return text or "<none>"


# ------------------------------------------------------------------------------------------------ pods


def _running_ready(c: Obj) -> bool:
    return bool(c.get("ready")) and isinstance(_d(c, "state", "running"), dict)


def _terminated_reason(t: Obj, prefix: str = "") -> str:
    if t.get("reason"):
        return prefix + str(t["reason"])
    if t.get("signal"):
        return f"{prefix}Signal:{t['signal']}"
    return f"{prefix}ExitCode:{t.get('exitCode', 0)}"


def pod_status(pod: Obj) -> tuple[str, int, int, dt.datetime | None]:
    """(STATUS, ready containers, restarts, last restart) as kubectl's ``printPod`` computes them."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = spec.get("initContainers") or []
    restartable = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    restarts = 0
    ready = 0
    last_restart: dt.datetime | None = None
    sidecar_restarts = 0
    sidecar_last: dt.datetime | None = None

    def note_restart(c: Obj, sidecar: bool) -> None:
        nonlocal last_restart, sidecar_last
        finished = parse_time(_d(c, "lastState", "terminated", "finishedAt"))
        if finished is None:
            return
        if last_restart is None or finished > last_restart:
            last_restart = finished
        if sidecar and (sidecar_last is None or finished > sidecar_last):
            sidecar_last = finished

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, c in enumerate(init_statuses):
        sidecar = c.get("name") in restartable
        restarts += int(c.get("restartCount") or 0)
        note_restart(c, sidecar)
        if sidecar:
            sidecar_restarts += int(c.get("restartCount") or 0)
            if c.get("started"):
                if c.get("ready"):
                    ready += 1
                continue
        term = _d(c, "state", "terminated")
        waiting = _d(c, "state", "waiting")
        if isinstance(term, dict) and int(term.get("exitCode") or 0) == 0:
            continue
        if isinstance(term, dict):
            reason = _terminated_reason(term, "Init:")
        elif isinstance(waiting, dict) and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = sidecar_last
        has_running = False
        for c in reversed(status.get("containerStatuses") or []):
            restarts += int(c.get("restartCount") or 0)
            note_restart(c, False)
            waiting = _d(c, "state", "waiting")
            term = _d(c, "state", "terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(term, dict):
                reason = _terminated_reason(term)
            elif _running_ready(c):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            has_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            reason = "Running" if has_ready else "NotReady"
    deleting = _meta(pod).get("deletionTimestamp")
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, restarts, last_restart


def _pod_row(pod: Obj, now: dt.datetime) -> list[Cell]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason, ready, restarts, last = pod_status(pod)
    sidecars = sum(1 for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")
    total = len(spec.get("containers") or []) + sidecars
    restart_text = str(restarts)
    if restarts and last is not None:
        restart_text = f"{restarts} ({human_duration((now - last).total_seconds())} ago)"
    ip = (status.get("podIPs") or [{}])[0].get("ip") or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        gate_text = f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    else:
        gate_text = "<none>"
    return [_meta(pod).get("name"), f"{ready}/{total}", reason, restart_text,
            age(_meta(pod).get("creationTimestamp"), now), ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gate_text]


# ------------------------------------------------------------------------------------------- workloads


def _containers_images(template_spec: Obj) -> list[Cell]:
    cs = template_spec.get("containers") or []
    return [",".join(str(c.get("name", "")) for c in cs), ",".join(str(c.get("image", "")) for c in cs)]


def _selector_text(sel: Any) -> str:
    if not isinstance(sel, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _deployment_row(o: Obj, now: dt.datetime) -> list[Cell]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [_meta(o).get("name"), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0),
            age(_meta(o).get("creationTimestamp"), now),
            *_containers_images(_d(spec, "template", "spec") or {}), _selector_text(spec.get("selector"))]


def _replicaset_row(o: Obj, now: dt.datetime) -> list[Cell]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [_meta(o).get("name"), spec.get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(_meta(o).get("creationTimestamp"), now),
            *_containers_images(_d(spec, "template", "spec") or {}), _selector_text(spec.get("selector"))]


def _daemonset_row(o: Obj, now: dt.datetime) -> list[Cell]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    node_selector = _d(spec, "template", "spec", "nodeSelector") or {}
    return [_meta(o).get("name"), st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
            _none(f"{k}={v}" for k, v in sorted(node_selector.items())),
            age(_meta(o).get("creationTimestamp"), now),
            *_containers_images(_d(spec, "template", "spec") or {}), _selector_text(spec.get("selector"))]


def job_status(o: Obj) -> str:
    """The Job STATUS column (1.31+): Complete, Failed, Suspended, FailureTarget, SuccessCriteriaMet, Running."""
    conds = {c.get("type"): c.get("status") for c in _d(o, "status", "conditions") or []}
    for kind in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if conds.get(kind) == "True":
            return "Terminating" if kind in ("FailureTarget", "SuccessCriteriaMet") else kind
    return "Running"


def _job_row(o: Obj, now: dt.datetime) -> list[Cell]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    completions = spec.get("completions")
    if completions is not None:
        comp = f"{st.get('succeeded', 0)}/{completions}"
    else:
        parallelism = spec.get("parallelism") or 0
        comp = f"{st.get('succeeded', 0)}/1 of {parallelism}" if parallelism > 1 else f"{st.get('succeeded', 0)}/1"
    start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    return [_meta(o).get("name"), job_status(o), comp, duration, age(_meta(o).get("creationTimestamp"), now),
            *_containers_images(_d(spec, "template", "spec") or {}), _selector_text(spec.get("selector"))]


# ---------------------------------------------------------------------------------------- core kinds


def _node_row(o: Obj, now: dt.datetime) -> list[Cell]:
    st, labels = o.get("status") or {}, _meta(o).get("labels") or {}
    ready = next((c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    states = ["Ready" if ready == "True" else "NotReady" if ready == "False" else "Unknown"]
    if _d(o, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")
                    and k.split("/", 1)[1]} | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role")
                                                else set()))
    addr = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [_meta(o).get("name"), ",".join(states), _none(roles), age(_meta(o).get("creationTimestamp"), now),
            info.get("kubeletVersion", ""), addr.get("InternalIP") or "<none>", addr.get("ExternalIP") or "<none>",
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event_row(o: Obj, now: dt.datetime) -> list[Cell]:
    inv = o.get("involvedObject") or o.get("regarding") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or _d(o, "series", "lastObservedTime")
    first = o.get("firstTimestamp") or o.get("eventTime")
    count = o.get("count") or _d(o, "series", "count") or 1
    last_seen = age(last, now)
    src = o.get("source") or {}
    source = src.get("component") or o.get("reportingComponent") or ""
    if src.get("host"):
        source = f"{source}, {src['host']}"
    kind = str(inv.get("kind", "")).lower()
    return [last_seen, o.get("type", ""), o.get("reason", ""), f"{kind}/{inv.get('name', '')}",
            inv.get("fieldPath", ""), source, o.get("message") or o.get("note", ""), age(first, now), count,
            _meta(o).get("name")]


def _service_row(o: Obj, now: dt.datetime) -> list[Cell]:
    spec = o.get("spec") or {}
    ports = []
    for p in spec.get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol', 'TCP')}")
    stype = spec.get("type", "ClusterIP")
    external = ",".join(spec.get("externalIPs") or [])
    if stype == "LoadBalancer":
        ingress = _d(o, "status", "loadBalancer", "ingress") or []
        external = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or "<pending>"
    elif stype == "ExternalName":
        external = spec.get("externalName", "")
    return [_meta(o).get("name"), stype, spec.get("clusterIP") or "<none>", external or "<none>",
            _none(ports), age(_meta(o).get("creationTimestamp"), now),
            _none(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))]


def claim_state(o: Obj) -> str:
    """ResourceClaim STATE (kubernetes-dra.md §1): ``deleted``, then ``pending``/``allocated``, ``reserved``."""
    parts = []
    if _meta(o).get("deletionTimestamp"):
        parts.append("deleted")
    if _d(o, "status", "allocation"):
        parts.append("allocated")
    elif not parts:
        parts.append("pending")
    if _d(o, "status", "reservedFor"):
        parts.append("reserved")
    return ",".join(parts)


def _slice_row(o: Obj, now: dt.datetime) -> list[Cell]:
    spec = o.get("spec") or {}
    node = spec.get("nodeName") or ""
    return [_meta(o).get("name"), node, spec.get("driver", ""), _d(spec, "pool", "name") or "",
            age(_meta(o).get("creationTimestamp"), now)]


def _created_at(o: Obj) -> Cell:
    return _meta(o).get("creationTimestamp")


@dataclass(frozen=True)
class Printer:
    """Columns of one kind and the function computing a row's cells (one cell per column, in order)."""

    columns: tuple[Column, ...]
    """All columns, wide ones (priority 1) included."""
    row: Callable[[Obj, dt.datetime], list[Cell]]
    """Cells of one object."""


def _cols(*spec: tuple[str, str] | tuple[str, str, int] | Column) -> tuple[Column, ...]:
    out = []
    for s in spec:
        if isinstance(s, Column):
            out.append(s)
        else:
            out.append(Column(s[0], s[1], priority=s[2] if len(s) > 2 else 0))  # type: ignore[misc]
    return tuple(out)


_WIDE_WORKLOAD = (("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1))


def _simple_row(*cells: Callable[[Obj], Cell]) -> Callable[[Obj, dt.datetime], list[Cell]]:
    def row(o: Obj, now: dt.datetime) -> list[Cell]:
        return [_meta(o).get("name"), *(c(o) for c in cells), age(_meta(o).get("creationTimestamp"), now)]
    return row


def _created_row(o: Obj, now: dt.datetime) -> list[Cell]:
    return [_meta(o).get("name"), _created_at(o)]


PRINTERS: dict[str, Printer] = {
    "Pod": Printer(_cols(NAME, ("Ready", "string"), ("Status", "string"), ("Restarts", "string"), AGE,
                         ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
                         ("Readiness Gates", "string", 1)), _pod_row),
    "Node": Printer(_cols(NAME, ("Status", "string"), ("Roles", "string"), AGE, ("Version", "string"),
                          ("Internal-IP", "string", 1), ("External-IP", "string", 1), ("OS-Image", "string", 1),
                          ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)), _node_row),
    "Namespace": Printer(_cols(NAME, ("Status", "string"), AGE),
                         _simple_row(lambda o: _d(o, "status", "phase") or "")),
    "Deployment": Printer(_cols(NAME, ("Ready", "string"), ("Up-to-date", "integer"), ("Available", "integer"),
                                AGE, *_WIDE_WORKLOAD), _deployment_row),
    "ReplicaSet": Printer(_cols(NAME, ("Desired", "integer"), ("Current", "integer"), ("Ready", "integer"), AGE,
                                *_WIDE_WORKLOAD), _replicaset_row),
    "DaemonSet": Printer(_cols(NAME, ("Desired", "integer"), ("Current", "integer"), ("Ready", "integer"),
                               ("Up-to-date", "integer"), ("Available", "integer"), ("Node Selector", "string"),
                               AGE, *_WIDE_WORKLOAD), _daemonset_row),
    "Job": Printer(_cols(NAME, ("Status", "string"), ("Completions", "string"), ("Duration", "string"), AGE,
                         *_WIDE_WORKLOAD), _job_row),
    "Event": Printer(_cols(("Last Seen", "string"), ("Type", "string"), ("Reason", "string"),
                           ("Object", "string"), ("Subobject", "string", 1), ("Source", "string", 1),
                           ("Message", "string"), ("First Seen", "string", 1), ("Count", "integer", 1),
                           ("Name", "string", 1)), _event_row),
    "ConfigMap": Printer(_cols(NAME, ("Data", "integer"), AGE),
                         _simple_row(lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))),
    "Secret": Printer(_cols(NAME, ("Type", "string"), ("Data", "integer"), AGE),
                      _simple_row(lambda o: o.get("type", ""), lambda o: len(o.get("data") or {}))),
    "Service": Printer(_cols(NAME, ("Type", "string"), ("Cluster-IP", "string"), ("External-IP", "string"),
                             ("Port(s)", "string"), AGE, ("Selector", "string", 1)), _service_row),
    "ServiceAccount": Printer(_cols(NAME, ("Secrets", "string"), AGE),
                              _simple_row(lambda o: str(len(o.get("secrets") or [])))),
    "Lease": Printer(_cols(NAME, ("Holder", "string"), AGE),
                     _simple_row(lambda o: _d(o, "spec", "holderIdentity") or "")),
    "ResourceClaim": Printer(_cols(NAME, ("State", "string"), AGE), _simple_row(claim_state)),
    "ResourceClaimTemplate": Printer(_cols(NAME, AGE), _simple_row()),
    "DeviceClass": Printer(_cols(NAME, AGE), _simple_row()),
    "ResourceSlice": Printer(_cols(NAME, ("Node", "string"), ("Driver", "string"), ("Pool", "string"), AGE),
                             _slice_row),
    "CustomResourceDefinition": Printer(_cols(NAME, ("Created At", "date")), _created_row),
}
"""Printers per kind; kinds not listed get :data:`GENERIC` (what the apiserver does for custom resources)."""

GENERIC = Printer(_cols(NAME, AGE), _simple_row())


def to_table(rt_kind: str, objects: Sequence[Obj], *, now: dt.datetime, wide: bool = True,
             include_object: Literal["None", "Metadata", "Object"] = "Metadata",
             resource_version: str = "") -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` of kind ``rt_kind``.

    A real server always returns every column and kubectl hides priority-1 ones unless ``-o wide``, so the
    default ``wide=True`` is what the HTTP front end must send; ``wide=False`` drops them (for in-process
    printing, e.g. reports). ``include_object`` follows
    the ``includeObject`` query parameter: ``Metadata`` puts a ``PartialObjectMetadata`` in each row (kubectl
    needs it for ``-A`` and ``--show-labels``), ``Object`` the full object (``--sort-by``).
    """
    printer = PRINTERS.get(rt_kind, GENERIC)
    keep = [i for i, c in enumerate(printer.columns) if wide or c.priority == 0]
    rows = []
    for o in objects:
        cells = printer.row(o, now)
        row: dict[str, Any] = {"cells": [cells[i] for i in keep]}
        if include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": dict(_meta(o))}
        elif include_object == "Object":
            row["object"] = o
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version} if resource_version else {}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": [printer.columns[i].to_dict() for i in keep], "rows": rows}
