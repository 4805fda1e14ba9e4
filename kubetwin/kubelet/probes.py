"""Container probes (startup, liveness, readiness) with the kubelet's semantics.

Per running container instance and probe: nothing runs before ``initialDelaySeconds`` after the container
started, then one attempt every ``periodSeconds`` (each bounded by ``timeoutSeconds``). ``successThreshold``
consecutive successes make the result Success, ``failureThreshold`` consecutive failures make it Failure.
Liveness and readiness do not run until the startup probe (if any) succeeded; a container without a readiness
probe is ready as soon as it started. A Failure of the liveness or startup probe restarts the container (the
kubelet kills it; ``restartPolicy`` and the crash-loop back-off decide the rest); readiness only sets
``ready`` (and so the pod's Ready condition). Every failed attempt is a Warning ``Unhealthy`` event
("Liveness probe failed: <output>"), a restart a Normal ``Killing`` event ("Container X failed liveness probe,
will be restarted") — the texts of the real kubelet.

Timing is pure (:class:`ProbeState` takes ``now``), so tests drive it with a fake clock; the prober thread only
decides *when* to look, with the kubelet's injectable clock.

Handlers (a registry): ``exec`` runs the command inside the container (same way as ``kubectl exec``),
``httpGet`` and ``tcpSocket`` connect to the pod's port where :meth:`Kubelet.endpoint` says it is reachable; the
messages name the pod IP, as the real kubelet's do. gRPC probes are not run (always Success). In emulated
containers (in-process programs) exec probes pass without running (the image's binaries do not exist) and
network probes run only against servers the program bound through ``serve_address``.
"""

from __future__ import annotations

import datetime as dt
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROBE_KINDS = ("startup", "liveness", "readiness")
"""Probe kinds in the order the kubelet evaluates them."""
_FIELD = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
_TITLE = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}


@dataclass(frozen=True)
class ProbeSpec:
    """One probe of a container spec with the API defaults applied."""

    kind: str
    """``startup``, ``liveness`` or ``readiness``."""
    handler: dict[str, Any]
    """The probe object (its ``exec`` / ``httpGet`` / ``tcpSocket`` / ``grpc`` member is the handler)."""
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @staticmethod
    def of(kind: str, probe: dict[str, Any]) -> ProbeSpec:
        return ProbeSpec(kind=kind, handler=probe,
                         initial_delay_s=float(probe.get("initialDelaySeconds") or 0),
                         period_s=float(probe.get("periodSeconds") or 10),
                         timeout_s=float(probe.get("timeoutSeconds") or 1),
                         success_threshold=int(probe.get("successThreshold") or 1),
                         failure_threshold=int(probe.get("failureThreshold") or 3))


@dataclass
class ProbeState:
    """Result bookkeeping of one probe of one container instance (pure: time comes in as ``now``)."""

    spec: ProbeSpec
    started_at: dt.datetime
    """When the container instance started (``initialDelaySeconds`` counts from here)."""
    result: bool | None = None
    """None until a threshold was reached (readiness: not ready; startup: not started)."""
    successes: int = 0
    failures: int = 0
    last_run: dt.datetime | None = None

    def next_due(self) -> dt.datetime:
        first = self.started_at + dt.timedelta(seconds=self.spec.initial_delay_s)
        if self.last_run is None:
            return first
        return max(first, self.last_run + dt.timedelta(seconds=self.spec.period_s))

    def due(self, now: dt.datetime) -> bool:
        return now >= self.next_due()

    def record(self, ok: bool, now: dt.datetime) -> bool | None:
        """Count one attempt; returns the new result when a threshold flipped it, else None."""
        self.last_run = now
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.success_threshold and self.result is not True:
                self.result = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.spec.failure_threshold and self.result is not False:
                self.result = False
                return False
            if self.failures >= self.spec.failure_threshold:
                return False  # stays failed: liveness keeps asking for a restart until it happens
        return None


@dataclass(frozen=True)
class ProbeTarget:
    """How to reach one container for probing."""

    pod_ip: str
    """Shown in httpGet/tcpSocket messages, as the real kubelet dials the pod IP."""
    ports: dict[str, int]
    """Named container ports."""
    address: Callable[[int], tuple[str, int] | None]
    """Container port → where it is reachable from the kubelet (``Kubelet.endpoint``)."""
    run: Callable[[list[str], float], tuple[int | None, str]]
    """Run a command in the container: (exit code or None on timeout, combined output)."""
    probed: Callable[[int], bool] = lambda _port: True
    """Whether a port's server can be probed; an emulated program's server not bound through ``serve_address``
    cannot, and its probe counts as passed (as before probes ran at all)."""


ProbeHandler = Callable[[dict[str, Any], ProbeTarget, float], tuple[bool, str]]
"""(handler spec, target, timeout) → (success, failure message)."""


def _port(spec: dict[str, Any], target: ProbeTarget) -> int:
    p = spec.get("port")
    if isinstance(p, str) and not p.isdigit():
        return target.ports.get(p, 0)
    return int(p or 0)


def _exec(spec: dict[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    argv = [str(a) for a in spec.get("command") or []]
    code, out = target.run(argv, timeout)
    if code is None:
        return False, f"command {' '.join(argv)!r} timed out"
    return code == 0, out.rstrip("\n")


def _http(spec: dict[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    port = _port(spec, target)
    if not target.probed(port):
        return True, ""
    scheme = str(spec.get("scheme") or "HTTP").lower()
    path = str(spec.get("path") or "/")
    url = f"{scheme}://{target.pod_ip}:{port}{path}"
    where = target.address(port)
    if where is None:
        return False, f'Get "{url}": dial tcp {target.pod_ip}:{port}: connect: connection refused'
    conn: http.client.HTTPConnection
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the kubelet skips verification too
        conn = http.client.HTTPSConnection(where[0], where[1], timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(where[0], where[1], timeout=timeout)
    headers = {"User-Agent": "kube-probe/1.36", "Accept": "*/*"}
    headers.update({str(h.get("name")): str(h.get("value")) for h in spec.get("httpHeaders") or []})
    try:
        conn.request("GET", path, headers=headers)
        code = conn.getresponse().status
    except TimeoutError:
        return False, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
                       f'headers)')
    except OSError:
        return False, f'Get "{url}": dial tcp {target.pod_ip}:{port}: connect: connection refused'
    finally:
        conn.close()
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


def _tcp(spec: dict[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    port = _port(spec, target)
    if not target.probed(port):
        return True, ""
    where = target.address(port)
    refused = f"dial tcp {target.pod_ip}:{port}: connect: connection refused"
    if where is None:
        return False, refused
    try:
        with socket.create_connection(where, timeout=timeout):
            return True, ""
    except OSError:
        return False, refused


def _grpc(_spec: dict[str, Any], _target: ProbeTarget, _timeout: float) -> tuple[bool, str]:
    return True, ""


PROBE_HANDLERS: dict[str, ProbeHandler] = {"exec": _exec, "httpGet": _http, "tcpSocket": _tcp, "grpc": _grpc}


def run_probe(spec: ProbeSpec, target: ProbeTarget) -> tuple[bool, str]:
    """One attempt of ``spec`` against ``target``."""
    for key, handler in PROBE_HANDLERS.items():
        if key in spec.handler:
            return handler(spec.handler[key] or {}, target, spec.timeout_s)
    return True, ""


def run_in_container(argv: list[str], env: dict[str, str], cwd: str, enter_pid: int | None,
                     timeout: float) -> tuple[int | None, str]:
    """Run ``argv`` like ``kubectl exec`` does (in the container's namespaces when it has them)."""
    if enter_pid is not None:
        argv = [shutil.which("nsenter") or "nsenter", "--target", str(enter_pid), "--mount", "--pid", "--root",
                "--wd", "--", *argv]
        cwd = "/"
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True, check=False)
    except subprocess.TimeoutExpired:
        return None, ""
    except OSError as exc:
        return 126, str(exc)
    return p.returncode, p.stdout.decode(errors="replace")


@dataclass
class ContainerProbes:
    """The probes of one container instance."""

    uid: str
    container: str
    instance: object
    """The runtime's container instance the probes belong to (a restart gets new probes)."""
    target: ProbeTarget
    states: dict[str, ProbeState] = field(default_factory=dict)
    restart_reason: str = ""
    """``liveness``/``startup`` once that probe failed: the kubelet kills and restarts the container."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) events for the kubelet's sync to record."""

    @property
    def started(self) -> bool:
        st = self.states.get("startup")
        return st is None or st.result is True

    @property
    def ready(self) -> bool:
        if not self.started:
            return False
        st = self.states.get("readiness")
        return st is None or st.result is True


class Prober:
    """Runs due probes of one node's containers on its own thread; results wake the pod's sync."""

    def __init__(self, now: Callable[[], dt.datetime], wake: Callable[[str], None],
                 stop: threading.Event) -> None:
        self._now = now
        self._wake = wake
        self._stop = stop
        self._lock = threading.Lock()
        self._probes: dict[tuple[str, str], ContainerProbes] = {}
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, uid: str, c: dict[str, Any], instance: object, started_at: dt.datetime,
            target: ProbeTarget) -> None:
        """Start probing a freshly started container instance (replaces the previous instance's probes)."""
        cp = ContainerProbes(uid=uid, container=str(c["name"]), instance=instance, target=target)
        for kind in PROBE_KINDS:
            probe = c.get(_FIELD[kind])
            if probe:
                cp.states[kind] = ProbeState(ProbeSpec.of(kind, probe), started_at)
        with self._lock:
            self._probes[(uid, cp.container)] = cp
            if cp.states and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="kubelet-prober", daemon=True)
                self._thread.start()
        self._kick.set()

    def remove_pod(self, uid: str) -> None:
        with self._lock:
            for key in [k for k in self._probes if k[0] == uid]:
                del self._probes[key]

    def get(self, uid: str, container: str, instance: object) -> ContainerProbes | None:
        with self._lock:
            cp = self._probes.get((uid, container))
        return cp if cp is not None and cp.instance is instance else None

    def tick(self) -> float:
        """Run every due probe once; returns seconds until the next one is due."""
        now = self._now()
        with self._lock:
            todo = list(self._probes.values())
        wait = 1.0
        for cp in todo:
            woke = False
            for kind in PROBE_KINDS:
                st = cp.states.get(kind)
                if st is None or (kind != "startup" and not cp.started):
                    continue
                if kind == "startup" and st.result is True:
                    continue
                if not st.due(now):
                    wait = min(wait, (st.next_due() - now).total_seconds())
                    continue
                ok, msg = run_probe(st.spec, cp.target)
                flipped = st.record(ok, self._now())
                if not ok:
                    cp.events.append(("Warning", "Unhealthy", f"{_TITLE[kind]} probe failed: {msg}"))
                    woke = True
                if flipped is not None:
                    woke = True
                    if flipped is False and kind in ("liveness", "startup") and not cp.restart_reason:
                        cp.restart_reason = kind
                wait = min(wait, st.spec.period_s)
            if woke:
                self._wake(cp.uid)
        return max(0.05, wait)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.tick()
            self._kick.wait(wait)
            self._kick.clear()


__all__ = ["PROBE_HANDLERS", "PROBE_KINDS", "ContainerProbes", "ProbeSpec", "ProbeState", "ProbeTarget", "Prober",
           "run_in_container", "run_probe"]
