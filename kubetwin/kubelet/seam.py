"""The seam between the twin's kubelet and emulated programs (the NVIDIA driver model lives on the other side).

Two registries, both process-global and thread-safe:

**Emulated images.** A real kubelet pulls an image and execs the container's command in it. The twin runs most
containers as real local processes (``bash``, ``sleep``, ``echo`` … from the host, see
:mod:`kubetwin.kubelet.runtime`), but an image it *knows* — the NVIDIA driver's
``registry.k8s.io/dra-driver-nvidia/dra-driver-nvidia-gpu`` — runs in-process programs instead, because the
real binaries need GPUs, a real kubelet's gRPC sockets and NVML. Register with::

    from kubetwin.kubelet.seam import register_emulated_image, ContainerContext

    def resolve(ctx: ContainerContext) -> EmulatedProgram | None:
        # ctx.argv is the container's final argv (command + args, $(VAR) references expanded, as the kubelet
        # does), e.g. ["bash", "-c", "gpu-kubelet-plugin -v $(LOG_VERBOSITY)"] after expansion.
        if "gpu-kubelet-plugin" in " ".join(ctx.argv):
            return run_gpu_plugin
        return None        # -> the container fails like a missing binary (StartError, exit 128)

    register_emulated_image("registry.k8s.io/dra-driver-nvidia/dra-driver-nvidia-gpu", resolve)

The image reference is matched on its repository (tag/digest stripped) by longest registered prefix. The
program runs in its own thread with the :class:`ContainerContext`; what it writes to ``ctx.stdout`` /
``ctx.stderr`` lands in the container log (``kubectl logs``), ``ctx.stop`` is set when the kubelet sends
SIGTERM (deletion, rollout, liveness), and its return value is the container's exit code (an uncaught
exception → exit code 2 and the traceback on stderr, like a Go panic). A program that ignores ``ctx.stop`` past
the grace period is "SIGKILLed": the kubelet reports exit code 137 and stops waiting for it (the thread is
abandoned; it must not keep side effects — check ``ctx.killed``).

**DRA plugins.** A running program registers a kubelet plugin on *its own node* with
``ctx.register_dra_plugin("gpu.nvidia.com", plugin)`` (real plugins register through the kubelet's
plugins_registry socket). The registration lasts while the container runs: when the container exits it is
removed, so a crash-looping plugin is "not registered" in between, as on a real node. The kubelet then calls,
once per driver and pod (kubernetes-dra.md §6), batching all the pod's claims for that driver:

* ``plugin.prepare(claims)`` — ``claims`` is a list of ``{"namespace", "name", "uid"}`` dicts exactly like the
  gRPC ``Claim`` message; the plugin reads allocation and config from the API itself. It returns
  ``{claim_uid: PrepareResult}``; a missing uid or a non-empty ``error`` fails that claim: the pod gets a
  ``FailedPrepareDynamicResources`` Warning event ``Failed to prepare dynamic resources: prepare dynamic
  resources: NodePrepareResources failed for ResourceClaim <name>: <error>``, stays ContainerCreating and is
  retried with back-off. ``prepare`` may be called again for an already prepared claim (another pod sharing it,
  a retry): it must be idempotent, like the real driver's checkpoint.
* ``plugin.unprepare(claims)`` — same claim dicts; returns ``{claim_uid: error_or_empty}``. Called after the
  pod's containers stopped, only for claims no other pod on the node still uses. Errors → a
  ``FailedUnprepareDynamicResources`` event and a retry; the pod object is removed only after success.

What a prepared device does inside a container is described by :class:`PreparedDevice`: its ``env`` is added
to every container that references the claim (CDI container edits, e.g. ``NVIDIA_VISIBLE_DEVICES=void``) and
its ``view`` is handed to the registered tools installers (:func:`register_tools_installer`), which write the
container's vendor tools into a directory first on its PATH, as CDI injects them. The NVIDIA model's installer
writes an ``nvidia-smi`` that lists exactly the prepared GPUs; a container with none gets no ``nvidia-smi``.

**The container's view.** Containers run in their own mount and PID namespace (:mod:`kubetwin.kubelet.sandbox`),
also emulated ones, whose PID 1 is a shim, so ``kubectl exec`` gives a real shell in the same view. A program
keeps real state where that shell sees it through ``ctx.host_path(path_in_container)`` (volume mounts first,
else the container's private root), reacts to ``kill -s SIGUSR2 1`` through ``ctx.on_signal(signum, handler)``
(SIGTERM also sets ``ctx.stop``), and binds servers for a container port at ``ctx.serve_address(port)``, which
makes them ``localhost:PORT`` for the pod's exec shells (via ``/etc/hosts``) and ``Kubelet.endpoint`` for
``pods/proxy``, probes and Service-resolved webhooks. A node's emulated host files (``/dev/nvidia0``,
``/proc/driver/nvidia/...``) come from :func:`register_host_files_installer`: privileged containers and hostPath
volumes see them; unprivileged containers see the ``device_nodes`` of their prepared devices.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO


@dataclass(frozen=True)
class PreparedDevice:
    """One device the plugin prepared for a claim (gRPC ``Device`` plus its container-visible effect)."""

    request_names: tuple[str, ...]
    """Requests of the claim this device satisfies (``req`` for a subrequest result ``req/sub``); a container
    entry ``resources.claims[].request`` selects devices by these names."""
    pool_name: str
    """Pool of the device (the node name for the NVIDIA driver)."""
    device_name: str
    """Device name in the ResourceSlice, e.g. ``gpu-0`` or ``gpu-0-mig-1g10gb-0-0``."""
    cdi_device_ids: tuple[str, ...] = ()
    """Fully qualified CDI ids, e.g. ``k8s.gpu.nvidia.com/claim=<uid>-gpu-0`` (kept for inspection)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment the CDI spec adds to containers using this device (e.g. ``NVIDIA_VISIBLE_DEVICES=void``)."""
    view: object | None = None
    """What the device looks like to tools inside the container, in the form the plugin's own tools installer
    understands (:func:`register_tools_installer`; the NVIDIA model puts what ``nvidia-smi`` lists here);
    None for devices no tool shows."""
    device_nodes: tuple[str, ...] = ()
    """Paths of the node's emulated host files (``/dev/nvidia0``, ``/dev/nvidiactl`` …) the CDI spec adds to
    containers using this device; an unprivileged container's ``/dev`` shows only these
    (:func:`register_host_files_installer` writes them)."""


@dataclass(frozen=True)
class PrepareResult:
    """Outcome of preparing one claim (gRPC ``NodePrepareResourceResponse``)."""

    devices: tuple[PreparedDevice, ...] = ()
    """Prepared devices."""
    error: str = ""
    """Non-empty: preparing this claim failed with this driver error text (shown in the pod's event)."""

    @property
    def cdi_ids(self) -> tuple[str, ...]:
        return tuple(i for d in self.devices for i in d.cdi_device_ids)


class DraPlugin(Protocol):
    """A kubelet DRA plugin as the twin's kubelet calls it (the gRPC ``DRAPlugin`` service, in-process)."""

    def prepare(self, claims: list[dict[str, str]]) -> dict[str, PrepareResult]: ...

    def unprepare(self, claims: list[dict[str, str]]) -> dict[str, str]: ...


class NodeHandle(Protocol):
    """What an emulated program may do to the node it runs on."""

    @property
    def node_name(self) -> str: ...

    def register_dra_plugin(self, driver: str, plugin: DraPlugin, *, owner: object | None = None) -> None: ...

    def unregister_dra_plugin(self, driver: str, *, owner: object | None = None) -> None: ...


@dataclass
class ContainerContext:
    """Everything an emulated program gets from the kubelet, in place of a process environment."""

    pod: dict[str, Any]
    """The pod as the kubelet saw it when starting the container (a copy)."""
    container: dict[str, Any]
    """The container spec (a copy)."""
    argv: list[str]
    """command + args with ``$(VAR)`` expanded; the image default when neither is set."""
    env: dict[str, str]
    """The container environment (pod env, fieldRefs, configMap/secret refs, HOSTNAME, KUBERNETES_SERVICE_*)."""
    image: str
    """The image reference as written in the pod."""
    node: NodeHandle
    """The node: register/unregister DRA plugins."""
    stdout: TextIO
    """Line-buffered writer into the container log (stream ``stdout``)."""
    stderr: TextIO
    """Line-buffered writer into the container log (stream ``stderr``)."""
    stop: threading.Event
    """Set when the kubelet sends SIGTERM."""
    killed: threading.Event
    """Set when the grace period ran out (SIGKILL): the program must stop touching anything."""
    work_dir: Path
    """A private directory for this container under the twin's run dir (its "filesystem")."""
    api_client: Callable[[], Any]
    """Returns a ``kubernetes.client.ApiClient`` for the twin's HTTPS API with a service-account-like token
    (what a real in-cluster program gets). Each call makes a new client; close it when done."""
    api: Any = None
    """The in-process ``kubetwin.api.core.Api`` — only for what no real program could do through the API
    (prefer ``api_client`` so requests take the same path as a real driver's)."""
    restart_count: int = 0
    """How many times this container was restarted before (``previous`` logs exist when > 0)."""
    path_resolver: Callable[[str], Path] | None = None
    """Set by the kubelet: container path → backing host file (see :meth:`host_path`)."""
    address_resolver: Callable[[int], tuple[str, int]] | None = None
    """Set by the kubelet: container port → bind address (see :meth:`serve_address`)."""
    _signal_handlers: dict[int, list[Callable[[], None]]] = field(default_factory=dict)

    def host_path(self, path_in_container: str) -> Path:
        """The real file backing ``path_in_container`` as the container sees it: its volume mounts first
        (hostPath, emptyDir …), else the container's private root dir. Keep real state there (checkpoints,
        ``/tmp`` dump files) so ``kubectl exec`` shells in this container see and change the same files."""
        if self.path_resolver is not None:
            return self.path_resolver(path_in_container)
        return self.work_dir / path_in_container.lstrip("/")

    def on_signal(self, signum: int, handler: Callable[[], None]) -> None:
        """Run ``handler`` when ``signum`` is sent to PID 1 of the container (``kill -s SIGUSR2 1`` in an exec
        shell). SIGTERM keeps its meaning: it also sets :attr:`stop`."""
        self._signal_handlers.setdefault(signum, []).append(handler)

    def deliver_signal(self, signum: int) -> None:
        """Called by the runtime when PID 1 of the container got ``signum`` from inside the container."""
        if signum == signal.SIGTERM:
            self.stop.set()
        for h in list(self._signal_handlers.get(signum, ())):
            try:
                h()
            except Exception:  # a handler's failure must not take the relay down (a Go handler would log)
                traceback.print_exc(file=self.stderr)

    def serve_address(self, container_port: int) -> tuple[str, int]:
        """Where to bind a server for ``container_port`` so that ``localhost:PORT`` in this pod's exec shells,
        ``pods/proxy``, ``services/proxy`` and Service-resolved webhooks reach it (``Kubelet.endpoint``)."""
        if self.address_resolver is not None:
            return self.address_resolver(container_port)
        return ("127.0.0.1", 0)

    def register_dra_plugin(self, driver: str, plugin: DraPlugin) -> None:
        """Register ``plugin`` for ``driver`` on this node for as long as this container runs."""
        self.node.register_dra_plugin(driver, plugin, owner=self)

    @property
    def pod_name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace", "default"))

    @property
    def node_name(self) -> str:
        return self.node.node_name


EmulatedProgram = Callable[[ContainerContext], int]
"""An in-process container main: returns the exit code."""

ImageResolver = Callable[[ContainerContext], "EmulatedProgram | None"]
"""Maps a container (its argv, env, image tag) to the program to run; None = binary not found in the image."""

ToolsInstaller = Callable[[Path, Sequence["PreparedDevice"]], None]
"""Writes tools into a container's tools dir (first on its PATH) for the devices prepared for it — as CDI injects
a vendor's binaries. Called at every container start, also with no devices (then it usually writes nothing)."""

HostFilesInstaller = Callable[[str, Path], None]
"""Writes a node's emulated host files (``/dev/nvidia0``, ``/proc/driver/nvidia/...``, a driver root) under
``host_root`` (the node's ``/``) for node ``node_name``; idempotent; a node it does not model is left alone."""

_lock = threading.Lock()
_images: dict[str, ImageResolver] = {}
_installers: dict[str, ToolsInstaller] = {}
_host_files: dict[str, HostFilesInstaller] = {}


def image_repository(image: str) -> str:
    """``repo[:tag][@digest]`` → ``repo`` (a registry port like ``host:5000/x`` is kept)."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref = ref[:colon]
    return ref


def image_tag(image: str) -> str:
    """The tag of ``image`` (``latest`` when absent, as a container runtime assumes)."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[colon + 1:] if colon > slash else "latest"


def register_emulated_image(repo_prefix: str, resolver: ImageResolver) -> None:
    """Run containers whose image repository starts with ``repo_prefix`` through ``resolver`` (see module doc)."""
    with _lock:
        _images[repo_prefix] = resolver


def unregister_emulated_image(repo_prefix: str) -> None:
    with _lock:
        _images.pop(repo_prefix, None)


def register_tools_installer(name: str, installer: ToolsInstaller) -> None:
    """Run ``installer`` for every container start (``name`` makes registering again idempotent)."""
    with _lock:
        _installers[name] = installer


def install_tools(tools_dir: Path, devices: Sequence[PreparedDevice]) -> None:
    """Create a container's tools dir and let every registered installer write into it."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    with _lock:
        installers = list(_installers.values())
    for installer in installers:
        installer(tools_dir, devices)


def register_host_files_installer(name: str, installer: HostFilesInstaller) -> None:
    """Let ``installer`` fill every node's emulated host root before its next container starts (``name`` makes
    registering again replace the previous one)."""
    with _lock:
        _host_files[name] = installer


def unregister_host_files_installer(name: str) -> None:
    with _lock:
        _host_files.pop(name, None)


def host_files_installers() -> dict[str, HostFilesInstaller]:
    """The registered host-files installers by name (a copy)."""
    with _lock:
        return dict(_host_files)


def emulated_resolver(image: str) -> ImageResolver | None:
    """The resolver for ``image`` (longest matching prefix), or None if the image runs as a local process."""
    repo = image_repository(image)
    with _lock:
        best = ""
        for prefix in _images:
            if repo.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return _images.get(best) if best else None


__all__ = [
    "ContainerContext", "DraPlugin", "EmulatedProgram", "HostFilesInstaller", "ImageResolver", "NodeHandle",
    "PrepareResult", "PreparedDevice", "ToolsInstaller", "emulated_resolver", "host_files_installers",
    "image_repository", "image_tag", "install_tools", "register_emulated_image", "register_host_files_installer",
    "register_tools_installer", "unregister_emulated_image", "unregister_host_files_installer",
]
