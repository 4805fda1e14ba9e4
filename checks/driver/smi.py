"""What ``nvidia-smi`` prints inside a workload container for the devices the driver prepared.

Reference ``nvidia-dra-driver.md`` §6.3 (what the upstream tests grep) and the real H100 capture in
``shared/reference/observed/h100x1-probe.txt``. The twin's ``nvidia-smi`` and the suite's expectations
both use :func:`list_lines`, so "one line per full GPU, parent + MIG line per MIG device" is encoded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class VisibleGpu:
    """One physical GPU visible in the container, with the MIG devices of it that were injected."""

    product_name: str
    """NVML name, e.g. ``NVIDIA H100 80GB HBM3``."""
    uuid: str
    """``GPU-…`` UUID."""
    pci_bus_id: str
    """Orders GPUs the way NVML enumerates them inside the container."""
    migs: tuple[tuple[str, str], ...] = ()
    """``(profile, MIG-uuid)`` pairs; empty = the full GPU was injected."""


def gpu_line(index: int, product_name: str, uuid: str) -> str:
    """``GPU <i>: <name> (UUID: GPU-…)``."""
    return f"GPU {index}: {product_name} (UUID: {uuid})"


def mig_line(index: int, profile: str, uuid: str) -> str:
    """Indented MIG line, profile padded to 12 columns and index right-aligned in 2 as nvidia-smi does."""
    return f"  MIG {profile:<12}Device {index:>2}: (UUID: {uuid})"


def list_lines(gpus: Sequence[VisibleGpu]) -> list[str]:
    """``nvidia-smi -L`` output lines: GPUs renumbered from 0 in PCI order, MIG devices under their parent."""
    lines: list[str] = []
    for i, g in enumerate(sorted(gpus, key=lambda g: g.pci_bus_id)):
        lines.append(gpu_line(i, g.product_name, g.uuid))
        for j, (profile, uuid) in enumerate(g.migs):
            lines.append(mig_line(j, profile, uuid))
    return lines


def list_output(gpus: Sequence[VisibleGpu]) -> str:
    """``nvidia-smi -L`` stdout (newline-terminated); empty when nothing was injected."""
    lines = list_lines(gpus)
    return "".join(line + "\n" for line in lines)


def version_output(driver_version: str, cuda_version: str) -> str:
    """``nvidia-smi --version`` stdout; ``cuda_version`` as ``13.0``. NVML version = driver major.minor."""
    nvml = ".".join(driver_version.split(".")[:2])
    return (
        f"NVIDIA-SMI version  : {driver_version}\n"
        f"NVML version        : {nvml}\n"
        f"DRIVER version      : {driver_version}\n"
        f"CUDA Version        : {cuda_version}\n"
    )
