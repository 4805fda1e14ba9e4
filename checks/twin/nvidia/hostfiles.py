"""The NVIDIA part of a twin node's emulated host files: what a GPU node's ``/dev`` and ``/proc`` show.

Installed through the kubelet seam (:func:`kubetwin.kubelet.seam.register_host_files_installer`) into the node's
emulated host root, so containers see them as on a real node: a privileged container (or one mounting hostPath
``/dev``) lists ``/dev/nvidia<minor>`` for every GPU, every container reads ``/proc/driver/nvidia/version`` and
``gpus/<bus id>/information``. Layout and texts as observed on a GPU cloud VM (notes/device-h200.md: nvidia0
195:0, nvidiactl 195:255, nvidia-uvm, nvidia-uvm-tools, nvidia-caps/nvidia-cap1|2, the NVRM version line).
The device files are empty regular files: nothing in the twin opens them.
"""

from __future__ import annotations

from pathlib import Path

from checks.twin.nvidia.binaries import node_gpus
from kubetwin.kubelet.seam import register_host_files_installer

CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-caps/nvidia-cap1",
                   "nvidia-caps/nvidia-cap2")
"""Device files a GPU node has besides one ``nvidia<minor>`` per GPU."""


def install_host_files(node: str, host_root: Path) -> None:
    """Write the node's ``/dev/nvidia*`` and ``/proc/driver/nvidia`` (nothing on a node without GPUs)."""
    gpus = node_gpus(node)
    if not gpus:
        return
    dev = host_root / "dev"
    for rel in [f"nvidia{g.minor}" for g in gpus] + list(CONTROL_DEVICES):
        (dev / rel).parent.mkdir(parents=True, exist_ok=True)
        (dev / rel).touch(exist_ok=True)
    proc = host_root / "proc" / "driver" / "nvidia"
    proc.mkdir(parents=True, exist_ok=True)
    version = gpus[0].driver_version
    (proc / "version").write_text(
        f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {version}  Release Build  (dvs-builder@)  \n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    for g in gpus:
        info = proc / "gpus" / g.pci_bus_id.lower() / "information"
        info.parent.mkdir(parents=True, exist_ok=True)
        info.write_text(f"Model: \t\t {g.product_name}\nIRQ:   \t\t {41 + g.index}\nGPU UUID: \t {g.uuid}\n"
                        f"Bus Type: \t PCIe\nBus Location: \t {g.pci_bus_id.lower()}\nDevice Minor: \t {g.minor}\n"
                        f"GPU Firmware: \t {version}\nGPU Excluded:\t No\n")


def register() -> None:
    """Install the NVIDIA host files on every twin node (idempotent)."""
    register_host_files_installer("nvidia", install_host_files)


__all__ = ["CONTROL_DEVICES", "install_host_files", "register"]
