"""What the emulated binaries need from their container beyond the API: files, signals, ports, a goroutine dump.

All through the seam contract of :class:`kubetwin.kubelet.seam.ContainerContext` — ``host_path`` (the real file
behind a path as the container sees it), ``on_signal`` (a handler for a signal sent to PID 1) and
``serve_address`` (where to bind a server for a container port so pods/proxy, services and exec shells reach
it). The node's boot id: the ``/proc/sys/kernel/random/boot_id`` the container sees, else the Node's
``status.nodeInfo.bootID`` (a twin reboot changes it), else a constant per node name.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetwin.kubelet.seam import ContainerContext


def host_file(ctx: ContainerContext, path: str) -> Path:
    """The real file behind ``path`` as the container sees it (its volume mounts first, e.g. the hostPath of the
    kubelet plugins dir, so the file outlives the pod on that node)."""
    return ctx.host_path(path)


def on_signal(ctx: ContainerContext, signum: int, handler: Callable[[], None]) -> bool:
    """Install ``handler`` for ``signum`` sent to the container's PID 1 (``kill -s SIGUSR2 1`` in an exec shell)."""
    ctx.on_signal(signum, handler)
    return True


def serve_address(ctx: ContainerContext, port: int) -> tuple[str, int]:
    """Where to bind a server for container port ``port`` (``pods/proxy`` and exec shells' ``localhost`` reach it)."""
    return ctx.serve_address(port)


def boot_id(ctx: ContainerContext, node: dict[str, Any] | None = None) -> str:
    """The node's kernel boot id, as the plugin's checkpoint records it (real: ``/proc/sys/kernel/random/boot_id``).

    The twin's container view has no such file, so the node's ``status.nodeInfo.bootID`` — what the kubelet reports
    from that same file, and what a twin reboot changes — stands in for it; a constant per node name otherwise."""
    f = host_file(ctx, "/proc/sys/kernel/random/boot_id")
    if f.is_file():
        text = f.read_text().strip()
        if text:
            return text
    reported = (((node or {}).get("status") or {}).get("nodeInfo") or {}).get("bootID")
    if reported:
        return str(reported)
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"boot.{ctx.node_name}"))


GOROUTINE_FRAMES: dict[str, tuple[str, str]] = {
    "gpu-kubelet-plugin": ("main.RunPlugin", "cmd/gpu-kubelet-plugin/main.go"),
    "compute-domain-kubelet-plugin": ("main.RunPlugin", "cmd/compute-domain-kubelet-plugin/main.go"),
    "compute-domain-controller": ("main.(*Controller).Run", "cmd/compute-domain-controller/controller.go"),
}
"""Binary → the frame its main goroutine waits in, and that frame's file (§10: both plugins show main.RunPlugin)."""


def goroutine_dump(binary: str) -> str:
    """A Go ``runtime.Stack(all=true)`` text for ``binary``: main goroutine in its run function, signal loop."""
    frame, file = GOROUTINE_FRAMES.get(binary, ("main.main", f"cmd/{binary}/main.go"))
    return (
        "goroutine 1 [select, 3 minutes]:\n"
        f"{frame}({{0x2a5b9e0, 0xc0001a6000}}, 0xc000214000)\n"
        f"\t/build/{file}:312 +0x5e5\n"
        "main.newApp.func1(0xc0001e8000)\n"
        f"\t/build/cmd/{binary}/main.go:188 +0x1c5\n"
        "github.com/urfave/cli/v2.(*Command).Run(0xc0001fe000, 0xc0001e8000, {0xc000138000, 0x3, 0x3})\n"
        "\t/build/vendor/github.com/urfave/cli/v2/command.go:276 +0x7e2\n"
        "main.main()\n"
        f"\t/build/cmd/{binary}/main.go:53 +0x25\n"
        "\n"
        "goroutine 34 [running]:\n"
        "sigs.k8s.io/dra-driver-nvidia-gpu/internal/common.StartDebugSignalHandlers.func1()\n"
        "\t/build/internal/common/util.go:70 +0x85\n"
        "created by sigs.k8s.io/dra-driver-nvidia-gpu/internal/common.StartDebugSignalHandlers in goroutine 1\n"
        "\t/build/internal/common/util.go:62 +0x95\n"
    )


def install_dump_handler(ctx: ContainerContext, binary: str, log: Callable[[str], None]) -> bool:
    """SIGUSR2 → write the goroutine dump to ``/tmp/goroutine-stacks.dump`` (mode 0666) and log ``Wrote: …``."""
    from checks.driver import names

    def dump() -> None:
        target = host_file(ctx, names.GOROUTINE_DUMP)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(goroutine_dump(binary))
            target.chmod(0o666)
        except OSError as exc:
            log(f"Could not write {names.GOROUTINE_DUMP}: {exc}")
            ctx.stderr.write(goroutine_dump(binary))
            return
        log(f"Wrote: {names.GOROUTINE_DUMP}")

    return on_signal(ctx, signal.SIGUSR2, dump)


__all__ = ["boot_id", "goroutine_dump", "host_file", "install_dump_handler", "on_signal", "serve_address"]
