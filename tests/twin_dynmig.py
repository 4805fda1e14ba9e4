"""Minimal DynamicMIG ResourceSlices shaped as the NVIDIA driver publishes them on Kubernetes ≥ 1.35.

Used by the allocator tests and ``benchmarks/allocator.py``. Shape per nvidia-dra-driver.md §4.5–4.6:
one pool per node (pool = node name), a counters-only slice first (one ``gpu-<minor>-counter-set`` per
GPU: one counter per capacity dimension at the GPU maximum, plus ``memory-slice-<i>``), then one
devices-only slice per GPU with every profile × placement sorted by device name; the full GPU (Hopper+)
consumes everything; Ampere with MIG enabled hides the full GPU. Numbers come from ``checks.mig``.
"""

from __future__ import annotations

from typing import Any

from checks.mig.geometry import GpuGeometry
from checks.mig.naming import device_name

DRIVER = "gpu.nvidia.com"
MIG_CLASS = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "DeviceClass",
    "metadata": {"name": "mig.nvidia.com"},
    "spec": {"selectors": [{"cel": {"expression":
        "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'"}}]},
}
GPU_CLASS = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "DeviceClass",
    "metadata": {"name": "gpu.nvidia.com"},
    "spec": {"selectors": [{"cel": {"expression":
        "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'"}}],
        "extendedResourceName": "nvidia.com/gpu"},
}


def _q(v: int | str) -> dict[str, str]:
    return {"value": str(v)}


def _dims(geo: GpuGeometry) -> dict[str, int]:
    """Per-dimension maximum over all profiles (the full GPU's capacity under DynamicMIG, §4.4)."""
    return {
        "multiprocessors": max(p.sms for p in geo.profiles),
        "copyEngines": max(p.engines.ce for p in geo.profiles),
        "decoders": max(p.engines.dec for p in geo.profiles),
        "encoders": max(p.engines.enc for p in geo.profiles),
        "jpegEngines": max(p.engines.jpeg for p in geo.profiles),
        "ofaEngines": max(p.engines.ofa for p in geo.profiles),
        "memory": max(p.memory_mib for p in geo.profiles),
    }


_COUNTER = {"multiprocessors": "multiprocessors", "copyEngines": "copy-engines", "decoders": "decoders",
            "encoders": "encoders", "jpegEngines": "jpeg-engines", "ofaEngines": "ofa-engines", "memory": "memory"}


def _cap_value(name: str, v: int) -> str:
    return f"{v}Mi" if name == "memory" else str(v)


def dynmig_slices(geo: GpuGeometry, node: str, gpus: int = 1, *, full_gpu: bool | None = None,
                  generation: int = 1) -> list[dict[str, Any]]:
    """Counters slice + one devices slice per GPU for ``node`` (pool ``node``)."""
    show_full = geo.architecture != "Ampere" if full_gpu is None else full_gpu
    dims = _dims(geo)
    pool = {"name": node, "generation": generation, "resourceSliceCount": gpus + 1}
    counter_sets = []
    for minor in range(gpus):
        counters = {_COUNTER[k]: _q(_cap_value(k, v)) for k, v in dims.items()}
        counters.update({f"memory-slice-{i}": _q(1) for i in range(geo.memory_slices)})
        counter_sets.append({"name": f"gpu-{minor}-counter-set", "counters": counters})
    slices: list[dict[str, Any]] = [{
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": f"00000-{DRIVER}-{node}-ctrs"},
        "spec": {"driver": DRIVER, "nodeName": node, "pool": dict(pool), "sharedCounters": counter_sets},
    }]
    for minor in range(gpus):
        uuid = f"GPU-{minor:08d}-0000-0000-0000-{node[-12:]:0>12}"
        parent = {"productName": {"string": geo.names[0]}, "architecture": {"string": geo.architecture},
                  "resource.kubernetes.io/pcieRoot": {"string": f"pci0000:{minor // 4:02x}"}}
        devices = []
        if show_full:
            caps = {k: _q(_cap_value(k, v)) for k, v in dims.items()}
            cons = {_COUNTER[k]: _q(_cap_value(k, v)) for k, v in dims.items()}
            cons.update({f"memory-slice-{i}": _q(1) for i in range(geo.memory_slices)})
            devices.append({"name": f"gpu-{minor}",
                            "attributes": {"type": {"string": "gpu"}, "uuid": {"string": uuid}, **parent},
                            "capacity": caps,
                            "consumesCounters": [{"counterSet": f"gpu-{minor}-counter-set", "counters": cons}]})
        for p in geo.profiles:
            vals = {"multiprocessors": p.sms, "copyEngines": p.engines.ce, "decoders": p.engines.dec,
                    "encoders": p.engines.enc, "jpegEngines": p.engines.jpeg, "ofaEngines": p.engines.ofa,
                    "memory": p.memory_mib}
            for start in p.starts:
                cons = {_COUNTER[k]: _q(_cap_value(k, v)) for k, v in vals.items()}
                cons.update({f"memory-slice-{i}": _q(1) for i in p.slots(start)})
                devices.append({
                    "name": device_name(minor, p.name, p.nvml_id, start),
                    "attributes": {"type": {"string": "mig"}, "profile": {"string": p.name},
                                   "parentUUID": {"string": uuid}, **parent},
                    "capacity": {k: _q(_cap_value(k, v)) for k, v in vals.items()},
                    "consumesCounters": [{"counterSet": f"gpu-{minor}-counter-set", "counters": cons}],
                })
        devices.sort(key=lambda d: str(d["name"]))
        slices.append({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"{minor + 1:05x}-{DRIVER}-{node}-dev{minor}"},
            "spec": {"driver": DRIVER, "nodeName": node, "pool": dict(pool), "devices": devices},
        })
    return slices


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}


def claim(name: str, requests: list[dict[str, Any]], *, namespace: str = "default",
          constraints: list[dict[str, Any]] | None = None, config: list[dict[str, Any]] | None = None
          ) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": requests}
    if constraints:
        devices["constraints"] = constraints
    if config:
        devices["config"] = config
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"devices": devices}}


def exactly(name: str, cls: str, *selectors: str, count: int | None = None, **extra: Any) -> dict[str, Any]:
    ex: dict[str, Any] = {"deviceClassName": cls, "allocationMode": "ExactCount", "count": count or 1}
    if selectors:
        ex["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    ex.update(extra)
    if ex.get("allocationMode") == "All":
        ex.pop("count", None)
    return {"name": name, "exactly": ex}


def profile_is(profile: str) -> str:
    return f"device.attributes['gpu.nvidia.com'].profile == '{profile}'"
