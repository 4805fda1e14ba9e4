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

from checks.errors import UsageError
from checks.kube.kinds import KINDS, Kind
from checks.kube.retry import call_with_retry
from checks.kube.wait import WaitOptions, source_for, wait_until

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

#: Label key carrying the run id on every object a run creates.
RUN_ID_LABEL = "dra-lab.io/run-id"
#: Node label a twin sets on every node it emulates GPUs for: the suite skips checks that run real CUDA code
#: there. A real node never carries it.
EMULATED_GPUS_LABEL = "dra-lab.io/emulated-gpus"
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
    """What :func:`cleanup` removed (``kind -> ["ns/name", ...]``) and what it could not."""

    removed: dict[str, list[str]] = field(default_factory=dict)
    """Objects deleted, by plural kind."""
    errors: list[str] = field(default_factory=list)
    """Deletions that failed (other than already gone), one line each."""

    @property
    def count(self) -> int:
        """Number of objects deleted."""
        return sum(len(v) for v in self.removed.values())


def _list_labelled(cluster: ClusterClient, plural: str, selector: str) -> list[dict[str, Any]]:
    list_fn = KINDS[plural].list_fn(cluster, None)

    def once() -> list[dict[str, Any]]:
        resp = list_fn(label_selector=selector, _preload_content=False)
        try:
            return list(json.loads(resp.data).get("items") or [])
        finally:
            resp.release_conn()

    try:
        return call_with_retry(cluster.retry, once, what=f"list {plural} with {selector}")
    except ApiException as exc:
        if exc.status == 404:  # the server does not serve this kind (e.g. no resource.k8s.io/v1)
            return []
        raise


def cleanup(cluster: ClusterClient, run_id: str | None = None, *, timeout: float = 300.0,
            wait_options: WaitOptions | None = None) -> CleanupReport:
    """Delete every object labelled with ``run_id`` (any run id when None), then wait until they are gone.

    Only labelled objects are touched: the selector is applied by the server, and each returned object's
    label is checked again here before it is deleted.
    """
    selector = run_selector(run_id)
    report = CleanupReport()
    for plural in CLEANUP_KINDS:
        k = KINDS[plural]
        for obj in _list_labelled(cluster, plural, selector):
            meta = obj.get("metadata") or {}
            value = (meta.get("labels") or {}).get(RUN_ID_LABEL)
            if value is None or (run_id is not None and value != run_id):
                continue  # belt and braces: never delete what the selector should not have matched
            ns = meta.get("namespace")
            shown = f"{ns}/{meta['name']}" if ns else str(meta["name"])
            name = str(meta["name"])

            def delete(k: Kind = k, name: str = name, ns: str | None = ns) -> Any:
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
            report.removed.setdefault(plural, []).append(shown)
    template = wait_options or WaitOptions()
    deadline = template.clock() + timeout  # one budget for the whole cleanup, not one per kind
    for plural in CLEANUP_KINDS:
        if plural not in report.removed:
            continue
        opts = WaitOptions(clock=template.clock, backoff=template.backoff)
        source = source_for(cluster, plural, None, label_selector=selector)
        wait_until(source, lambda state: not state, timeout=max(0.0, deadline - template.clock()),
                   what=f"{plural} with {selector} to be deleted", options=opts)
    return report
