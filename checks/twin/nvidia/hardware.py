"""Virtual GPUs of a twin node: the NVML facts the emulated GPU plugin discovers, derived from a catalog instance.

Numbers that NVML would report come from the catalog (model, count, memory) and the MIG oracle (geometry);
driver/CUDA versions from the real H100 capture ``shared/reference/observed/h100x1-probe.txt`` (driver
580.159.04, CUDA 13000 → ``13.0``, PCI ``00000000:00:06.0``); the GPUs' sysfs NUMA node from the params
(``host.gpu_numa_node``, -1 on cloud VMs: no ``numaNode`` attribute). UUIDs are deterministic per instance
type and GPU index (uuid5), so the same twin always shows the same ``GPU-…`` lines and checks can compare
runs. Things the catalog does not know (PCI layout beyond one GPU, addressing mode) are
plausible choices, listed in the twin's fidelity notes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Final

from checks.catalog import Instance
from checks.driver.slices import GpuFacts, StaticMigDevice
from checks.mig import device_name
from checks.mig import gpu as mig_gpu

DRIVER_VERSION: Final = "580.159.04"
"""NVIDIA driver on the observed Lambda H100 (probe: ``driver 580.159.04``)."""
CUDA_DRIVER_VERSION: Final = "13.0"
"""CUDA driver API version (probe: ``cuda 13000``)."""
_NS: Final = uuid.UUID("6f1d9a3e-2c4b-5d7e-8f90-a1b2c3d4e5f6")
"""Private uuid5 namespace of dra-lab's virtual GPUs."""


def gpu_uuid(instance_type: str, index: int) -> str:
    """Deterministic ``GPU-…`` UUID of GPU ``index`` on a twin of ``instance_type``."""
    return "GPU-" + str(uuid.uuid5(_NS, f"{instance_type}/gpu/{index}"))


def mig_uuid(parent_uuid: str, device: str) -> str:
    """Deterministic ``MIG-…`` UUID of a MIG device (static or created by DynamicMIG) of ``parent_uuid``."""
    return "MIG-" + str(uuid.uuid5(_NS, f"{parent_uuid}/{device}"))


def _brand(model: str) -> str:
    """go-nvlib brand string: V100s report the Tesla brand, later data-centre parts ``Nvidia`` (NVML 14)."""
    return "Tesla" if model.startswith("Tesla") else "Nvidia"


def virtual_gpus(
    instance: Instance,
    *,
    mig_enabled: bool | Collection[int] = False,
    static_mig: Sequence[Sequence[tuple[str, int]]] = (),
) -> list[GpuFacts]:
    """The GPUs a twin node of ``instance`` has, in NVML index order.

    ``mig_enabled`` sets MIG mode on every MIG-capable GPU (True) or on the GPUs whose indices it lists
    (Ampere needs MIG mode before DynamicMIG, §4.5, and operators often enable it on one GPU only);
    ``static_mig[i]`` lists ``(profile, start)`` MIG devices that already exist on GPU ``i``.
    """
    g = instance.gpu
    geo = mig_gpu(g.mig_geometry) if g.mig_capable and g.mig_geometry else None
    arm = instance.host.cpu_arch == "arm64"
    out: list[GpuFacts] = []
    enabled = set(range(g.count)) if mig_enabled is True else set() if mig_enabled is False else set(mig_enabled)
    for i in range(g.count):
        parent = gpu_uuid(instance.instance_type, i)
        statics: list[StaticMigDevice] = []
        if geo is not None and i < len(static_mig):
            for gi, (profile, start) in enumerate(static_mig[i], start=1):
                p = geo.profile(profile)
                name = device_name(i, p.name, p.nvml_id, start)
                statics.append(StaticMigDevice(p.name, start, mig_uuid(parent, name), gi=gi, ci=0))
        out.append(
            GpuFacts(
                minor=i,
                index=i,
                uuid=parent,
                product_name=g.model,
                brand=_brand(g.model),
                architecture=g.architecture,
                cuda_compute_capability=g.compute_capability,
                driver_version=DRIVER_VERSION,
                cuda_driver_version=CUDA_DRIVER_VERSION,
                pci_bus_id=f"0000:00:{0x06 + i:02x}.0",
                pcie_root="pci0000:00",
                numa_node=instance.host.gpu_numa_node,
                memory_bytes=g.memory_mib * 2**20,
                addressing_mode="ATS" if arm else "HMM",
                mig=geo,
                mig_enabled=bool(geo is not None and (i in enabled or statics)),
                static_mig=tuple(statics),
            )
        )
    return out
