"""Run ids, the labels every created object carries, per-check namespaces, and cleanup by label.

Why labels: a run can be killed at any point (Ctrl-C, SIGTERM, a lost VM), so whatever it created must be
findable later without any local state. Every object a check creates carries :data:`RUN_ID_LABEL`; cleanup
deletes exactly the objects carrying it — never anything unlabelled — in every namespace and at cluster scope.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from checks.driver import names
from checks.errors import UsageError
from checks.kube.kinds import KINDS, Kind
from checks.kube.retry import call_with_retry
from checks.kube.wait import WaitOptions, WaitTimeout, describe_object, source_for, wait_until

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

#: Label key carrying the run id on every object a run creates.
RUN_ID_LABEL = "dra-lab.io/run-id"
#: Node label a twin sets on every node it emulates GPUs for: the suite skips checks that run real CUDA code
#: there. A real node never carries it.
EMULATED_GPUS_LABEL = "dra-lab.io/emulated-gpus"
#: Label a run puts on a namespace it had to create for the driver (helm's own namespace): the label sweep
#: leaves it (the release lives there until uninstalled); it is removed after the release, and only if a run
#: created it.
CREATED_BY_RUN_LABEL = "dra-lab.io/created-by-run"
#: Node label of a cluster that can inject GPU health events (XIDs, GPU lost) — only twins; real Lambda nodes
#: cannot (roadmap "Not feasible": real XID fault injection). Value ``annotation``: write
#: :data:`HEALTH_EVENT_ANNOTATION` on the node.
HEALTH_INJECTION_LABEL = "dra-lab.io/health-event-injection"
#: Node annotation whose JSON value ``{"seq": n, "event": "xid"|"gpu-lost", "uuid": "GPU-…", "xid": n}`` makes
#: the emulated GPU plugin see that NVML event (each new ``seq`` once).
HEALTH_EVENT_ANNOTATION = "dra-lab.io/inject-health-event"
#: Label key naming the check that created an object (for artifacts and humans).
CHECK_LABEL = "dra-lab.io/check"
#: Shape of a run id: ``r`` + UTC date-time + 4 hex digits, e.g. ``r20261126-175800-ab12``.
RUN_ID_RE = re.compile(r"^r\d{8}-\d{6}-[0-9a-f]{4}$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_MAX_NAME = 63

#: Kinds cleanup removes, in deletion order: workloads first (so controllers stop recreating pods), then
#: claims and templates, then cluster-scoped DeviceClasses, namespaces last (they sweep whatever is left).
CLEANUP_KINDS: tuple[str, ...] = (
    "deployments", "daemonsets", "jobs", "pods", "resourceclaims", "resourceclaimtemplates", "configmaps",
    "deviceclasses", "namespaces",
)


def new_run_id(now: Callable[[], datetime] = lambda: datetime.now(UTC),
               token: Callable[[], str] = lambda: secrets.token_hex(2)) -> str:
    """A short, sortable, DNS-safe run id: ``r`` + UTC ``YYYYMMDD-HHMMSS`` + 4 random hex digits."""
    run_id = f"r{now().astimezone(UTC):%Y%m%d-%H%M%S}-{token()}"
    check_run_id(run_id)
    return run_id


def check_run_id(run_id: str, *, where: str = "run id") -> str:
    """Return ``run_id`` if well formed; UsageError otherwise (it arrives from ``--run-id``)."""
    if not RUN_ID_RE.match(run_id):
        raise UsageError(f"{run_id!r} is not a dra-lab run id (expected e.g. r20261126-175800-ab12)",
                         where=where)
    return run_id


def _slug(text: str) -> str:
    """Lowercase DNS-1123 characters only; runs of others become one dash."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def check_label_value(check: str) -> str:
    """A label value (≤63 chars, alphanumeric ends) naming a check; long names keep a hash for uniqueness."""
    value = _slug(check) or "check"
    if len(value) > _MAX_NAME:
        value = f"{value[:_MAX_NAME - 7].rstrip('-')}-{_short_hash(check)}"
    assert _LABEL_VALUE.match(value), value
    return value


def labels_for(run_id: str, check: str | None = None) -> dict[str, str]:
    """Labels to put on every object a run (and optionally one check) creates."""
    labels = {RUN_ID_LABEL: check_run_id(run_id)}
    if check is not None:
        labels[CHECK_LABEL] = check_label_value(check)
    return labels


def namespace_name(run_id: str, check_name: str) -> str:
    """The namespace of one check in one run: ``<check>-<run id>``, a DNS-1123 label of at most 63 chars.

    The check part is shortened (with a hash of the full name, so two long names never collide) to fit.
    """
    check_run_id(run_id)
    room = _MAX_NAME - len(run_id) - 1
    check = _slug(check_name) or "check"
    if len(check) > room:
        check = f"{check[:room - 7].rstrip('-')}-{_short_hash(check_name)}"
    name = f"{check}-{run_id}"
    assert len(name) <= _MAX_NAME and _DNS1123_LABEL.match(name), name
    return name


def run_selector(run_id: str | None) -> str:
    """Label selector for one run, or for every run when ``run_id`` is None."""
    return RUN_ID_LABEL if run_id is None else f"{RUN_ID_LABEL}={check_run_id(run_id)}"


@dataclass
class CleanupReport:
    """What :func:`cleanup` removed (``kind -> ["ns/name", ...]``), what it forced, and what it could not."""

    removed: dict[str, list[str]] = field(default_factory=dict)
    """Objects deleted, by plural kind."""
    forced: list[str] = field(default_factory=list)
    """Pods deleted with grace period 0, each with why (``ns/name (node gone)``)."""
    left: list[str] = field(default_factory=list)
    """Objects still present when the budget ran out, one line each (what they wait for)."""
    errors: list[str] = field(default_factory=list)
    """Deletions that failed (other than already gone), one line each."""

    @property
    def count(self) -> int:
        """Number of objects deleted."""
        return sum(len(v) for v in self.removed.values())

    @property
    def complete(self) -> bool:
        """Everything labelled is gone and nothing failed."""
        return not self.left and not self.errors


def _shown(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


# -- why a pod may be deleted without waiting ----------------------------------------------------------------
def _ready_nodes(cluster: ClusterClient) -> set[str]:
    out = set()
    for n in _list_all(cluster, "nodes"):
        conds = {c.get("type"): c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") == "True":
            out.add(str((n.get("metadata") or {}).get("name")))
    return out


def _list_all(cluster: ClusterClient, plural: str, namespace: str | None = None,
              selector: str | None = None) -> list[dict[str, Any]]:
    list_fn = KINDS[plural].list_fn(cluster, namespace)

    def once() -> list[dict[str, Any]]:
        kw: dict[str, Any] = {"_preload_content": False}
        if selector:
            kw["label_selector"] = selector
        resp = list_fn(**kw)
        try:
            return list(json.loads(resp.data).get("items") or [])
        finally:
            resp.release_conn()

    try:
        return call_with_retry(cluster.retry, once,
                               what=f"list {plural}" + (f" with {selector}" if selector else ""))
    except ApiException as exc:
        if exc.status == 404:  # the server does not serve this kind (e.g. no resource.k8s.io/v1)
            return []
        raise


def _plugin_nodes(cluster: ClusterClient) -> set[str]:
    """Nodes with a Ready kubelet-plugin pod of the GPU driver (what unprepares a pod's claims)."""
    selector = f"{names.COMPONENT_LABEL}={names.COMPONENT_KUBELET_PLUGIN}"
    out = set()
    for pod in _list_all(cluster, "pods", names.NAMESPACE, selector):
        conds = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") == "True" and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            out.add(str((pod.get("spec") or {}).get("nodeName")))
    return out


def stuck_reason(pod: dict[str, Any], ready_nodes: set[str], plugin_nodes: set[str]) -> str:
    """Why a terminating pod can never finish gracefully ('' when it can).

    A kubelet can only end a pod on a node that is there and Ready, and a pod with ResourceClaims only once
    the driver's kubelet plugin on that node has unprepared them (kubernetes-dra.md §5; a real kubelet keeps
    such a pod Terminating). For those pods the API's grace period 0 (``kubectl delete --force``) is what an
    administrator does, and what this does.
    """
    spec = pod.get("spec") or {}
    node = str(spec.get("nodeName") or "")
    if not node:
        return "never scheduled"
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return ""
    if node not in ready_nodes:
        return f"node {node} gone or not Ready"
    if spec.get("resourceClaims") and node not in plugin_nodes:
        return f"no GPU kubelet plugin running on {node}"
    return ""


def cleanup(cluster: ClusterClient, run_id: str | None = None, *, timeout: float = 300.0,
            wait_options: WaitOptions | None = None, force: bool = False,
            grace_budget_s: float | None = None) -> CleanupReport:
    """Delete every object labelled with ``run_id`` (any run id when None) and wait until they are gone.

    Only labelled objects are touched: the selector is applied by the server, and each returned object's
    label is checked again here before it is deleted. It always finishes within ``timeout``: a labelled pod
    that cannot terminate gracefully (:func:`stuck_reason`) is deleted with grace period 0, at once when that
    is known up front, else once ``grace_budget_s`` (default: half the timeout) has passed; with ``force``
    every pod still there then is. Finalizers are never removed here: the controllers that own them (the
    resourceclaim controller for a claim's) release them once the pods are gone. What is still there at the
    end is reported in :attr:`CleanupReport.left`, not raised.
    """
    selector = run_selector(run_id)
    report = CleanupReport()
    template = wait_options or WaitOptions()
    clock = template.clock
    deadline = clock() + timeout  # one budget for the whole cleanup, not one per kind
    grace_deadline = clock() + (timeout / 2 if grace_budget_s is None else grace_budget_s)
    ready_nodes, plugin_nodes = _ready_nodes(cluster), _plugin_nodes(cluster)
    for plural in CLEANUP_KINDS:
        k = KINDS[plural]
        for obj in _list_all(cluster, plural, selector=selector):
            meta = obj.get("metadata") or {}
            value = (meta.get("labels") or {}).get(RUN_ID_LABEL)
            if value is None or (run_id is not None and value != run_id):
                continue  # belt and braces: never delete what the selector should not have matched
            ns = meta.get("namespace")
            shown = _shown(obj)
            name = str(meta["name"])
            why = stuck_reason(obj, ready_nodes, plugin_nodes) if plural == "pods" else ""

            def delete(k: Kind = k, name: str = name, ns: str | None = ns, grace0: bool = bool(why)) -> Any:
                if grace0:
                    return _delete_now(cluster, name, str(ns))
                return k.delete(cluster, name, ns)

            try:
                call_with_retry(cluster.retry, delete, what=f"delete {plural} {shown}")
            except ApiException as exc:
                if exc.status == 404:
                    continue  # already gone (e.g. swept by its namespace or the garbage collector)
                if exc.status == 409 and plural == "namespaces":
                    pass  # already terminating: counts as removed
                else:
                    report.errors.append(f"delete {plural} {shown}: HTTP {exc.status} {exc.reason}")
                    continue
            if why:
                report.forced.append(f"{shown} ({why})")
            report.removed.setdefault(plural, []).append(shown)
    _wait_gone(cluster, selector, report, "pods", min(grace_deadline, deadline), clock, template, quiet=True)
    if _pods_left(cluster, selector):
        ready_nodes, plugin_nodes = _ready_nodes(cluster), _plugin_nodes(cluster)
        for pod in _pods_left(cluster, selector):
            why = stuck_reason(pod, ready_nodes, plugin_nodes) or ("--force" if force else "")
            if not why:
                continue
            meta = pod.get("metadata") or {}
            try:
                _delete_now(cluster, str(meta.get("name")), str(meta.get("namespace")))
                report.forced.append(f"{_shown(pod)} ({why})")
            except ApiException as exc:
                if exc.status != 404:
                    report.errors.append(f"force-delete pods {_shown(pod)}: HTTP {exc.status} {exc.reason}")
    for plural in CLEANUP_KINDS:
        if plural in report.removed:
            _wait_gone(cluster, selector, report, plural, deadline, clock, template)
    return report


def _delete_now(cluster: ClusterClient, name: str, namespace: str) -> Any:
    """``DELETE`` with ``gracePeriodSeconds: 0``: the API removes the pod without the kubelet's confirmation."""
    from kubernetes.client import V1DeleteOptions

    return cluster.core.delete_namespaced_pod(name, namespace, body=V1DeleteOptions(
        grace_period_seconds=0, propagation_policy="Background"))


def _pods_left(cluster: ClusterClient, selector: str) -> list[dict[str, Any]]:
    return _list_all(cluster, "pods", selector=selector)


def _wait_gone(cluster: ClusterClient, selector: str, report: CleanupReport, plural: str, deadline: float,
               clock: Callable[[], float], template: WaitOptions, *, quiet: bool = False) -> None:
    opts = WaitOptions(clock=clock, backoff=template.backoff)
    source = source_for(cluster, plural, None, label_selector=selector)
    try:
        wait_until(source, lambda state: not state, timeout=max(0.0, deadline - clock()),
                   what=f"{plural} with {selector} to be deleted", options=opts)
    except WaitTimeout:
        if quiet:
            return
        for obj in _list_all(cluster, plural, selector=selector):
            report.left.append(describe_object(obj))


# -- leftovers of other runs ---------------------------------------------------------------------------------
@dataclass
class Leftovers:
    """Labelled objects of one other run still on the cluster."""

    run_id: str
    """The run that created them."""
    objects: dict[str, int] = field(default_factory=dict)
    """Count per plural kind."""
    holding: list[str] = field(default_factory=list)
    """What holds devices: pods using claims that have not ended, allocated claims (``kind ns/name``)."""

    def line(self) -> str:
        counts = ", ".join(f"{n} {plural}" for plural, n in sorted(self.objects.items()))
        return f"run {self.run_id}: {counts}" + (f" ({len(self.holding)} holding devices)" if self.holding else "")


def find_leftovers(cluster: ClusterClient, current_run_id: str) -> list[Leftovers]:
    """Labelled objects of runs other than ``current_run_id``, by run (oldest run id first).

    A run killed with SIGKILL leaves its pods holding a shared claim; the next run's pods then wait for
    devices until every scheduling timeout has passed (issue 14: 625 s and ten failures, never saying why).
    """
    runs: dict[str, Leftovers] = {}
    for plural in CLEANUP_KINDS:
        for obj in _list_all(cluster, plural, selector=RUN_ID_LABEL):
            rid = str(((obj.get("metadata") or {}).get("labels") or {}).get(RUN_ID_LABEL) or "")
            if not rid or rid == current_run_id:
                continue
            left = runs.setdefault(rid, Leftovers(rid))
            left.objects[plural] = left.objects.get(plural, 0) + 1
            status = obj.get("status") or {}
            if plural == "pods" and (obj.get("spec") or {}).get("resourceClaims") \
                    and status.get("phase") not in ("Succeeded", "Failed"):
                left.holding.append(f"pod {_shown(obj)}")
            elif plural == "resourceclaims" and status.get("allocation"):
                left.holding.append(f"resourceclaim {_shown(obj)}")
    return [runs[k] for k in sorted(runs)]


def refuse_leftovers(left: list[Leftovers]) -> None:
    """UsageError (one line) when any of ``left`` holds devices: naming the runs and the two ways out."""
    holding = [lo for lo in left if lo.holding]
    if not holding:
        return
    runs = " ".join(lo.run_id for lo in holding)
    raise UsageError(f"leftovers of earlier runs hold devices ({'; '.join(lo.line() for lo in holding)}); remove "
                     f"them with `dra-lab clean --run-id RUN` ({runs}) or pass --clean-leftovers", where="cluster")
