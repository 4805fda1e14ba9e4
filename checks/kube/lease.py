"""A cluster-wide lock for one run at a time: a ``coordination.k8s.io/v1`` Lease, as Kubernetes components use.

Two runs against one cluster fight over one driver release (issue 14: ``UPGRADE FAILED: release: already
exists``, wrong MIG results, both failing). So a run takes :data:`LOCK_NAME` in :data:`LOCK_NAMESPACE`
(``kube-system`` exists on every cluster, unlike the driver's namespace) with ``holderIdentity`` = its run
id, renews it in the background, and deletes it at the end. A second run either waits for it
(``--lock-timeout``) or refuses at once with one line naming the holder's run id.

A run killed with SIGKILL cannot delete its lease; the lease then goes stale: nobody renews it, and after
``leaseDurationSeconds`` it is free. Staleness is judged like client-go's leader election does — by this
process's own observation that ``renewTime`` has not changed for the lease duration — and also, for a lease
already old when first seen, by ``renewTime`` itself, so a lock left by a killed run is taken over at once.
Every write is conditional on the ``resourceVersion`` read (optimistic concurrency), so two runs taking over
the same stale lease cannot both win. Time is injected (``clock``, ``wall``) for tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from checks.errors import UsageError
from checks.kube import objects as K

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

Obj = dict[str, Any]

#: Lease name of the dra-lab run lock.
LOCK_NAME = "dra-lab-lock"
#: Namespace of the lock (present on every cluster, before and after the driver is installed).
LOCK_NAMESPACE = "kube-system"
#: Annotation: ``host:pid`` of the process holding the lock. A holder on this very host whose process is gone
#: (SIGKILL) is stale at once; anywhere else the lease's own expiry decides.
HOLDER_PROCESS_ANNOTATION = "dra-lab.io/holder-process"


def this_process() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(holder_process: str) -> bool:
    """Whether ``host:pid`` names a process on this host that no longer exists (never True for other hosts)."""
    host, _, pid = holder_process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LockHeld(UsageError):
    """Another run holds the cluster lock (one line: its run id and since when)."""


@dataclass
class LeaseSettings:
    """How the lock behaves."""

    duration_s: int = 30
    """``leaseDurationSeconds``: a lease not renewed for this long is stale and may be taken over."""
    renew_every_s: float = 10.0
    """Renewal period of the holder (a third of the duration, as leader election does)."""
    wait_s: float = 0.0
    """How long :func:`acquire` waits for a live holder before refusing (0: refuse at once)."""
    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds (staleness by observation, deadlines)."""
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """Wall clock for ``acquireTime``/``renewTime``."""


def _micro(t: datetime) -> str:
    """MicroTime as the API serialises it: RFC 3339 with microseconds, UTC."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


@dataclass
class _Seen:
    """What this process last observed of a lease held by someone else, and when."""

    holder: str
    renew: str
    since: float


class RunLock:
    """The lock of one run: :meth:`acquire`, renewed in the background, :meth:`release`."""

    def __init__(self, cluster: ClusterClient, run_id: str, settings: LeaseSettings | None = None, *,
                 name: str = LOCK_NAME, namespace: str = LOCK_NAMESPACE) -> None:
        self.cluster, self.run_id = cluster, run_id
        self.settings = settings or LeaseSettings()
        self.name, self.namespace = name, namespace
        self.held = False
        self.lost = ""
        """Set (one line) when a renewal found the lease taken by someone else."""
        self.took_over = ""
        """The stale holder's run id when this run took its lease over, else ''."""
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def path(self) -> str:
        """REST path of the lease."""
        return K.resource_for("leases").path(self.namespace, self.name)

    # -- one attempt ---------------------------------------------------------------------------------------
    def _spec(self, acquired: datetime | None = None, transitions: int = 0) -> Obj:
        now = self.settings.wall()
        return {"holderIdentity": self.run_id, "leaseDurationSeconds": self.settings.duration_s,
                "acquireTime": _micro(acquired or now), "renewTime": _micro(now),
                "leaseTransitions": transitions}

    def is_stale(self, lease: Obj, seen: _Seen | None = None) -> bool:
        """Whether ``lease`` may be taken over: no holder, its process gone on this host, its renewTime plus
        duration past, or (``seen``) unchanged for a whole duration while this process watched it."""
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if not holder:
            return True
        if process_gone(str(((lease.get("metadata") or {}).get("annotations") or {}).get(HOLDER_PROCESS_ANNOTATION,
                                                                                          ""))):
            return True
        duration = float(spec.get("leaseDurationSeconds") or self.settings.duration_s)
        renew = _parse(spec.get("renewTime"))
        if renew is None or renew + timedelta(seconds=duration) < self.settings.wall():
            return True
        return (seen is not None and seen.holder == holder and seen.renew == str(spec.get("renewTime"))
                and self.settings.clock() - seen.since >= duration)

    def _try(self, seen: _Seen | None) -> tuple[bool, Obj | None]:
        """One attempt: (acquired, the lease as read when someone else holds it)."""
        lease = K.try_get(self.cluster, "leases", self.name, self.namespace)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "dra-lab"},
                                 "annotations": {HOLDER_PROCESS_ANNOTATION: this_process()}},
                    "spec": self._spec()}
            try:
                K.create(self.cluster, body, self.namespace)
            except ApiException as exc:
                if exc.status == 409:
                    return False, None  # someone created it first: read it again
                raise
            return True, None
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if holder != self.run_id and not self.is_stale(lease, seen):
            return False, lease
        new = dict(lease)
        meta = dict(lease.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), HOLDER_PROCESS_ANNOTATION: this_process()}
        new["metadata"] = meta
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.run_id else 1)
        new["spec"] = self._spec(_parse(spec.get("acquireTime")) if holder == self.run_id else None, transitions)
        try:  # conditional on the resourceVersion read: of two runs taking over a stale lease, one wins
            K.request(self.cluster, "PUT", self.path(), body=new)
        except ApiException as exc:
            if exc.status in (409, 404):
                return False, None
            raise
        if holder and holder != self.run_id:
            self.took_over = holder
        return True, None

    # -- the lock --------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeld` (after waiting up to ``settings.wait_s``).

        Waiting is watch-based: each round waits for the lease to change (released, renewed, taken) for at most
        the lease duration, so a holder that stopped renewing is seen stale by observation.
        """
        s = self.settings
        deadline = s.clock() + s.wait_s
        seen: _Seen | None = None
        while True:
            ok, lease = self._try(seen)
            if ok:
                self.held = True
                self._start_renewing()
                return
            if lease is None:
                continue  # lost a create/update race: read again
            spec = lease.get("spec") or {}
            holder, renew = str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or "")
            if seen is None or (seen.holder, seen.renew) != (holder, renew):
                seen = _Seen(holder, renew, s.clock())
            remaining = deadline - s.clock()
            if remaining <= 0:
                raise self._held(spec, s.wait_s)
            self._wait_change(str((lease.get("metadata") or {}).get("resourceVersion") or ""),
                              min(remaining, float(spec.get("leaseDurationSeconds") or s.duration_s)))

    def _wait_change(self, rv: str, timeout_s: float) -> None:
        """Until the lease's resourceVersion differs from ``rv`` (or it is gone), at most ``timeout_s``."""
        from checks.kube import wait as W

        source = W.source_for(self.cluster, "leases", self.namespace, field_selector=f"metadata.name={self.name}")

        def changed(state: W.State) -> bool:
            return not state or any(str((o.get("metadata") or {}).get("resourceVersion")) != rv
                                    for o in state.values())

        with contextlib.suppress(W.WaitTimeout):
            W.wait_until(source, changed, timeout=timeout_s, what=f"lease {self.namespace}/{self.name} to change",
                         options=W.WaitOptions(clock=self.settings.clock))

    def check_free(self) -> None:
        """Raise :class:`LockHeld` when a live run other than this one holds the lock; change nothing."""
        lease = K.try_get(self.cluster, "leases", self.name, self.namespace)
        if lease is None:
            return
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self.run_id and not self.is_stale(lease, None):
            raise self._held(spec)

    def _held(self, spec: Obj, waited_s: float = 0.0) -> LockHeld:
        waited = f"; waited {waited_s:g}s" if waited_s else ""
        return LockHeld(f"the cluster is in use by dra-lab run {spec.get('holderIdentity')} (since "
                        f"{spec.get('acquireTime') or '?'}){waited}; wait for it, pass --lock-timeout SECONDS, or, "
                        f"if that run is gone, its lock expires {spec.get('leaseDurationSeconds', '?')}s after "
                        f"its last renewal", where=f"lease {self.namespace}/{self.name}")

    def renew(self) -> bool:
        """Renew once; False (and :attr:`lost` set) when the lease now names another holder."""
        lease = K.try_get(self.cluster, "leases", self.name, self.namespace)
        holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
        if lease is None or holder != self.run_id:
            self.lost = f"cluster lock lost: the lease now names {holder or 'nobody'}"
            return False
        ok, _ = self._try(None)
        return ok

    def _start_renewing(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.renew_every_s):
                with contextlib.suppress(Exception):  # a failed renewal is retried; expiry is 3 periods away
                    if not self.renew():
                        return

        self._renewer = threading.Thread(target=loop, name="dra-lab-lock", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        """Stop renewing and delete the lease if it still names this run (conditional on its version)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(Exception):
            lease = K.try_get(self.cluster, "leases", self.name, self.namespace)
            if lease is None or str((lease.get("spec") or {}).get("holderIdentity") or "") != self.run_id:
                return
            rv = (lease.get("metadata") or {}).get("resourceVersion")
            K.request(self.cluster, "DELETE", self.path(), body={"preconditions": {"resourceVersion": rv}})


def holder(cluster: ClusterClient, *, name: str = LOCK_NAME, namespace: str = LOCK_NAMESPACE) -> str:
    """Run id named by the lock ('' when there is no lease or no holder)."""
    lease = K.try_get(cluster, "leases", name, namespace)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def remove_stale(cluster: ClusterClient, run_id: str | None = None) -> str:
    """Delete the lock when it is stale (and, with ``run_id``, held by that run); returns the holder removed.

    For ``dra-lab clean`` after a killed run: a live run's lock is never touched.
    """
    lock = RunLock(cluster, "dra-lab-clean")
    lease = K.try_get(cluster, "leases", lock.name, lock.namespace)
    if lease is None:
        return ""
    held_by = str((lease.get("spec") or {}).get("holderIdentity") or "")
    if (run_id is not None and held_by != run_id) or not lock.is_stale(lease, None):
        return ""
    rv = (lease.get("metadata") or {}).get("resourceVersion")
    try:
        K.request(cluster, "DELETE", lock.path(), body={"preconditions": {"resourceVersion": rv}})
    except ApiException as exc:
        if exc.status in (404, 409):
            return ""
        raise
    return held_by or "nobody"


@contextlib.contextmanager
def run_lock(cluster: ClusterClient, run_id: str, settings: LeaseSettings | None = None) -> Iterator[RunLock]:
    """Hold the cluster lock for the ``with`` block."""
    lock = RunLock(cluster, run_id, settings)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


__all__ = ["HOLDER_PROCESS_ANNOTATION", "LOCK_NAME", "LOCK_NAMESPACE", "LeaseSettings", "LockHeld", "RunLock", "holder",
           "process_gone", "remove_stale", "run_lock", "this_process"]
