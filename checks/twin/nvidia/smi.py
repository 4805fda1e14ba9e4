"""The twin's ``nvidia-smi`` inside containers: what CDI injects with the devices the driver prepared.

``nvidia-smi`` exists in a container only when prepared DRA devices with a GPU view are injected into it, as
CDI injects the real one (reference nvidia-dra-driver.md §6.2–6.3); otherwise the shell's lookup falls through to
the host's standard dirs and fails with 127, like a plain image on a node without the driver. Its output is
rendered once at container start from :class:`SmiGpu` entries (a prepared device's ``view``) into files that a
small ``/bin/sh`` script prints, so running it costs a shell, not a Python interpreter.

Emulated options: ``-L``/``--list-gpus`` (exact format), ``--version`` (the real four-line format) and no
arguments (a compact summary table: header with driver/CUDA version and one row per GPU; the real table's
utilization/power columns are not emulated). Any other option prints the real "Invalid combination of input
arguments" hint and exits 2 (documented in docs/twin-fidelity.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetwin.kubelet.seam import PreparedDevice, register_tools_installer


@dataclass(frozen=True)
class SmiMig:
    """A MIG device as ``nvidia-smi -L`` lists it under its parent GPU."""

    profile: str
    """Profile name exactly as printed, e.g. ``1g.10gb`` or ``1g.10gb+me``."""
    uuid: str
    """``MIG-<uuid>``."""


@dataclass(frozen=True)
class SmiGpu:
    """What the twin's ``nvidia-smi`` shows for one prepared device (reference nvidia-dra-driver.md §6.3).

    The kubelet renders the container's listing: devices are grouped by ``uuid`` (a parent GPU appears once
    even when several MIG devices of it are prepared), ordered by ``pci_bus_id``, and numbered from 0 as the
    container sees them (``GPU 0: <name> (UUID: GPU-…)``, MIG lines ``  MIG <profile> Device  <n>: (UUID: …)``).
    """

    name: str
    """Product name, e.g. ``NVIDIA H100 80GB HBM3``."""
    uuid: str
    """Parent GPU UUID, ``GPU-<uuid>``."""
    pci_bus_id: str = ""
    """``00000000:00:06.0`` style bus id; only orders GPUs of one container."""
    mig: SmiMig | None = None
    """Set when the prepared device is a MIG device of this GPU (the parent line is printed too)."""
    driver_version: str = "580.95.05"
    """Printed by ``nvidia-smi --version`` and the summary header."""
    cuda_version: str = "13.0"
    """CUDA version printed by ``nvidia-smi --version`` and the summary header."""
    memory_mib: int = 0
    """Total memory shown in the ``nvidia-smi`` summary table (0 = not shown)."""



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


def install_smi(tools_dir: Path, devices: Sequence[PreparedDevice]) -> None:
    """The tools installer (:func:`kubetwin.kubelet.seam.register_tools_installer`): with prepared GPUs, an
    ``nvidia-smi`` that lists exactly them; none otherwise."""
    gpus = [d.view for d in devices if isinstance(d.view, SmiGpu)]
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



def register() -> None:
    """Install ``nvidia-smi`` into every container that gets prepared GPUs (idempotent)."""
    register_tools_installer("nvidia-smi", install_smi)


__all__ = ["SmiGpu", "SmiMig", "install_smi", "register", "render_smi_list"]
