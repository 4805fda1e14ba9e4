"""Emulated ``compute-domain-controller``: leader election through a real ``coordination.k8s.io/v1`` Lease.

Reference nvidia-dra-driver.md §8: flags/env ``LEADER_ELECTION_*`` (lock name/namespace, lease duration 15s,
renew deadline 10s, retry period 2s), holder identity ``<POD_NAME>-<random UUID>`` (new per process start),
``ReleaseOnCancel: true``, and the klog lines of the driver and of client-go's elector. The Lease is read
and written with the official Python client through the twin's HTTPS API — the same requests client-go makes
(GET, CREATE when missing, UPDATE with the observed resourceVersion so two candidates cannot both win).

Expiry follows client-go: a candidate judges the holder's lease by its *own* observation time — the record
must stay unchanged for ``leaseDuration`` since this candidate last saw it change. While a candidate leads, its
ComputeDomain reconciliation runs (:mod:`.cd_controller`, signalled through the ``leading`` event).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from checks.driver import logs
from kubetwin.kubelet.seam import ContainerContext

DEFAULT_LOCK_NAME = "nvidia-compute-domain-controller"
"""Binary default of ``--leader-election-lease-lock-name`` (the chart sets ``<name>-controller``)."""


@dataclass(frozen=True)
class ElectionConfig:
    """Leader-election settings as the controller reads them from its env (§8)."""

    enabled: bool
    """``LEADER_ELECTION_ENABLED``."""
    name: str
    """``LEADER_ELECTION_LEASE_LOCK_NAME``."""
    namespace: str
    """``LEADER_ELECTION_LEASE_LOCK_NAMESPACE``."""
    lease_duration_s: float
    """``LEADER_ELECTION_LEASE_DURATION`` (Go duration)."""
    renew_deadline_s: float
    """``LEADER_ELECTION_RENEW_DEADLINE``."""
    retry_period_s: float
    """``LEADER_ELECTION_RETRY_PERIOD``."""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ElectionConfig:
        return cls(
            enabled=env.get("LEADER_ELECTION_ENABLED", "false").lower() == "true",
            name=env.get("LEADER_ELECTION_LEASE_LOCK_NAME") or DEFAULT_LOCK_NAME,
            namespace=env.get("LEADER_ELECTION_LEASE_LOCK_NAMESPACE") or "default",
            lease_duration_s=go_duration(env.get("LEADER_ELECTION_LEASE_DURATION") or "15s"),
            renew_deadline_s=go_duration(env.get("LEADER_ELECTION_RENEW_DEADLINE") or "10s"),
            retry_period_s=go_duration(env.get("LEADER_ELECTION_RETRY_PERIOD") or "2s"),
        )


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_duration(text: str) -> float:
    """Seconds of a Go ``time.Duration`` string (``15s``, ``1m30s``, ``500ms``)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f'time: invalid duration "{text}"')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _micro_time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """client-go's LeaseLock elector, reduced to what the controller uses (acquire, renew, release)."""

    def __init__(self, client: Any, cfg: ElectionConfig, identity: str,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        from kubernetes import client as k8s

        self._api = k8s.CoordinationV1Api(client)
        self._client = client
        self.cfg = cfg
        self.identity = identity
        self._clock = clock
        self._wall = wall
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self.leader = ""
        """Holder last observed (for ``New leader elected``)."""

    def _read(self) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self._api.read_namespaced_lease(self.cfg.name, self.cfg.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(self._client.sanitize_for_serialization(obj))

    def _spec(self, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        now = _micro_time(self._wall())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.cfg.lease_duration_s),
                "acquireTime": acquire_time or now, "renewTime": now, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the Lease afterwards."""
        from kubernetes.client.exceptions import ApiException

        current = self._read()
        if current is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                    "spec": self._spec(None, 0)}
            try:
                self._api.create_namespaced_lease(self.cfg.namespace, cast(Any, body))
            except ApiException:
                return False
            self.leader = self.identity
            return True
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        self.leader = holder
        mine = holder == self.identity
        expired = self._observed_at + float(spec.get("leaseDurationSeconds") or 0) <= self._clock()
        if holder and not mine and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        current["spec"] = self._spec(str(spec.get("acquireTime")) if mine else None, transitions)
        try:
            self._api.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, cast(Any, current))
        except ApiException:
            return False  # 409: someone else wrote first
        self.leader = self.identity
        return True

    def release(self) -> None:
        """``ReleaseOnCancel``: clear the holder so a candidate need not wait for expiry."""
        current = self._read()
        if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        now = _micro_time(self._wall())
        current["spec"].update({"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now,
                                "renewTime": now})
        self._api.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, cast(Any, current))


def run_election(ctx: ContainerContext, cfg: ElectionConfig, write: Callable[[list[logs.LogLine]], None], *,
                 leading: threading.Event | None = None) -> int:
    """The controller's main after startup: lead (or wait to lead) until SIGTERM, then release and exit 0.

    ``leading`` is set while this candidate runs the controller (at once when election is disabled)."""
    lead = leading or threading.Event()
    pod = ctx.env.get("POD_NAME") or ctx.pod_name
    identity = f"{pod}-{uuid.uuid4()}"
    write(logs.leader_election(cfg.enabled, identity, cfg.namespace, cfg.name))
    if not cfg.enabled:
        lead.set()
        ctx.stop.wait()
        lead.clear()
        write([logs.shutdown()])
        return 0
    client = ctx.api_client()
    try:
        elector = LeaseElector(client, cfg, identity)
        is_leader = False
        last_renew = time.monotonic()
        announced = ""
        while not ctx.stop.is_set() and not ctx.killed.is_set():
            try:
                ok = elector.try_acquire_or_renew()
            except Exception:  # API hiccup: as client-go, treat as a failed attempt
                ok = False
            now = time.monotonic()
            if ok:
                last_renew = now
                if not is_leader:
                    is_leader = True
                    lead.set()
                    write(logs.became_leader(identity, cfg.namespace, cfg.name))
            elif is_leader and now - last_renew > cfg.renew_deadline_s:
                is_leader = False
                lead.clear()
                write([logs.LogLine(0, f"Stopped leading, lockID: {identity}", "main.go", 215, "W")])
                return 1  # the controller exits so Kubernetes restarts it (§8)
            if elector.leader and elector.leader != announced and elector.leader != identity:
                announced = elector.leader
                write([logs.LogLine(0, logs.structured("New leader elected", leader=elector.leader,
                                                       currentCandidate=identity), "main.go", 210)])
            ctx.stop.wait(cfg.retry_period_s)
        if ctx.killed.is_set():
            return 137
        lead.clear()
        if is_leader:
            with contextlib.suppress(Exception):  # best effort, as client-go's ReleaseOnCancel
                elector.release()
            write([logs.LogLine(0, "Controller exited gracefully", "main.go", 220)])
        write([logs.LogLine(0, "Leader election loop ended gracefully", "main.go", 225), logs.shutdown()])
        return 0
    finally:
        client.close()


__all__ = ["ElectionConfig", "LeaseElector", "go_duration", "run_election"]
