"""Emulated binaries of the driver image, run by the twin kubelet for ``registry.k8s.io/dra-driver-nvidia/…``.

:func:`register` installs the image resolver (call once when a twin starts); :func:`set_node_gpus` tells the
emulated GPU plugin which virtual GPUs a node has (the twin sets it from :func:`..hardware.virtual_gpus`).
Every binary parses ``FEATURE_GATES`` and refuses forbidden combinations exactly as the real ones
(reference §3.3): ``Error: feature gate validation failed: …`` on stderr, exit 1 → CrashLoopBackOff.

gpu-kubelet-plugin publishes and prepares; compute-domain-kubelet-plugin publishes channel/daemon devices and
prepares them (:mod:`.cd_plugin`); compute-domain-controller elects a leader and, while leading, reconciles
ComputeDomains (:mod:`.cd_controller`); compute-domain-daemon joins its domain (:mod:`.cd_daemon`); the webhook
serves admission reviews.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any, cast

from checks.driver import gates as gate_table
from checks.driver import logs, names
from checks.driver.slices import GpuFacts
from checks.twin.nvidia import channels, mig_state, smi
from checks.twin.nvidia.binaries.checkpoint import CheckpointFile, CorruptCheckpoint
from checks.twin.nvidia.binaries.gpu_plugin import GpuPlugin, now, slice_bodies
from checks.twin.nvidia.binaries.health import HealthMonitor, apply_taints, ignored_xids, watch_node
from checks.twin.nvidia.binaries.host import boot_id, host_file, install_dump_handler, serve_address
from checks.twin.nvidia.binaries.metrics import MetricsServer, PluginMetrics, set_endpoint
from checks.twin.nvidia.binaries.mps import CONTROL_BINARY, MpsDaemons, run_mps_control
from kubetwin.api.faults import register_alias
from kubetwin.kubelet.seam import ContainerContext, EmulatedProgram, image_tag, register_emulated_image

_lock = threading.Lock()
_node_gpus: dict[str, list[GpuFacts]] = {}


def set_node_gpus(node: str, gpus: Sequence[GpuFacts]) -> None:
    """Record the virtual GPUs of ``node`` (what NVML would report there)."""
    with _lock:
        _node_gpus[node] = list(gpus)


def node_gpus(node: str) -> list[GpuFacts]:
    """The GPUs recorded for ``node`` (empty = a node without NVIDIA GPUs)."""
    with _lock:
        return list(_node_gpus.get(node, []))


def _verbosity(ctx: ContainerContext) -> int:
    argv = " ".join(ctx.argv).split()
    for i, tok in enumerate(argv):
        if tok in ("-v", "--v") and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if tok.startswith(("-v=", "--v=")) and tok.split("=", 1)[1].isdigit():
            return int(tok.split("=", 1)[1])
    text = ctx.env.get("LOG_VERBOSITY", "")
    return int(text) if text.isdigit() else 0


def release_of(ctx: ContainerContext) -> str:
    """The driver release the container's image tag names (``v0.4.0`` → ``0.4.0``); the binaries of different
    releases differ where the real ones do (gates they know, §3.1)."""
    tag = image_tag(ctx.image)
    return tag[1:] if tag.startswith("v") else tag


def _start(ctx: ContainerContext, component: str) -> tuple[dict[str, bool], int] | int:
    """Common start: gates parse + validation; returns (gates, verbosity) or an exit code."""
    try:
        gates = gate_table.parse_feature_gates(ctx.env.get("FEATURE_GATES", ""),
                                               gate_table.gates_of_release(release_of(ctx)))
    except gate_table.GateParseError as exc:
        ctx.stderr.write(f'Error: invalid argument "{ctx.env.get("FEATURE_GATES", "")}" for "--feature-gates" '
                         f"flag: {exc}\n")
        return 1
    error = gate_table.validate_gates(component, gates)
    if error is not None:
        ctx.stderr.write(f"Error: {error}\n")
        return 1
    verbosity = _verbosity(ctx)
    flags: dict[str, object] = {"nodeName": ctx.env.get("NODE_NAME", ""), "namespace": ctx.env.get("NAMESPACE", "")}
    if component == names.BIN_CONTROLLER:
        flags = {"podName": ctx.env.get("POD_NAME", ""), "namespace": ctx.env.get("NAMESPACE", ""),
                 "additionalNamespaces": ctx.env.get("ADDITIONAL_NAMESPACES", "[]")}
    _write(ctx, logs.startup(component, gates, flags, verbosity), verbosity)
    install_dump_handler(ctx, component, lambda text: _write(ctx, [logs.LogLine(0, text, "util.go", 58)], verbosity))
    return gates, verbosity


def _write(ctx: ContainerContext, lines: Sequence[logs.LogLine], verbosity: int) -> None:
    if ctx.killed.is_set():
        return
    for line in logs.emit(lines, verbosity, now()):
        # A container log closed under us (twin stopping, SIGKILL) must not turn a clean exit into a crash.
        with contextlib.suppress(ValueError):
            (ctx.stderr if line[0] in "WE" else ctx.stdout).write(line + "\n")


def _kubernetes_version(client: Any) -> str:
    from kubernetes import client as k8s

    try:
        info = k8s.VersionApi(client).get_code()
        return str(info.git_version)
    except Exception:
        return "v1.36.0"


def run_gpu_plugin(ctx: ContainerContext) -> int:
    """``gpu-kubelet-plugin``: publish slices, register, prepare until stopped."""
    from kubernetes import client as k8s

    started = _start(ctx, names.BIN_GPU_PLUGIN)
    if isinstance(started, int):
        return started
    gates, verbosity = started
    node = ctx.env.get("NODE_NAME") or ctx.node_name
    api_client = ctx.api_client()
    with contextlib.ExitStack() as stack:
        stack.callback(api_client.close)
        core, resource = k8s.CoreV1Api(api_client), k8s.ResourceV1Api(api_client)
        node_obj = dict(api_client.sanitize_for_serialization(core.read_node(node)))
        node_uid = str(node_obj["metadata"]["uid"])
        version = _kubernetes_version(api_client)
        # NVML's view now: MIG mode and existing MIG devices as the node's nvidia-smi left them (static MIG).
        gpus = mig_state.apply(node_gpus(node), mig_state.state_file(ctx))
        bodies, lines = slice_bodies(node, node_uid, gpus, gates, version)

        def read_claim(namespace: str, name: str) -> dict[str, Any]:
            obj = resource.read_namespaced_resource_claim(name, namespace)
            return dict(api_client.sanitize_for_serialization(obj))

        metrics = PluginMetrics(names.GPU_DRIVER, node) if ctx.env.get("HTTP_ENDPOINT") else None
        log = lambda line: _write(ctx, [line], verbosity)  # noqa: E731
        mps = MpsDaemons(
            api_client=api_client, namespace=ctx.env.get("NAMESPACE") or ctx.namespace, node=node,
            image=ctx.env.get("IMAGE_NAME") or ctx.image, gates=gates,
            image_pull_policy=ctx.env.get("IMAGE_PULL_POLICY", ""),
            service_account=ctx.env.get("SERVICE_ACCOUNT_NAME", ""),
            image_pull_secrets=[s for s in ctx.env.get("IMAGE_PULL_SECRETS", "").split(",") if s],
            plugins_dir=ctx.env.get("KUBELET_PLUGINS_DIRECTORY_PATH") or "/var/lib/kubelet/plugins",
            driver_root=ctx.env.get("NVIDIA_DRIVER_ROOT") or "/", log=log,
        )
        plugins_dir = ctx.env.get("KUBELET_PLUGINS_DIRECTORY_PATH") or names.PLUGINS_DIR
        checkpoint = CheckpointFile(host_file(ctx, f"{plugins_dir}/{names.GPU_DRIVER}/checkpoint.json"), log)
        plugin = GpuPlugin(node=node, gpus=gpus, gates=gates, read_claim=read_claim, log=log, metrics=metrics,
                           mps=mps, checkpoint=checkpoint, boot_id=boot_id(ctx, node_obj))
        try:
            plugin.restore()
        except (CorruptCheckpoint, ValueError) as exc:
            ctx.stderr.write(f"Error: error creating driver: unable to create device state: unable to get "
                             f"checkpoint: {exc}\n")
            return 1
        if metrics is not None:
            path = ctx.env.get("METRICS_PATH") or "/metrics"
            server = _metrics_server(ctx, metrics, path)
            stack.callback(server.stop)
            set_endpoint(ctx.namespace, ctx.pod_name, str(ctx.container.get("name", "gpus")), server.url)
            stack.callback(set_endpoint, ctx.namespace, ctx.pod_name, str(ctx.container.get("name", "gpus")), None)
            _write(ctx, [logs.metrics_server(ctx.env["HTTP_ENDPOINT"], path)], verbosity)
        # Like the real driver (kubeletplugin.Start, then PublishResources): register with the kubelet first,
        # so the kubelet's slice wiping after the previous instance deregistered cannot hit the new slices.
        ctx.register_dra_plugin(names.GPU_DRIVER, plugin)
        existing = api_client.sanitize_for_serialization(
            resource.list_resource_slice(field_selector=f"spec.nodeName={node},spec.driver={names.GPU_DRIVER}")
        )
        reconcile_slices(resource, list(existing.get("items") or []), bodies)
        _write(ctx, lines, verbosity)
        if gate_table.effective(gates)["NVMLDeviceHealthCheck"]:
            _start_health(ctx, stack, api_client, node, node_uid, gpus, gates, version, log)
        ctx.stop.wait()
        _write(ctx, [logs.shutdown()], verbosity)
        return 0


def _metrics_server(ctx: ContainerContext, metrics: PluginMetrics, path: str) -> MetricsServer:
    """Serve on the container port of ``HTTP_ENDPOINT`` where the kubelet says (``localhost:8080`` in exec shells,
    ``Kubelet.endpoint``); a port still held by an abandoned (SIGKILLed) predecessor falls back to any free one."""
    port = int((ctx.env.get("HTTP_ENDPOINT") or ":8080").rsplit(":", 1)[-1] or 8080)
    try:
        return MetricsServer(metrics, path, *ctx.serve_address(port)).start()
    except OSError:
        return MetricsServer(metrics, path).start()


def _port_of(endpoint: str, default: int) -> int:
    """The port of an ``HTTP_ENDPOINT`` like ``:8080`` (the container port the server listens on)."""
    tail = endpoint.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else default


def _start_health(ctx: ContainerContext, stack: contextlib.ExitStack, api_client: Any, node: str, node_uid: str,
                  gpus: Sequence[GpuFacts], gates: dict[str, bool], version: str,
                  log: Any) -> None:
    """NVMLDeviceHealthCheck: the monitor's start lines, then follow injected events (:mod:`.health`)."""
    from kubernetes import client as k8s

    resource = k8s.ResourceV1Api(api_client)
    for line in logs.health_startup():
        log(line)

    def republish(taints: dict[str, list[dict[str, Any]]]) -> None:
        bodies, _ = slice_bodies(node, node_uid, gpus, gates, version)
        existing = api_client.sanitize_for_serialization(
            resource.list_resource_slice(field_selector=f"spec.nodeName={node},spec.driver={names.GPU_DRIVER}"))
        try:
            reconcile_slices(resource, list(existing.get("items") or []), apply_taints(bodies, taints))
        except Exception as exc:  # the real plugin only logs a failed republish (§7)
            log(logs.LogLine(0, f"Failed to publish resources after taint update: {exc}", "driver.go", 560, "E"))

    monitor = HealthMonitor(gpus=gpus, ignored=ignored_xids(ctx.env.get(names.ADDITIONAL_XIDS_ENV, "")),
                            republish=republish, log=log)
    stop = threading.Event()
    thread = threading.Thread(target=watch_node, args=(api_client, node, monitor, stop),
                              name=f"health-{ctx.pod_name}", daemon=True)
    thread.start()
    stack.callback(thread.join, 2)
    stack.callback(stop.set)


def _pool_free(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    out["pool"] = {k: v for k, v in (spec.get("pool") or {}).items() if k != "generation"}
    return out


def reconcile_slices(resource: Any, existing: list[dict[str, Any]], desired: list[dict[str, Any]]) -> None:
    """Make the node's slices of this driver equal ``desired`` the way the DRA helper's ResourceSlice controller
    does: unchanged slices are left alone (a restarted plugin with the same devices writes nothing), changed ones
    are updated in place under a new pool generation, extra ones deleted, missing ones created — so consumers
    never see the pool vanish while a plugin restarts."""
    existing = sorted(existing, key=lambda o: str(o["metadata"]["name"]))
    if len(existing) == len(desired) and all(
            _pool_free(e.get("spec") or {}) == _pool_free(d["spec"]) for e, d in zip(existing, desired, strict=True)):
        return
    generation = 1 + max((int(((e.get("spec") or {}).get("pool") or {}).get("generation") or 0) for e in existing),
                         default=0)
    for i, body in enumerate(desired):
        body["spec"]["pool"]["generation"] = generation
        if i < len(existing):
            cur = existing[i]
            resource.replace_resource_slice(str(cur["metadata"]["name"]), cast(Any, {
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
                "metadata": {**cur["metadata"], "ownerReferences": body["metadata"].get("ownerReferences")},
                "spec": body["spec"]}))
        else:
            resource.create_resource_slice(cast(Any, body))
    for extra in existing[len(desired):]:
        resource.delete_resource_slice(str(extra["metadata"]["name"]))


def _idle(component: str) -> EmulatedProgram:
    def run(ctx: ContainerContext) -> int:
        started = _start(ctx, component)
        if isinstance(started, int):
            return started
        _, verbosity = started
        if component == names.BIN_WEBHOOK:
            port = next((a.split("=", 1)[1] for a in ctx.argv if a.startswith("--port=")), "443")
            _write(ctx, [logs.webhook_start(int(port))], verbosity)
        ctx.stop.wait()
        if component != names.BIN_WEBHOOK:
            _write(ctx, [logs.shutdown()], verbosity)
        return 0

    return run


def run_controller(ctx: ContainerContext) -> int:
    """``compute-domain-controller``: gates, startup block, leader election through a Lease (§8); while leading,
    ComputeDomain reconciliation (:mod:`.cd_controller`)."""
    from checks.twin.nvidia.binaries.cd_controller import run_reconciler
    from checks.twin.nvidia.binaries.controller import ElectionConfig, run_election

    started = _start(ctx, names.BIN_CONTROLLER)
    if isinstance(started, int):
        return started
    gates, verbosity = started
    try:
        cfg = ElectionConfig.from_env(ctx.env)
    except ValueError as exc:
        ctx.stderr.write(f"Error: {exc}\n")
        return 1
    write = lambda lines: _write(ctx, lines, verbosity)  # noqa: E731
    with contextlib.ExitStack() as stack:
        on_status = _controller_http(ctx, stack, write)
        leading = threading.Event()
        worker = threading.Thread(target=run_reconciler, args=(ctx, gates, write, leading, on_status), daemon=True,
                                  name=f"cd-reconciler-{ctx.pod_name}")
        worker.start()
        try:
            return run_election(ctx, cfg, write, leading=leading)
        finally:
            leading.clear()
            worker.join(timeout=5)


def _controller_http(ctx: ContainerContext, stack: contextlib.ExitStack,
                     write: Any) -> Any:
    """With ``HTTP_ENDPOINT``: the controller's metrics/pprof server (:mod:`.controller_metrics`); every API
    client this process makes is instrumented for the REST metrics. Returns the reconciler's status hook."""
    if not ctx.env.get("HTTP_ENDPOINT"):
        return None
    from checks.twin.nvidia.binaries.controller_metrics import ControllerMetrics, ControllerServer, instrument

    metrics = ControllerMetrics(f"v{release_of(ctx)}")
    make_client = ctx.api_client

    def instrumented() -> Any:
        client = make_client()
        instrument(client, metrics)
        return client

    ctx.api_client = instrumented
    mpath = ctx.env.get("METRICS_PATH") or names.METRICS_PATH
    port = _port_of(ctx.env["HTTP_ENDPOINT"], names.CONTROLLER_METRICS_PORT)
    try:
        server = ControllerServer(metrics, mpath, ctx.env.get("PPROF_PATH", ""), list(ctx.argv),
                                  *serve_address(ctx, port)).start()
    except OSError:  # the port is still held by a SIGKILLed predecessor
        server = ControllerServer(metrics, mpath, ctx.env.get("PPROF_PATH", ""), list(ctx.argv), "127.0.0.1",
                                  0).start()
    stack.callback(server.stop)
    set_endpoint(ctx.namespace, ctx.pod_name, names.CONTAINER_CONTROLLER, server.url)
    stack.callback(set_endpoint, ctx.namespace, ctx.pod_name, names.CONTAINER_CONTROLLER, None)
    write(logs.controller_http(ctx.env["HTTP_ENDPOINT"], mpath))
    return metrics.set_status_counts


def _run_cd_plugin(ctx: ContainerContext) -> int:
    """``compute-domain-kubelet-plugin`` (:mod:`.cd_plugin`)."""
    from checks.twin.nvidia.binaries.cd_plugin import run_cd_plugin

    started = _start(ctx, names.BIN_CD_PLUGIN)
    if isinstance(started, int):
        return started
    gates, verbosity = started
    return run_cd_plugin(ctx, gates, verbosity, lambda lines: _write(ctx, lines, verbosity))


def _run_cd_daemon(ctx: ContainerContext) -> int:
    """``compute-domain-daemon run|check`` (:mod:`.cd_daemon`); ``check`` logs nothing (probes stay quiet)."""
    from checks.twin.nvidia.binaries.cd_daemon import run_daemon

    if "run" not in ctx.argv:
        return 0
    started = _start(ctx, names.BIN_CD_DAEMON)
    if isinstance(started, int):
        return started
    gates, verbosity = started
    return run_daemon(ctx, gates, verbosity, lambda lines: _write(ctx, lines, verbosity))


def _run_webhook(ctx: ContainerContext) -> int:
    """``webhook``: gates parsed (never validated, §3.3), then serve until stopped (:mod:`.webhook`)."""
    from checks.twin.nvidia.binaries.webhook import run_webhook

    started = _start(ctx, names.BIN_WEBHOOK)
    if isinstance(started, int):
        return started
    gates, verbosity = started
    return run_webhook(ctx, gates, lambda lines: _write(ctx, lines, verbosity))


def _prestart(ctx: ContainerContext) -> int:
    """``kubelet-plugin-prestart.sh``: succeeds when the node has a driver (``nvidia-smi --version`` works)."""
    if not node_gpus(ctx.env.get("NODE_NAME") or ctx.node_name):
        ctx.stdout.write("nvidia-smi failed (see error above)\n")
        ctx.stop.wait()
        return 1
    return 0


PROGRAMS: dict[str, EmulatedProgram] = {
    names.BIN_GPU_PLUGIN: run_gpu_plugin,
    names.BIN_CD_PLUGIN: _run_cd_plugin,
    names.BIN_CD_DAEMON: _run_cd_daemon,
    names.BIN_CONTROLLER: run_controller,
    names.BIN_WEBHOOK: lambda ctx: _run_webhook(ctx),
    "kubelet-plugin-prestart.sh": _prestart,
    CONTROL_BINARY: run_mps_control,
}
"""Binary (or script) name → emulated program. Longer names are matched first (``webhook`` last)."""


def resolve(ctx: ContainerContext) -> EmulatedProgram | None:
    """Pick the program for a container of the driver image from its argv."""
    words = " ".join(ctx.argv).replace("/", " ").split()
    for binary in sorted(PROGRAMS, key=len, reverse=True):
        if binary in words:
            return PROGRAMS[binary]
    return None


PLUGIN_CONTAINER = "gpus"
"""The kubelet plugin DaemonSet's GPU container (the chart's ``kubeletPlugin.containers.gpus``)."""

# dra-lab's name for a GPU kubelet plugin that crash-loops: kubetwin's generic container crash, aimed at it.
register_alias("plugin-crash", f"crash:{PLUGIN_CONTAINER}")


def register() -> None:
    """Make the twin kubelet run these programs for the driver image (any tag)."""
    register_emulated_image(names.IMAGE_REPOSITORY, resolve)
    smi.register()
    channels.register()
    mig_state.install(node_gpus)


__all__ = ["PROGRAMS", "node_gpus", "register", "resolve", "run_controller", "run_gpu_plugin", "set_node_gpus"]
