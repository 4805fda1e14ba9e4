"""Twin-provided tools on a container's PATH (first entry) and the image defaults the runtime assumes.

``nvidia-smi`` exists in a container only when prepared DRA devices with a GPU view are injected into it, as
CDI injects the real one (reference nvidia-dra-driver.md §6.2–6.3); otherwise the shell's lookup falls through to
the host's standard dirs and fails with 127, like a plain image on a node without the driver. Its output is
rendered once at container start from :class:`checks.twin.kubelet.seam.SmiGpu` entries into files that a small
``/bin/sh`` script prints, so running it costs a shell, not a Python interpreter.

Emulated options: ``-L``/``--list-gpus`` (exact format), ``--version`` (the real four-line format) and no
arguments (a compact summary table: header with driver/CUDA version and one row per GPU; the real table's
utilization/power columns are not emulated). Any other option prints the real "Invalid combination of input
arguments" hint and exits 2 (documented in docs/twin-fidelity.md).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from checks.twin.kubelet.seam import SmiGpu

# image repository (no tag) -> default argv when the pod gives neither command nor args.
# Documented approximations of the images' ENTRYPOINT/CMD; long-running servers become "sleep forever".
IMAGE_DEFAULTS: dict[str, list[str]] = {
    "registry.k8s.io/pause": ["sleep", "infinity"],
    "docker.io/library/busybox": ["sh"],
    "docker.io/library/ubuntu": ["/bin/bash"],
    "docker.io/library/debian": ["bash"],
    "docker.io/library/alpine": ["/bin/sh"],
    "docker.io/library/python": ["python3"],
    "docker.io/library/nginx": ["sleep", "infinity"],
    "docker.io/nvidia/cuda": ["/bin/bash"],
    "nvcr.io/nvidia/cuda": ["/bin/bash"],
}


def normalize_image(image: str) -> str:
    """``busybox`` → ``docker.io/library/busybox:latest`` (what containerStatuses[].image shows)."""
    ref = image
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        ref = "docker.io/library/" + ref
    elif "." not in first and ":" not in first and first != "localhost":
        ref = "docker.io/" + ref
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in ref:
        ref += ":latest"
    return ref


def image_default_argv(image: str) -> list[str] | None:
    from checks.twin.kubelet.seam import image_repository

    return IMAGE_DEFAULTS.get(image_repository(normalize_image(image)))


def render_smi_list(gpus: Sequence[SmiGpu]) -> str:
    """``nvidia-smi -L`` for the devices one container sees, numbered as that container sees them."""
    parents: dict[str, tuple[SmiGpu, list[SmiGpu]]] = {}
    for g in gpus:
        entry = parents.setdefault(g.uuid, (g, []))
        if g.mig is not None and all(m.mig != g.mig for m in entry[1]):
            entry[1].append(g)
    lines: list[str] = []
    ordered = sorted(parents.values(), key=lambda e: (e[0].pci_bus_id, e[0].uuid))
    for i, (g, migs) in enumerate(ordered):
        lines.append(f"GPU {i}: {g.name} (UUID: {g.uuid})")
        for j, m in enumerate(migs):
            assert m.mig is not None
            lines.append(f"  MIG {m.mig.profile:<11} Device {j:>2}: (UUID: {m.mig.uuid})")
    return "".join(line + "\n" for line in lines)


def render_smi_version(g: SmiGpu) -> str:
    nvml = ".".join(g.driver_version.split(".")[:2])
    return (f"NVIDIA-SMI version  : {g.driver_version}\nNVML version        : {nvml}\n"
            f"DRIVER version      : {g.driver_version}\nCUDA Version        : {g.cuda_version}\n")


def render_smi_summary(gpus: Sequence[SmiGpu]) -> str:
    first = gpus[0]
    bar = "+" + "-" * 91 + "+\n"
    out = [bar, f"| NVIDIA-SMI {first.driver_version:<22} Driver Version: {first.driver_version:<18}"
           f"CUDA Version: {first.cuda_version:<9}|\n", bar]
    seen: list[str] = []
    for g in sorted(gpus, key=lambda x: (x.pci_bus_id, x.uuid)):
        if g.uuid in seen:
            continue
        seen.append(g.uuid)
        mem = f"{g.memory_mib}MiB" if g.memory_mib else "N/A"
        out.append(f"| {len(seen) - 1:>3}  {g.name:<40} {g.pci_bus_id:<20} {mem:>22} |\n")
    out.append(bar)
    return "".join(out)


_SCRIPT = """#!/bin/sh
# twin nvidia-smi: prints the devices the DRA driver prepared for this container
d=$(dirname "$0")/.nvidia-smi
case "$#:$1" in
  0:) cat "$d/summary"; exit 0 ;;
  1:-L|1:--list-gpus) cat "$d/list"; exit 0 ;;
  1:--version) cat "$d/version"; exit 0 ;;
esac
echo "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help." >&2
exit 2
"""


def install_tools(tools_dir: Path, gpus: Sequence[SmiGpu]) -> None:
    """Create the container's tools dir; with GPUs, an ``nvidia-smi`` that lists exactly them."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    if not gpus:
        return
    data = tools_dir / ".nvidia-smi"
    data.mkdir(exist_ok=True)
    (data / "list").write_text(render_smi_list(gpus))
    (data / "version").write_text(render_smi_version(gpus[0]))
    (data / "summary").write_text(render_smi_summary(gpus))
    script = tools_dir / "nvidia-smi"
    script.write_text(_SCRIPT)
    os.chmod(script, 0o755)


def quote_argv(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


__all__ = ["IMAGE_DEFAULTS", "image_default_argv", "install_tools", "normalize_image", "render_smi_list"]
