"""A kubelet for one twin node: runs the pods bound to it and reports their status like a real kubelet.

One sync worker per node processes pod keys from a work queue (watch events, container exits and timers all
just enqueue the pod), so a pod's state machine is never driven by two threads at once. Per sync:

The concerns live in sibling modules: :mod:`~kubetwin.kubelet.podstate` (bookkeeping, settings),
:mod:`~kubetwin.kubelet.env` (environment and argv), :mod:`~kubetwin.kubelet.dra` (plugins, prepare/unprepare),
:mod:`~kubetwin.kubelet.status` (phase, conditions, container statuses), :mod:`~kubetwin.kubelet.runtime`
(processes, logs), :mod:`~kubetwin.kubelet.sandbox` + :mod:`~kubetwin.kubelet.shim` (each container's own mount
and PID namespace), :mod:`~kubetwin.kubelet.volumes`, :mod:`~kubetwin.kubelet.probes`; this module is the pod
state machine plus the log/exec/endpoint access the API server uses.

1. a deleting pod is stopped (SIGTERM, ``Killing`` events, SIGKILL after ``deletionGracePeriodSeconds``), its
   DRA claims unprepared, and then the pod object is deleted with grace 0 (kubernetes-dra.md §8.2);
2. otherwise DRA claims are prepared first (§6: wait for allocation + ``reservedFor``, call the registered
   plugin, ``FailedPrepareDynamicResources`` + back-off on failure, the pod stays ``ContainerCreating``);
3. init containers run one at a time, then all containers; exits are handled by ``restartPolicy`` with the
   kubelet's crash-loop back-off (10 s doubling to 300 s by default, injectable for tests);
4. running containers are probed (:class:`~kubetwin.kubelet.probes.Prober`): readiness sets ``ready``, a failed
   liveness/startup probe kills the container, which then restarts per ``restartPolicy``;
5. status is written through :class:`~kubetwin.kubelet.status.StatusWriter`.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetwin.api.core import Api, parse_time, rfc3339
from kubetwin.api.errors import ApiError
from kubetwin.api.faults import Faults
from kubetwin.api.resources import core
from kubetwin.controlplane import MIRROR_ANNOTATION
from kubetwin.informer import Informer, WorkQueue
from kubetwin.kubelet import images
from kubetwin.kubelet.access import PodAccess
from kubetwin.kubelet.dra import PREPARE_PENDING, DraManager
from kubetwin.kubelet.env import NodeFacts, container_env, expand_argv
from kubetwin.kubelet.podstate import (
    ContainerState,
    KubeletConfig,
    PodState,
    find_container,
    go_duration,
    hexid,
    pod_loopback,
)
from kubetwin.kubelet.probes import Prober, ProbeTarget, run_in_container
from kubetwin.kubelet.runtime import STANDARD_PATH, Container, ProcessSpec, Runtime, StartError
from kubetwin.kubelet.sandbox import (
    Sandbox,
    base_mounts,
    dev_mounts,
    etc_mounts,
    namespaces_available,
    pod_etc_files,
    prepare_root,
    proc_mounts,
)
from kubetwin.kubelet.seam import (
    ContainerContext,
    DraPlugin,
    ImageResolver,
    PreparedDevice,
    emulated_resolver,
    host_files_installers,
    install_tools,
)
from kubetwin.kubelet.status import StatusWriter, pod_phase
from kubetwin.kubelet.volumes import VolumeContext, container_mounts, materialize

log = logging.getLogger(__name__)
PODS = core("pods")


def _crashing(line: str) -> ImageResolver:
    """A resolver whose program logs ``line`` and exits 1 (an injected ``crash`` fault, for any image)."""

    def program(ctx: ContainerContext) -> int:
        ctx.stderr.write(line + "\n")
        return 1

    return lambda _ctx: program


class Kubelet(PodAccess):
    """The kubelet of one node (see the module docstring)."""

    def __init__(self, api: Api, node_name: str, run_dir: Path, *, config: KubeletConfig | None = None,
                 node_ip: str = "10.0.0.2", pod_cidr_prefix: str = "10.244.0",
                 api_client_factory: Callable[[], Any] | None = None,
                 now: Callable[[], dt.datetime] | None = None, faults: Faults | None = None) -> None:
        self.api = api
        self.faults = faults or Faults()
        """Injected faults (kubetwin.api.faults): ``crash`` makes matching containers exit 1 at start."""
        self._node = node_name
        self.run_dir = run_dir
        self.config = config or KubeletConfig()
        self.node_ip = node_ip
        self._cidr = pod_cidr_prefix
        self._next_ip = 2
        self._api_client_factory = api_client_factory or _no_client
        self._now = now or api.clock.now
        self.runtime = Runtime(self._now)
        self._pods: dict[str, PodState] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._uid_key: dict[str, tuple[str, str]] = {}
        self._lock = threading.RLock()
        self._queue = WorkQueue(api.monotonic)
        self._informer = Informer(api, PODS, field_selector=f"spec.nodeName={node_name}",
                                  name=f"kubelet-{node_name}")
        self._informer.add_handler(self._on_pod)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._dra = DraManager(api, node_name, self.config.dra_wipe_delay_s, self._stop, self._queue.add)
        self.host_root = run_dir / "host"
        """The node's emulated ``/`` (vendor host files, hostPath volumes)."""
        self._host_files_done: set[str] = set()
        self._status = StatusWriter(api, self._informer, node_ip, self._now, self._probed)
        self._prober = Prober(self._now, self._queue.add, self._stop)

    # -- NodeHandle ----------------------------------------------------------------------------------
    @property
    def node_name(self) -> str:
        return self._node

    def register_dra_plugin(self, driver: str, plugin: DraPlugin, *, owner: object | None = None) -> None:
        self._dra.register(driver, plugin, owner)
        for uid in list(self._pods):
            self._queue.add(uid)

    def unregister_dra_plugin(self, driver: str, *, owner: object | None = None) -> None:
        self._dra.unregister(driver, owner)

    def dra_plugin(self, driver: str) -> DraPlugin | None:
        return self._dra.plugin(driver)

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
        if MIRROR_ANNOTATION in (m.get("annotations") or {}):
            return  # a mirror pod: the kubelet runs the static pod it mirrors, never the API object
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

    # -- sync ----------------------------------------------------------------------------------------
    def _sync(self, uid: str) -> None:
        pod = None
        with self._lock:
            st = self._pods.get(uid)
        if st is None:
            ref = self._uid_key.get(uid)
            pod = self._informer.get(*ref) if ref else None
            if pod is None or pod["metadata"].get("uid") != uid:
                return
            st = PodState(uid=uid, ns=pod["metadata"]["namespace"], name=pod["metadata"]["name"], pod=pod)
            with self._lock:
                self._pods[uid] = st
                self._by_key[(st.ns, st.name)] = uid
            st.start_time = rfc3339(self._now())
            st.loopback = pod_loopback(uid)
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
    def _sync_running(self, st: PodState) -> None:
        pod = st.pod
        spec = pod["spec"]
        if not st.prepared:
            err = self._dra.prepare(st)
            if err == PREPARE_PENDING:
                self._status.write(st)
                return
            if err is not None:
                self._event(pod, "Warning", "FailedPrepareDynamicResources",
                            f"Failed to prepare dynamic resources: prepare dynamic resources: {err}")
                st.prepare_backoff_s = min(self.config.prepare_backoff_max_s,
                                           st.prepare_backoff_s * 2 or self.config.prepare_backoff_initial_s)
                self._queue.add_after(st.uid, st.prepare_backoff_s)
                self._status.write(st)
                return
            st.prepared = True
        policy = spec.get("restartPolicy", "Always")
        inits = spec.get("initContainers") or []
        for c in inits:
            cs = st.containers.setdefault(c["name"], ContainerState())
            if cs.completed:
                continue
            if cs.current is not None and cs.current.running:
                self._status.write(st)
                return
            if (cs.last is not None and cs.current is None) or (cs.current is not None and not cs.current.running):
                self._reap(cs)
                if (cs.last or {}).get("exitCode") == 0:
                    cs.completed = True
                    continue
                if policy == "Never":
                    st.finished = True
                    self._status.write(st)
                    self._dra.unprepare_all(st)
                    return
                if not self._restart_due(st, c, cs):
                    self._status.write(st)
                    return
            self._start(st, c, cs, init=True)
            if not self._relist_pending(st):
                self._status.write(st)
            return
        for c in spec.get("containers") or []:
            cs = st.containers.setdefault(c["name"], ContainerState())
            if cs.current is not None and not cs.current.running:
                self._reap(cs)
            if cs.current is not None:
                self._act_on_probes(st, c, cs)
                continue
            if not cs.started_once and not cs.start_error:
                self._start(st, c, cs, init=False)
                continue
            code = (cs.last or {}).get("exitCode", 1)
            wants = policy == "Always" or (policy == "OnFailure" and code != 0)
            if wants and self._restart_due(st, c, cs):
                self._start(st, c, cs, init=False)
        phase = pod_phase(st)
        if phase in ("Succeeded", "Failed"):
            st.finished = True
        if self._relist_pending(st):
            return
        self._status.write(st)
        if st.finished:
            self._dra.unprepare_all(st)

    def _relist_pending(self, st: PodState) -> bool:
        """A container started less than ``pleg_relist_s`` ago and has neither printed nor exited: the status
        waits for the "relist" (re-queued), as a real kubelet's does (:class:`KubeletConfig`)."""
        now, relist = self._now(), self.config.pleg_relist_s
        waits = [relist - (now - cs.current.started_at).total_seconds() for cs in st.containers.values()
                 if cs.current is not None and cs.current.running and not cs.current.log.wrote.is_set()]
        waits = [w for w in waits if w > 0]
        if waits:
            self._queue.add_after(st.uid, min(waits))
        return bool(waits)

    def _restart_due(self, st: PodState, c: dict[str, Any], cs: ContainerState) -> bool:
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
        msg = (f"back-off {go_duration(cs.backoff_s)} restarting failed container={c['name']} "
               f"pod={st.name}_{st.ns}({st.uid})")
        if cs.waiting[0] != "CrashLoopBackOff":
            self._event(st.pod, "Warning", "BackOff",
                        f"Back-off restarting failed container {c['name']} in pod {st.name}_{st.ns}({st.uid})")
        cs.waiting = ("CrashLoopBackOff", msg)
        self._queue.add_after(st.uid, max(0.01, (due - now).total_seconds()))
        return False

    def _reap(self, cs: ContainerState) -> None:
        c = cs.current
        if c is None or c.running:
            return
        code = int(c.exit_code if c.exit_code is not None else 137)
        cs.last = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": rfc3339(c.started_at), "finishedAt": rfc3339(c.finished_at or self._now()),
            "containerID": c.id}, "exitCode": code, "finishedAt": rfc3339(c.finished_at or self._now())}
        cs.current = None

    def _start(self, st: PodState, c: dict[str, Any], cs: ContainerState, *, init: bool) -> None:
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
        env = container_env(self.api, self.config, NodeFacts(self._node, self.node_ip), st, c)
        devices = self._dra.container_devices(st, c)
        for d in devices:
            env.update(d.env)
        if tools_dir.exists():
            shutil.rmtree(tools_dir)
        install_tools(tools_dir, devices)
        sandbox = self._sandbox(st, c, work, tools_dir, devices) if namespaces_available() else None
        if sandbox is None:
            env["PATH"] = f"{tools_dir}:{env.get('PATH') or STANDARD_PATH}"
            env.setdefault("HOME", str(work))
        else:
            env.setdefault("HOME", "/root")
        argv = expand_argv(c, env)
        log_path = self._pod_dir(st) / "logs" / c["name"] / f"{cs.restart_count}.log"
        resolver = emulated_resolver(image)
        crash = self.faults.crash(str(c["name"]), image)
        if crash is not None:
            resolver = _crashing(crash)
        spec = ProcessSpec(argv=argv or [], env=env, work_dir=work, log_path=log_path, sandbox=sandbox)
        if resolver is not None:
            ctx = ContainerContext(pod=copy.deepcopy(pod), container=copy.deepcopy(c), argv=argv or [], env=env,
                                   image=image, node=self, stdout=None, stderr=None,  # type: ignore[arg-type]
                                   stop=threading.Event(), killed=threading.Event(), work_dir=work,
                                   api_client=self._api_client_factory, api=self.api,
                                   restart_count=cs.restart_count,
                                   path_resolver=sandbox.host_path if sandbox is not None else None,
                                   address_resolver=lambda port: self._serve_address(st, port))
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
            inst = self.runtime.start(spec, lambda _c: self._on_exit(uid, _c), lambda: self._queue.add(uid))
        except StartError as exc:
            self._start_failed(st, c, cs, str(exc))
            return
        cs.current = inst
        cs.start_error = ""
        cs.waiting = ("", "")
        cs.kill_at = None
        if not init:
            self._watch_probes(st, c, cs, inst)
        self._event(pod, "Normal", "Started", f"Started container {c['name']}", c)

    # .. container view .................................................................................
    def _install_host_files(self) -> None:
        """Let every registered vendor model fill this node's emulated host root (once per installer)."""
        for name, installer in host_files_installers().items():
            if name not in self._host_files_done:
                self.host_root.mkdir(parents=True, exist_ok=True)
                installer(self._node, self.host_root)
                self._host_files_done.add(name)

    def _sandbox(self, st: PodState, c: dict[str, Any], root: Path, tools_dir: Path,
                 devices: list[PreparedDevice]) -> Sandbox:
        """The container's root and mount plan (module doc of :mod:`kubetwin.kubelet.sandbox`)."""
        self._install_host_files()
        prepare_root(root)
        privileged = bool((c.get("securityContext") or {}).get("privileged"))
        nodes = [n for d in devices for n in d.device_nodes]
        vctx = VolumeContext(self.api, NodeFacts(self._node, self.node_ip), st, self._pod_dir(st), self.host_root,
                             self._now)
        etc = pod_etc_files(self._pod_dir(st) / "etc", namespace=st.ns,
                            hostname=str(st.pod["spec"].get("hostname") or st.name), loopback=st.loopback,
                            pod_ip="" if st.pod["spec"].get("hostNetwork") else st.pod_ip)
        mounts = (base_mounts(tools_dir) + proc_mounts(self.host_root)
                  + dev_mounts(self.host_root, nodes, privileged=privileged) + etc_mounts(etc)
                  + container_mounts(c, materialize(vctx)))
        return Sandbox(root=root, mounts=mounts, cwd=str(c.get("workingDir") or "/"))

    def _serve_address(self, st: PodState, port: int) -> tuple[str, int]:
        """Where an emulated program binds ``port``: the pod's loopback address (seam ``serve_address``)."""
        with self._lock:
            st.served.add(port)
        return (st.loopback, port)

    def endpoint(self, namespace: str, pod: str, port: int) -> tuple[str, int] | None:
        """Where ``pod``'s container port ``port`` is reachable from this host: the pod's loopback address for
        emulated servers (bound through ``serve_address``), ``127.0.0.1`` for real container processes (they
        share the host's network namespace); None for a pod this kubelet does not run."""
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            if st is None:
                return None
            return (st.loopback, port) if port in st.served else ("127.0.0.1", port)

    def _on_exit(self, uid: str, c: Container) -> None:
        if c.context is not None:
            for drv in self._dra.owned_by(c.context):
                self.unregister_dra_plugin(drv, owner=c.context)
        self._queue.add(uid)

    def _start_failed(self, st: PodState, c: dict[str, Any], cs: ContainerState, why: str) -> None:
        """What containerd+runc report when the process cannot be started: StartError, exit code 128."""
        msg = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc "
               f"create failed: unable to start container process: error during container init: {why}: unknown")
        now = rfc3339(self._now())
        self._event(st.pod, "Warning", "Failed", f"Error: {msg}", c)
        cs.start_error = msg
        cs.last = {"terminated": {"exitCode": 128, "reason": "StartError", "message": msg,
                                  "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now,
                                  "containerID": "containerd://" + hexid(st.uid + c["name"] + now)},
                   "exitCode": 128, "finishedAt": now}
        cs.current = None
        self._queue.add(st.uid)

    # .. terminating ..................................................................................
    def _sync_terminating(self, st: PodState, gone: bool) -> None:
        self._prober.remove_pod(st.uid)
        now = self._now()
        pod = st.pod
        live = [(n, cs) for n, cs in st.containers.items() if cs.current is not None and cs.current.running]
        if st.terminating_since is None:
            st.terminating_since = now
            grace = 0 if gone else int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            st.kill_at = now + dt.timedelta(seconds=grace)
            for n, cs in live:
                spec_c = find_container(pod, n)
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
        err = self._dra.unprepare_all(st)
        if err:
            self._event(pod, "Warning", "FailedUnprepareDynamicResources",
                        f"Failed to unprepare dynamic resources: unprepare dynamic resources: {err}")
            self._queue.add_after(st.uid, 1.0)
            return
        if not gone:
            st.finished = True
            self._status.write(st, terminal=True)
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

    def _probed(self, st: PodState, c: dict[str, Any], cs: ContainerState) -> tuple[bool, bool]:
        """(started, ready) of a running container: its startup and readiness probes' results (no probe: yes)."""
        cp = self._prober.get(st.uid, c["name"], cs.current)
        return (True, True) if cp is None else (cp.started, cp.ready)

    def _watch_probes(self, st: PodState, c: dict[str, Any], cs: ContainerState, inst: Container) -> None:
        """Start probing a new container instance (exec probes run like ``kubectl exec``)."""
        if not any(c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")):
            return
        spec = inst.spec
        assert spec is not None
        sb = spec.sandbox
        env, cwd = dict(spec.env), ("/" if sb is not None else str(spec.work_dir))
        ports = {str(p["name"]): int(p["containerPort"]) for p in c.get("ports") or [] if p.get("name")}
        ns, name = st.ns, st.name
        emulated = spec.program is not None

        def run(argv: list[str], timeout: float) -> tuple[int | None, str]:
            if emulated:
                return (0, "")
            if sb is not None and not sb.ready.wait(timeout):
                return (None, "")
            return run_in_container(argv, env, cwd, sb.shim_pid if sb is not None else None, timeout)

        target = ProbeTarget(pod_ip=st.pod_ip or self.node_ip, ports=ports, run=run,
                             address=lambda port: self.endpoint(ns, name, port),
                             probed=lambda port: not emulated or port in st.served)
        self._prober.add(st.uid, c, inst, inst.started_at, target)

    def _act_on_probes(self, st: PodState, c: dict[str, Any], cs: ContainerState) -> None:
        """Record probe events; kill a container whose liveness/startup probe failed (it restarts per policy)."""
        inst = cs.current
        cp = self._prober.get(st.uid, c["name"], inst) if inst is not None else None
        if cp is None or inst is None:
            return
        events, cp.events = cp.events, []
        for etype, reason, msg in events:
            self._event(st.pod, etype, reason, msg, c)
        now = self._now()
        if cp.restart_reason and cs.kill_at is None:
            self._event(st.pod, "Normal", "Killing",
                        f"Container {c['name']} failed {cp.restart_reason} probe, will be restarted", c)
            probe = c.get(f"{cp.restart_reason}Probe") or {}
            grace = float(probe.get("terminationGracePeriodSeconds")
                          or st.pod["spec"].get("terminationGracePeriodSeconds", 30))
            cs.kill_at = now + dt.timedelta(seconds=grace)
            self.runtime.terminate(inst)
            self._queue.add_after(st.uid, grace)
        elif cs.kill_at is not None and now >= cs.kill_at:
            self.runtime.kill(inst)

    def _event(self, pod: dict[str, Any], etype: str, reason: str, message: str,
               container: dict[str, Any] | None = None) -> None:
        involved = pod
        if container is not None:
            involved = copy.copy(pod)
        self.api.record_event(involved, reason, message, type=etype, component="kubelet", host=self._node)


def _no_client() -> Any:
    raise RuntimeError("this kubelet has no API client factory (the twin's HTTPS server is not running)")


__all__ = ["Kubelet", "KubeletConfig"]
