"""A kubelet for one twin node: runs the pods bound to it and reports their status like a real kubelet.

One sync worker per node processes pod keys from a work queue (watch events, container exits and timers all
just enqueue the pod), so a pod's state machine is never driven by two threads at once. Per sync:

1. a deleting pod is stopped (SIGTERM, ``Killing`` events, SIGKILL after ``deletionGracePeriodSeconds``), its
   DRA claims unprepared, and then the pod object is deleted with grace 0 (kubernetes-dra.md §8.2);
2. otherwise DRA claims are prepared first (§6: wait for allocation + ``reservedFor``, call the registered
   plugin, ``FailedPrepareDynamicResources`` + back-off on failure, the pod stays ``ContainerCreating``);
3. init containers run one at a time, then all containers; exits are handled by ``restartPolicy`` with the
   kubelet's crash-loop back-off (10 s doubling to 300 s by default, injectable for tests);
4. status (phase, conditions with real transition times, container statuses) is merged into the latest pod
   and written through the ``status`` subresource — only the kubelet-owned parts, so the scheduler's and the
   resourceclaim controller's status fields survive.

Readiness is approximated: a container is ready once running and ``readinessProbe.initialDelaySeconds`` has
passed; exec/http probes are not executed (docs/twin-fidelity.md).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetwin.api.core import Api, parse_time, rfc3339
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from kubetwin.informer import Informer, WorkQueue
from kubetwin.kubelet import images
from kubetwin.kubelet.runtime import STANDARD_PATH, Container, ProcessSpec, Runtime, StartError, read_log
from kubetwin.kubelet.seam import (
    ContainerContext,
    DraPlugin,
    PreparedDevice,
    PrepareResult,
    emulated_resolver,
    install_tools,
)

log = logging.getLogger(__name__)
PODS = core("pods")
CONFIGMAPS = core("configmaps")
SECRETS = core("secrets")
_PREPARE_PENDING = "\x00prepare in flight"
"""``_prepare`` result while a plugin's NodePrepareResources call is still running (no event, no back-off)."""
_PREPARE_INLINE_WAIT_S = 0.5
"""How long a sync waits for a prepare call before leaving it running in the background."""
_OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
_COND_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


@dataclass(frozen=True)
class KubeletConfig:
    """Timing knobs of the twin's kubelet."""

    backoff_initial_s: float = 10.0
    """First crash-loop back-off (kubelet: 10 s)."""
    backoff_max_s: float = 300.0
    """Back-off cap (kubelet: 5 min)."""
    prepare_backoff_initial_s: float = 1.0
    """First retry delay after a failed DRA prepare (pod-sync back-off)."""
    prepare_backoff_max_s: float = 30.0
    """Cap of the DRA prepare retry delay."""
    api_host: str = "127.0.0.1"
    """KUBERNETES_SERVICE_HOST given to containers."""
    api_port: int = 443
    """KUBERNETES_SERVICE_PORT given to containers (the twin's HTTPS port once known)."""
    dra_wipe_delay_s: float = 30.0
    """How long after a DRA plugin deregisters the kubelet deletes that driver's ResourceSlices of the node
    unless the plugin registers again (kubelet's DRA plugin manager wiping delay: a rolling plugin update keeps
    its slices, an uninstall removes them; kubernetes-dra.md §1.5)."""


@dataclass
class _CState:
    """Per-container bookkeeping across restarts."""

    current: Container | None = None
    restart_count: int = 0
    last: dict[str, Any] | None = None
    """The terminated state of the latest finished instance."""
    backoff_s: float = 0.0
    start_error: str = ""
    waiting: tuple[str, str] = ("ContainerCreating", "")
    started_once: bool = False
    completed: bool = False
    """An init container that finished successfully (never rerun)."""


@dataclass
class _PodState:
    uid: str
    ns: str
    name: str
    pod: dict[str, Any]
    containers: dict[str, _CState] = field(default_factory=dict)
    prepared: bool = False
    prepared_claims: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """pod-claim name → (claim uid, claim name, driver)."""
    devices: dict[str, tuple[PreparedDevice, ...]] = field(default_factory=dict)
    """claim uid → devices prepared for it."""
    prepare_backoff_s: float = 0.0
    conds: dict[str, dict[str, Any]] = field(default_factory=dict)
    start_time: str = ""
    pod_ip: str = ""
    terminating_since: dt.datetime | None = None
    kill_at: dt.datetime | None = None
    finished: bool = False
    removed: bool = False


class Kubelet:
    """The kubelet of one node (see the module docstring)."""

    def __init__(self, api: Api, node_name: str, run_dir: Path, *, config: KubeletConfig | None = None,
                 node_ip: str = "10.0.0.2", pod_cidr_prefix: str = "10.244.0",
                 api_client_factory: Callable[[], Any] | None = None,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.api = api
        self._node = node_name
        self.run_dir = run_dir
        self.config = config or KubeletConfig()
        self.node_ip = node_ip
        self._cidr = pod_cidr_prefix
        self._next_ip = 2
        self._api_client_factory = api_client_factory or _no_client
        self._now = now or api.clock.now
        self.runtime = Runtime(self._now)
        self._pods: dict[str, _PodState] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._uid_key: dict[str, tuple[str, str]] = {}
        self._lock = threading.RLock()
        self._plugins: dict[str, tuple[DraPlugin, object | None]] = {}
        self._registrations: dict[str, int] = {}
        self._claim_refs: dict[str, set[str]] = {}
        self._claim_results: dict[str, PrepareResult] = {}
        self._prepares: dict[tuple[str, str], Future[dict[str, PrepareResult]]] = {}
        self._queue = WorkQueue(api.monotonic)
        self._informer = Informer(api, PODS, field_selector=f"spec.nodeName={node_name}",
                                  name=f"kubelet-{node_name}")
        self._informer.add_handler(self._on_pod)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # -- NodeHandle ----------------------------------------------------------------------------------
    @property
    def node_name(self) -> str:
        return self._node

    def register_dra_plugin(self, driver: str, plugin: DraPlugin, *, owner: object | None = None) -> None:
        with self._lock:
            self._plugins[driver] = (plugin, owner)
            self._registrations[driver] = self._registrations.get(driver, 0) + 1
        for uid in list(self._pods):
            self._queue.add(uid)

    def unregister_dra_plugin(self, driver: str, *, owner: object | None = None) -> None:
        with self._lock:
            cur = self._plugins.get(driver)
            if cur is not None and (owner is None or cur[1] is owner):
                del self._plugins[driver]
                generation = self._registrations.get(driver, 0)
                threading.Thread(target=self._wipe_slices, args=(driver, generation), daemon=True,
                                 name=f"kubelet-wipe-{driver}").start()

    def _wipe_slices(self, driver: str, generation: int) -> None:
        """Delete ``driver``'s slices of this node once the wiping delay passed without a new registration."""
        if self._stop.wait(self.config.dra_wipe_delay_s):
            return
        with self._lock:
            if driver in self._plugins or self._registrations.get(driver, 0) != generation:
                return
        try:
            self.api.delete_collection(core("resourceslices"), None,
                                       field_selector=f"spec.nodeName={self._node},spec.driver={driver}")
        except ApiError as exc:
            log.warning("wiping ResourceSlices of %s on %s: %s", driver, self._node, exc.message)

    def dra_plugin(self, driver: str) -> DraPlugin | None:
        with self._lock:
            cur = self._plugins.get(driver)
            return cur[0] if cur else None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._informer.start()
        self._worker = threading.Thread(target=self._work, name=f"kubelet-sync-{self._node}", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.close()
        self._informer.stop()
        if self._worker is not None:
            self._worker.join(timeout=5)
        self.runtime.stop()

    def _on_pod(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        uid = str(obj["metadata"].get("uid", ""))
        m = obj["metadata"]
        with self._lock:
            self._uid_key[uid] = (str(m.get("namespace", "")), str(m["name"]))
        self._queue.add(uid)

    def _work(self) -> None:
        while not self._stop.is_set():
            uid = self._queue.get(timeout=0.5)
            if uid is None:
                continue
            try:
                self._sync(uid)
            except Exception:
                log.exception("kubelet %s: sync of pod %s failed", self._node, uid)
                self._queue.add_after(uid, 1.0)
            finally:
                self._queue.done(uid)

    # -- logs ----------------------------------------------------------------------------------------
    def log_path(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> Path | None:
        """The CRI log file of a container (``previous``: the instance before the last restart)."""
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            if st is None or container not in st.containers:
                return None
            cs = st.containers[container]
            idx = cs.restart_count - (1 if previous else 0)
            if idx < 0 or not cs.started_once:
                return None
            return self._pod_dir(st) / "logs" / container / f"{idx}.log"

    def read_log(self, namespace: str, pod: str, container: str, *, previous: bool = False,
                 timestamps: bool = False, tail_lines: int | None = None, since: dt.datetime | None = None,
                 limit_bytes: int | None = None) -> bytes:
        path = self.log_path(namespace, pod, container, previous=previous)
        if path is None:
            return b""
        lines, _ = read_log(path, timestamps=timestamps, tail_lines=tail_lines, since=since,
                            limit_bytes=limit_bytes)
        return b"".join(lines)

    # G's LogSource protocol (kubetwin.api.server): timestamped lines, the server applies options.
    def read(self, namespace: str, pod: str, container: str, *, previous: bool) -> bytes | None:
        path = self.log_path(namespace, pod, container, previous=previous)
        if path is None:
            return None
        lines, _ = read_log(path, timestamps=True)
        return b"".join(lines)

    def follow(self, namespace: str, pod: str, container: str, *, offset: int) -> Iterator[bytes]:
        path = self.log_path(namespace, pod, container)
        if path is None:
            return
        sent = offset
        while not self._stop.is_set():
            running = self.container_running(namespace, pod, container)
            lines, _ = read_log(path, timestamps=True)
            data = b"".join(lines)
            if len(data) > sent:
                yield data[sent:]
                sent = len(data)
            elif not running:
                return
            else:
                yield b""
                self._stop.wait(0.2)

    def container_running(self, namespace: str, pod: str, container: str) -> bool:
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            cs = st.containers.get(container) if st else None
            return bool(cs and cs.current and cs.current.running)

    def exec_spec(self, namespace: str, pod: str, container: str) -> ProcessSpec | None:
        """The process spec (env, work dir, emulated program) of the container's *running* instance, for
        ``pods/exec``; None when it is not running — a real kubelet only finds running containers to exec into
        (``container not found``)."""
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            cs = st.containers.get(container) if st else None
            cur = cs.current if cs else None
            return cur.spec if cur is not None and cur.running else None

    # -- sync ----------------------------------------------------------------------------------------
    def _pod_dir(self, st: _PodState) -> Path:
        return self.run_dir / "pods" / f"{st.ns}_{st.name}_{st.uid}"

    def _sync(self, uid: str) -> None:
        pod = None
        with self._lock:
            st = self._pods.get(uid)
        if st is None:
            ref = self._uid_key.get(uid)
            pod = self._informer.get(*ref) if ref else None
            if pod is None or pod["metadata"].get("uid") != uid:
                return
            st = _PodState(uid=uid, ns=pod["metadata"]["namespace"], name=pod["metadata"]["name"], pod=pod)
            with self._lock:
                self._pods[uid] = st
                self._by_key[(st.ns, st.name)] = uid
            st.start_time = rfc3339(self._now())
            st.pod_ip = "" if pod["spec"].get("hostNetwork") else f"{self._cidr}.{self._next_ip}"
            if pod["spec"].get("hostNetwork"):
                st.pod_ip = self.node_ip
            else:
                self._next_ip += 1
        cur = self._informer.get(st.ns, st.name)
        if cur is not None and cur["metadata"].get("uid") == uid:
            st.pod = cur
            gone = False
        else:
            gone = True
        if st.removed:
            return
        if gone or st.pod["metadata"].get("deletionTimestamp"):
            self._sync_terminating(st, gone)
            return
        if st.finished:
            return
        self._sync_running(st)

    # .. running ......................................................................................
    def _sync_running(self, st: _PodState) -> None:
        pod = st.pod
        spec = pod["spec"]
        if not st.prepared:
            err = self._prepare(st)
            if err == _PREPARE_PENDING:
                self._write_status(st)
                return
            if err is not None:
                self._event(pod, "Warning", "FailedPrepareDynamicResources",
                            f"Failed to prepare dynamic resources: prepare dynamic resources: {err}")
                st.prepare_backoff_s = min(self.config.prepare_backoff_max_s,
                                           st.prepare_backoff_s * 2 or self.config.prepare_backoff_initial_s)
                self._queue.add_after(st.uid, st.prepare_backoff_s)
                self._write_status(st)
                return
            st.prepared = True
        policy = spec.get("restartPolicy", "Always")
        inits = spec.get("initContainers") or []
        for c in inits:
            cs = st.containers.setdefault(c["name"], _CState())
            if cs.completed:
                continue
            if cs.current is not None and cs.current.running:
                self._write_status(st)
                return
            if (cs.last is not None and cs.current is None) or (cs.current is not None and not cs.current.running):
                self._reap(cs)
                if (cs.last or {}).get("exitCode") == 0:
                    cs.completed = True
                    continue
                if policy == "Never":
                    st.finished = True
                    self._write_status(st)
                    self._unprepare_all(st)
                    return
                if not self._restart_due(st, c, cs):
                    self._write_status(st)
                    return
            self._start(st, c, cs, init=True)
            self._write_status(st)
            return
        for c in spec.get("containers") or []:
            cs = st.containers.setdefault(c["name"], _CState())
            if cs.current is not None and not cs.current.running:
                self._reap(cs)
            if cs.current is not None:
                continue
            if not cs.started_once and not cs.start_error:
                self._start(st, c, cs, init=False)
                continue
            code = (cs.last or {}).get("exitCode", 1)
            wants = policy == "Always" or (policy == "OnFailure" and code != 0)
            if wants and self._restart_due(st, c, cs):
                self._start(st, c, cs, init=False)
        phase = self._phase(st)
        if phase in ("Succeeded", "Failed"):
            st.finished = True
        self._write_status(st)
        if st.finished:
            self._unprepare_all(st)

    def _restart_due(self, st: _PodState, c: dict[str, Any], cs: _CState) -> bool:
        """Crash-loop back-off: the first restart is immediate, then 10 s, 20 s, … (kuberuntime doBackOff)."""
        finished = parse_time(str((cs.last or {}).get("finishedAt") or rfc3339(self._now())))
        if cs.backoff_s == 0:
            cs.backoff_s = self.config.backoff_initial_s
            return True
        due = finished + dt.timedelta(seconds=cs.backoff_s)
        now = self._now()
        if now >= due:
            cs.backoff_s = min(cs.backoff_s * 2, self.config.backoff_max_s)
            return True
        msg = (f"back-off {_dur(cs.backoff_s)} restarting failed container={c['name']} "
               f"pod={st.name}_{st.ns}({st.uid})")
        if cs.waiting[0] != "CrashLoopBackOff":
            self._event(st.pod, "Warning", "BackOff",
                        f"Back-off restarting failed container {c['name']} in pod {st.name}_{st.ns}({st.uid})")
        cs.waiting = ("CrashLoopBackOff", msg)
        self._queue.add_after(st.uid, max(0.01, (due - now).total_seconds()))
        return False

    def _reap(self, cs: _CState) -> None:
        c = cs.current
        if c is None or c.running:
            return
        code = int(c.exit_code if c.exit_code is not None else 137)
        cs.last = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": rfc3339(c.started_at), "finishedAt": rfc3339(c.finished_at or self._now()),
            "containerID": c.id}, "exitCode": code, "finishedAt": rfc3339(c.finished_at or self._now())}
        cs.current = None

    def _start(self, st: _PodState, c: dict[str, Any], cs: _CState, *, init: bool) -> None:
        pod = st.pod
        if cs.started_once or cs.start_error:
            cs.restart_count += 1
        cs.started_once = True
        image = str(c.get("image", ""))
        pull = c.get("imagePullPolicy") or ("Always" if images.normalize_image(image).endswith(":latest")
                                            else "IfNotPresent")
        if pull == "Always":
            self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"', c)
            self._event(pod, "Normal", "Pulled", f'Successfully pulled image "{image}" in 0s (0s including '
                                                  f'waiting). Image size: 0 bytes.', c)
        else:
            self._event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine', c)
        cdir = self._pod_dir(st) / "containers" / c["name"]
        work = cdir / "root"
        tools_dir = cdir / "bin"
        env = self._env(st, c)
        devices = self._container_devices(st, c)
        for d in devices:
            env.update(d.env)
        if tools_dir.exists():
            shutil.rmtree(tools_dir)
        install_tools(tools_dir, devices)
        env["PATH"] = f"{tools_dir}:{env.get('PATH') or STANDARD_PATH}"
        env.setdefault("HOME", str(work))
        argv = _expand_argv(c, env)
        log_path = self._pod_dir(st) / "logs" / c["name"] / f"{cs.restart_count}.log"
        resolver = emulated_resolver(image)
        spec = ProcessSpec(argv=argv or [], env=env, work_dir=work, log_path=log_path)
        if resolver is not None:
            ctx = ContainerContext(pod=copy.deepcopy(pod), container=copy.deepcopy(c), argv=argv or [], env=env,
                                   image=image, node=self, stdout=None, stderr=None,  # type: ignore[arg-type]
                                   stop=threading.Event(), killed=threading.Event(), work_dir=work,
                                   api_client=self._api_client_factory, api=self.api,
                                   restart_count=cs.restart_count)
            program = resolver(ctx)
            if program is None:
                self._start_failed(st, c, cs, f'exec: "{(argv or ["<none>"])[0]}": executable file not found '
                                              f'in $PATH')
                return
            spec.program, spec.context = program, ctx
        elif not argv:
            self._start_failed(st, c, cs, "no command specified")
            return
        self._event(pod, "Normal", "Created", f"Created container: {c['name']}", c)
        uid = st.uid
        try:
            inst = self.runtime.start(spec, lambda _c: self._on_exit(uid, _c))
        except StartError as exc:
            self._start_failed(st, c, cs, str(exc))
            return
        cs.current = inst
        cs.start_error = ""
        cs.waiting = ("", "")
        self._event(pod, "Normal", "Started", f"Started container {c['name']}", c)

    def _on_exit(self, uid: str, c: Container) -> None:
        if c.context is not None:
            with self._lock:
                gone = [drv for drv, (_p, owner) in self._plugins.items() if owner is c.context]
            for drv in gone:
                self.unregister_dra_plugin(drv, owner=c.context)
        self._queue.add(uid)

    def _start_failed(self, st: _PodState, c: dict[str, Any], cs: _CState, why: str) -> None:
        """What containerd+runc report when the process cannot be started: StartError, exit code 128."""
        msg = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc "
               f"create failed: unable to start container process: error during container init: {why}: unknown")
        now = rfc3339(self._now())
        self._event(st.pod, "Warning", "Failed", f"Error: {msg}", c)
        cs.start_error = msg
        cs.last = {"terminated": {"exitCode": 128, "reason": "StartError", "message": msg,
                                  "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now,
                                  "containerID": "containerd://" + _hexid(st.uid + c["name"] + now)},
                   "exitCode": 128, "finishedAt": now}
        cs.current = None
        self._queue.add(st.uid)

    # .. terminating ..................................................................................
    def _sync_terminating(self, st: _PodState, gone: bool) -> None:
        now = self._now()
        pod = st.pod
        live = [(n, cs) for n, cs in st.containers.items() if cs.current is not None and cs.current.running]
        if st.terminating_since is None:
            st.terminating_since = now
            grace = 0 if gone else int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            st.kill_at = now + dt.timedelta(seconds=grace)
            for n, cs in live:
                spec_c = _find_container(pod, n)
                self._event(pod, "Normal", "Killing", f"Stopping container {n}", spec_c)
                assert cs.current is not None
                if grace > 0:
                    self.runtime.terminate(cs.current)
                else:
                    self.runtime.kill(cs.current)
            if live and grace > 0:
                self._queue.add_after(st.uid, float(grace))
        elif live and st.kill_at is not None and now >= st.kill_at:
            for _n, cs in live:
                assert cs.current is not None
                self.runtime.kill(cs.current)
        if live:
            return
        for cs in st.containers.values():
            if cs.current is not None:
                self._reap(cs)
        err = self._unprepare_all(st)
        if err:
            self._event(pod, "Warning", "FailedUnprepareDynamicResources",
                        f"Failed to unprepare dynamic resources: unprepare dynamic resources: {err}")
            self._queue.add_after(st.uid, 1.0)
            return
        if not gone:
            st.finished = True
            self._write_status(st, terminal=True)
            try:
                self.api.delete(PODS, st.ns, st.name, grace_period_seconds=0, preconditions={"uid": st.uid})
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
        st.removed = True
        with self._lock:
            self._uid_key.pop(st.uid, None)
            self._pods.pop(st.uid, None)
            if self._by_key.get((st.ns, st.name)) == st.uid:
                self._by_key.pop((st.ns, st.name), None)

    # .. DRA ..........................................................................................
    def _pod_claims(self, pod: dict[str, Any]) -> list[tuple[str, str]]:
        """(pod claim name, ResourceClaim name or "") for every claim the pod uses (§6 step 1)."""
        out: list[tuple[str, str]] = []
        statuses = {s.get("name"): s.get("resourceClaimName", "")
                    for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
        for rc in pod["spec"].get("resourceClaims") or []:
            if rc.get("resourceClaimName"):
                out.append((rc["name"], rc["resourceClaimName"]))
            else:
                out.append((rc["name"], str(statuses.get(rc["name"]) or "")))
        ext = (pod.get("status") or {}).get("extendedResourceClaimStatus")
        if ext and ext.get("resourceClaimName"):
            out.append(("\x00extended", ext["resourceClaimName"]))
        return out

    def _prepare(self, st: _PodState) -> str | None:
        pod = st.pod
        claims = self._pod_claims(pod)
        if not claims:
            return None
        by_driver: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for pc_name, claim_name in claims:
            if not claim_name:
                return f'pod "{st.ns}/{st.name}": ResourceClaim not created yet'
            try:
                claim = self.api.get(core("resourceclaims"), st.ns, claim_name)
            except ApiError as exc:
                return f"fetch ResourceClaim {claim_name}: {exc.message}"
            cuid = claim["metadata"]["uid"]
            status = claim.get("status") or {}
            reserved = {r.get("uid") for r in status.get("reservedFor") or []}
            if not status.get("allocation") or st.uid not in reserved:
                return (f"pod {st.name} ({st.uid}) is not allowed to use ResourceClaim {claim_name} "
                        f"({cuid})")
            drivers = sorted({r.get("driver", "") for r in
                              ((status["allocation"].get("devices") or {}).get("results") or [])})
            for drv in drivers:
                by_driver.setdefault(drv, []).append((pc_name, claim))
            st.prepared_claims[pc_name] = (cuid, claim_name, ",".join(drivers))
        for drv, items in by_driver.items():
            plugin = self.dra_plugin(drv)
            if plugin is None:
                return f"DRA driver {drv} is not registered"
            todo = [c for _n, c in items if c["metadata"]["uid"] not in self._claim_results]
            if todo:
                req = [{"namespace": c["metadata"]["namespace"], "name": c["metadata"]["name"],
                        "uid": c["metadata"]["uid"]} for c in todo]
                results = self._call_prepare(st.uid, drv, plugin, req)
                if results is None:
                    return _PREPARE_PENDING
                skipped = 0
                for c in todo:
                    res = results.get(c["metadata"]["uid"])
                    if res is None:
                        skipped += 1
                        continue
                    if res.error:
                        return f"NodePrepareResources failed for ResourceClaim {c['metadata']['name']}: {res.error}"
                if skipped:
                    return f"NodePrepareResources skipped {skipped} ResourceClaims"
                for c in todo:
                    self._claim_results[c["metadata"]["uid"]] = results[c["metadata"]["uid"]]
        for _pc, (cuid, _n, _d) in st.prepared_claims.items():
            self._claim_refs.setdefault(cuid, set()).add(st.uid)
            res = self._claim_results.get(cuid)
            st.devices[cuid] = res.devices if res else ()
        return None

    def _call_prepare(self, pod_uid: str, driver: str, plugin: DraPlugin,
                      req: list[dict[str, str]]) -> dict[str, PrepareResult] | None:
        """NodePrepareResources off the node's sync worker; None while it still runs (the pod is re-queued when
        it finishes). A real kubelet prepares in the pod's own worker, so a plugin that waits for another pod of
        the same node (the NVIDIA plugin waits for its MPS control-daemon pod) must not stall that pod."""
        key = (pod_uid, driver)
        with self._lock:
            fut = self._prepares.get(key)
            if fut is None:
                fut = self._prepares[key] = Future()
                started = fut

                def run() -> None:
                    try:
                        started.set_result(plugin.prepare(req))
                    except BaseException as exc:  # surfaced by fut.result() in the next sync
                        started.set_exception(exc)
                    self._queue.add(pod_uid)

                threading.Thread(target=run, daemon=True, name=f"kubelet-prepare-{driver}").start()
        try:
            results = fut.result(timeout=_PREPARE_INLINE_WAIT_S)
        except TimeoutError:
            return None
        finally:
            if fut.done():
                with self._lock:
                    self._prepares.pop(key, None)
        return results

    def _unprepare_all(self, st: _PodState) -> str:
        """Unprepare claims no other pod on this node uses; '' on success."""
        for pc_name, (cuid, cname, drivers) in list(st.prepared_claims.items()):
            refs = self._claim_refs.get(cuid, set())
            refs.discard(st.uid)
            if refs:
                del st.prepared_claims[pc_name]
                continue
            for drv in [d for d in drivers.split(",") if d]:
                plugin = self.dra_plugin(drv)
                if plugin is None:
                    return f"DRA driver {drv} is not registered"
                errs = plugin.unprepare([{"namespace": st.ns, "name": cname, "uid": cuid}])
                if errs.get(cuid):
                    return f"NodeUnprepareResources failed for ResourceClaim {cname}: {errs[cuid]}"
            self._claim_refs.pop(cuid, None)
            self._claim_results.pop(cuid, None)
            del st.prepared_claims[pc_name]
        return ""

    def _container_devices(self, st: _PodState, c: dict[str, Any]) -> list[PreparedDevice]:
        out: list[PreparedDevice] = []
        for ref in (c.get("resources") or {}).get("claims") or []:
            entry = st.prepared_claims.get(ref.get("name", ""))
            if entry is None:
                continue
            for d in st.devices.get(entry[0], ()):
                if not ref.get("request") or ref["request"] in d.request_names:
                    out.append(d)
        ext = (st.pod.get("status") or {}).get("extendedResourceClaimStatus")
        entry = st.prepared_claims.get("\x00extended")
        if ext and entry is not None:
            wanted = {m.get("requestName") for m in ext.get("requestMappings") or []
                      if m.get("containerName") == c["name"]}
            out += [d for d in st.devices.get(entry[0], ()) if wanted & set(d.request_names)]
        return out

    # .. env ..........................................................................................
    def _env(self, st: _PodState, c: dict[str, Any]) -> dict[str, str]:
        pod = st.pod
        env: dict[str, str] = {"PATH": STANDARD_PATH, "HOSTNAME": str(pod["spec"].get("hostname") or st.name)}
        host, port = self.config.api_host, str(self.config.api_port)
        env.update({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                    "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}",
                    f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}"})
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for kind, rt in (("configMapRef", CONFIGMAPS), ("secretRef", SECRETS)):
                ref = src.get(kind)
                if not ref:
                    continue
                obj = self.api.try_get(rt, st.ns, ref.get("name", ""))
                data = _decoded(obj, kind == "secretRef") if obj else {}
                for k, v in data.items():
                    env[prefix + k] = v
        for e in c.get("env") or []:
            name = e.get("name", "")
            if "value" in e:
                env[name] = _expand(str(e["value"]), env)
                continue
            vf = e.get("valueFrom") or {}
            val = self._value_from(st, vf)
            if val is not None:
                env[name] = val
        return env

    def _value_from(self, st: _PodState, vf: dict[str, Any]) -> str | None:
        pod = st.pod
        if "fieldRef" in vf:
            path = vf["fieldRef"].get("fieldPath", "")
            m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if m:
                return str((pod["metadata"].get(m.group(1)) or {}).get(m.group(2), ""))
            return {
                "metadata.name": st.name, "metadata.namespace": st.ns, "metadata.uid": st.uid,
                "spec.nodeName": self._node, "spec.serviceAccountName": str(pod["spec"].get("serviceAccountName",
                                                                                            "default")),
                "status.podIP": st.pod_ip, "status.podIPs": st.pod_ip, "status.hostIP": self.node_ip,
                "status.hostIPs": self.node_ip,
            }.get(path, "")
        for kind, rt in (("configMapKeyRef", CONFIGMAPS), ("secretKeyRef", SECRETS)):
            if kind in vf:
                ref = vf[kind]
                obj = self.api.try_get(rt, st.ns, ref.get("name", ""))
                data = _decoded(obj, kind == "secretKeyRef") if obj else {}
                return data.get(ref.get("key", ""))
        if "resourceFieldRef" in vf:
            return "0"
        return None

    # .. status .......................................................................................
    def _phase(self, st: _PodState) -> str:
        spec = st.pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        inits = spec.get("initContainers") or []
        if policy == "Never" and any(
                (cs := st.containers.get(c["name"])) and cs.current is None and cs.last
                and cs.last.get("exitCode") != 0 and not cs.completed for c in inits):
            return "Failed"
        mains = spec.get("containers") or []
        states = [st.containers.get(c["name"]) for c in mains]
        if any(cs is None or (cs.current is None and cs.last is None) for cs in states):
            return "Pending"
        if any(cs is not None and cs.current is not None for cs in states):
            return "Running"
        codes = [int((cs.last or {}).get("exitCode", 1)) for cs in states if cs is not None]
        if policy == "Always":
            return "Running"
        if policy == "OnFailure":
            return "Succeeded" if all(c == 0 for c in codes) else "Running"
        return "Succeeded" if all(c == 0 for c in codes) else "Failed"

    def _cond(self, st: _PodState, ctype: str, ok: bool, reason: str = "", message: str = "") -> None:
        status = "True" if ok else "False"
        prev = st.conds.get(ctype)
        ltt = prev["lastTransitionTime"] if prev and prev["status"] == status else rfc3339(self._now())
        c: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": ltt}
        if ctype != "PodReadyToStartContainers" or not ok:
            if not ok and reason:
                c["reason"] = reason
            if not ok and message:
                c["message"] = message
        if ok and reason == "PodCompleted":
            c["reason"] = reason
        c.pop("lastProbeTime", None) if ctype == "PodReadyToStartContainers" else None
        st.conds[ctype] = c

    def _container_status(self, st: _PodState, c: dict[str, Any], *, init: bool, terminal: bool) -> dict[str, Any]:
        cs = st.containers.get(c["name"]) or _CState()
        image = images.normalize_image(str(c.get("image", "")))
        out: dict[str, Any] = {"name": c["name"], "image": image, "imageID": "",
                               "restartCount": cs.restart_count, "ready": False, "started": False}
        last_term = (cs.last or {}).get("terminated")
        if cs.current is not None and cs.current.running:
            started = rfc3339(cs.current.started_at)
            out["state"] = {"running": {"startedAt": started}}
            out["containerID"] = cs.current.id
            out["started"] = True
            delay = float((c.get("readinessProbe") or {}).get("initialDelaySeconds") or 0)
            ready = (self._now() - cs.current.started_at).total_seconds() >= delay
            if not ready:
                self._queue.add_after(st.uid, delay)
            out["ready"] = ready and not init
            if last_term:
                out["lastState"] = {"terminated": dict(last_term)}
        elif last_term and (cs.waiting[0] == "CrashLoopBackOff" and not terminal):
            out["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": cs.waiting[1]}}
            out["lastState"] = {"terminated": dict(last_term)}
            out["containerID"] = last_term.get("containerID")
        elif last_term:
            out["state"] = {"terminated": dict(last_term)}
            out["containerID"] = last_term.get("containerID")
            if init and cs.completed:
                out["ready"] = True
        else:
            reason = "PodInitializing" if (not init and st.prepared and _inits_pending(st)) else "ContainerCreating"
            if init and st.prepared and not _is_first_pending_init(st, c["name"]):
                reason = "PodInitializing"
            out["state"] = {"waiting": {"reason": reason}}
        if out.get("containerID"):
            out["imageID"] = f"{image.rsplit(':', 1)[0]}@sha256:{_hexid(image)}"
        else:
            out.pop("imageID")
            out["imageID"] = ""
        if out.get("containerID") is None:
            out.pop("containerID", None)
        out["volumeMounts"] = [{"name": m.get("name"), "mountPath": m.get("mountPath")}
                               for m in c.get("volumeMounts") or []] or None
        if out["volumeMounts"] is None:
            del out["volumeMounts"]
        return out

    def _write_status(self, st: _PodState, *, terminal: bool = False) -> None:
        spec = st.pod["spec"]
        inits = spec.get("initContainers") or []
        mains = spec.get("containers") or []
        phase = self._phase(st)
        if terminal and phase not in ("Succeeded", "Failed"):
            codes = [int((cs.last or {}).get("exitCode", 137)) for cs in
                     (st.containers.get(c["name"]) for c in mains) if cs is not None]
            phase = "Succeeded" if codes and all(c == 0 for c in codes) else "Failed"
        init_st = [self._container_status(st, c, init=True, terminal=terminal) for c in inits]
        main_st = [self._container_status(st, c, init=False, terminal=terminal) for c in mains]
        self._cond(st, "PodReadyToStartContainers", st.prepared and not terminal)
        pending_inits = [c["name"] for c in inits if not (st.containers.get(c["name"]) or _CState()).completed]
        inits_ok = not pending_inits or phase == "Succeeded"
        self._cond(st, "Initialized", inits_ok, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending_inits)}]")
        unready = [s["name"] for s in main_st if not s["ready"]]
        if phase == "Succeeded":
            self._cond(st, "Ready", False, "PodCompleted")
            self._cond(st, "ContainersReady", False, "PodCompleted")
        else:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            self._cond(st, "Ready", not unready, "ContainersNotReady", msg)
            self._cond(st, "ContainersReady", not unready, "ContainersNotReady", msg)
        for attempt in range(5):
            cur = self._informer.get(st.ns, st.name) if attempt == 0 else self.api.try_get(PODS, st.ns, st.name)
            if cur is None or cur["metadata"].get("uid") != st.uid:
                return
            status = copy.deepcopy(cur.get("status") or {})
            status["phase"] = phase
            conds = [c for c in status.get("conditions") or [] if c.get("type") not in _OWNED_CONDITIONS]
            conds += [st.conds[t] for t in _OWNED_CONDITIONS if t in st.conds]
            conds.sort(key=lambda c: _COND_ORDER.index(c["type"]) if c["type"] in _COND_ORDER else 99)
            status["conditions"] = conds
            status["hostIP"] = self.node_ip
            status["hostIPs"] = [{"ip": self.node_ip}]
            if st.pod_ip:
                status["podIP"] = st.pod_ip
                status["podIPs"] = [{"ip": st.pod_ip}]
            status["startTime"] = st.start_time
            if init_st:
                status["initContainerStatuses"] = init_st
            status["containerStatuses"] = main_st
            if status == cur.get("status"):
                return
            body = {"metadata": {"name": st.name, "namespace": st.ns,
                                 "resourceVersion": cur["metadata"]["resourceVersion"]}, "status": status}
            try:
                self.api.update(PODS, st.ns, st.name, body, subresource="status")
                return
            except ApiError as exc:
                if exc.code == 404:
                    return
                if exc.code != 409:
                    raise

    def _event(self, pod: dict[str, Any], etype: str, reason: str, message: str,
               container: dict[str, Any] | None = None) -> None:
        involved = pod
        if container is not None:
            involved = copy.copy(pod)
        self.api.record_event(involved, reason, message, type=etype, component="kubelet", host=self._node)


def _no_client() -> Any:
    raise RuntimeError("this kubelet has no API client factory (the twin's HTTPS server is not running)")


def _find_container(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    for c in (pod["spec"].get("initContainers") or []) + (pod["spec"].get("containers") or []):
        if c.get("name") == name:
            return dict(c)
    return None


def _inits_pending(st: _PodState) -> bool:
    return any(not (st.containers.get(c["name"]) or _CState()).completed
               for c in st.pod["spec"].get("initContainers") or [])


def _is_first_pending_init(st: _PodState, name: str) -> bool:
    for c in st.pod["spec"].get("initContainers") or []:
        if not (st.containers.get(c["name"]) or _CState()).completed:
            return bool(c["name"] == name)
    return False


def _decoded(obj: dict[str, Any], secret: bool) -> dict[str, str]:
    import base64

    out: dict[str, str] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode(errors="replace")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v)
    else:
        out.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
    return out


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars substituted, ``$$`` → ``$``, undefined left as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, s)


def _expand_argv(c: dict[str, Any], env: dict[str, str]) -> list[str] | None:
    """command + args as the runtime execs them. The images the twin knows have no ENTRYPOINT (only a CMD,
    see ``images.IMAGE_DEFAULTS``), so ``args`` alone replace the CMD and ``command`` replaces both."""
    cmd = list(c.get("command") or [])
    args = list(c.get("args") or [])
    argv = cmd + args if (cmd or args) else (images.image_default_argv(str(c.get("image", ""))) or [])
    return [_expand(str(a), env) for a in argv] or None


def _hexid(s: str) -> str:
    import hashlib

    return hashlib.sha256(s.encode()).hexdigest()


def _dur(seconds: float) -> str:
    """Go's time.Duration String for whole/fractional seconds and minutes (``10s``, ``1m20s``, ``5m0s``)."""
    if seconds < 60:
        return f"{seconds:g}s"
    m, s = divmod(seconds, 60)
    return f"{int(m)}m{s:g}s"


__all__ = ["Kubelet", "KubeletConfig"]
