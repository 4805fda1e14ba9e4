"""The ResourceSlices the GPU kubelet plugin publishes, computed from facts about a node's GPUs.

Reference ``nvidia-dra-driver.md`` §4: pool/slice layout (§4.1), device names (§4.2), attributes and their
value types (§4.3), capacities (§4.4), the DynamicMIG partitionable-device model with shared counters
(§4.5) and the worked H100 example (§4.6). The output is plain REST JSON (``resource.k8s.io/v1`` camelCase,
quantities as canonical strings) so the twin can create it through its API and the suite can compare
it with what a real cluster returns.

Known simplification: upstream orders devices of the single default-mode slice by Go map iteration
(random); we sort them by name so the twin is deterministic (listed in the twin's fidelity notes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from checks.driver import gates as gate_table
from checks.driver import names
from checks.mig.geometry import GpuGeometry, Profile
from checks.mig.naming import device_name as mig_device_name

Json = dict[str, Any]

SPLIT_SLICES_MIN_MINOR: Final = 35
"""Kubernetes >= 1.35.0 gets a separate counters-only slice with DynamicMIG (§4.1)."""


@dataclass(frozen=True)
class StaticMigDevice:
    """A MIG device that already exists when the plugin starts (static MIG, §4.5 last bullet)."""

    profile: str
    """GI profile name, e.g. ``1g.10gb``."""
    start: int
    """Placement start on the memory-slice axis."""
    uuid: str
    """``MIG-…`` UUID NVML reports for it."""
    gi: int = 0
    """GPU-instance id (for CDI caps paths)."""
    ci: int = 0
    """Compute-instance id."""


@dataclass(frozen=True)
class GpuFacts:
    """What NVML tells the plugin about one physical GPU (the inputs of §4.3-§4.5)."""

    minor: int
    """``/dev/nvidia<minor>``; device names use it (§4.2)."""
    index: int
    """NVML index (``nvidia-smi -L`` numbering); never published."""
    uuid: str
    """``GPU-…`` UUID."""
    product_name: str
    """NVML name, e.g. ``NVIDIA H100 80GB HBM3``."""
    brand: str
    """go-nvlib brand string, e.g. ``Nvidia``."""
    architecture: str
    """go-nvlib architecture: ``Ampere``, ``Hopper``, ``Blackwell``, ``Ada Lovelace``…"""
    cuda_compute_capability: str
    """``major.minor``, e.g. ``9.0``."""
    driver_version: str
    """NVML driver version as printed, e.g. ``580.159.04`` (normalised to semver when published)."""
    cuda_driver_version: str
    """``major.minor`` of the CUDA driver API, e.g. ``13.0``."""
    pci_bus_id: str
    """BDF with 4-digit domain, lower case, e.g. ``0000:00:06.0``."""
    pcie_root: str | None
    """``pci<domain>:<bus>`` of the root complex; None = unresolvable (attribute omitted)."""
    numa_node: int
    """NUMA node; < 0 = none (attribute omitted)."""
    memory_bytes: int | None
    """NVML total memory; None = NOT_SUPPORTED (capacity omitted)."""
    addressing_mode: str | None = None
    """``HMM``/``ATS``/``None``; None = not reported (attribute omitted)."""
    mig: GpuGeometry | None = None
    """MIG geometry when the GPU is MIG-capable."""
    mig_enabled: bool = False
    """Current MIG mode."""
    static_mig: tuple[StaticMigDevice, ...] = field(default_factory=tuple)
    """MIG devices that exist at plugin start."""

    @property
    def name(self) -> str:
        """Full-GPU device name ``gpu-<minor>``."""
        return names.gpu_device_name(self.minor)


# ---------------------------------------------------------------------------------------------------
# Value helpers.

_BINARY_SUFFIXES: Final = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def binary_si(value: int) -> str:
    """Canonical string of a BinarySI quantity of ``value`` bytes (``81559Mi``, ``2Gi``, ``1000``)."""
    if value == 0:
        return "0"
    for suffix, base in _BINARY_SUFFIXES:
        if value % base == 0:
            return f"{value // base}{suffix}"
    return str(value)


def semver(text: str) -> str:
    """Masterminds-style normalisation: pad to three parts, strip leading zeros (``580.159.04`` → ``580.159.4``)."""
    parts = [p for p in re.split(r"[.]", text.strip()) if p != ""]
    nums = [str(int(p)) for p in parts[:3]]
    while len(nums) < 3:
        nums.append("0")
    return ".".join(nums)


def _s(v: str) -> Json:
    return {"string": v}


def _cap(v: int | str) -> Json:
    return {"value": str(v)}


def uses_split_slices(kubernetes_version: str | int) -> bool:
    """Whether DynamicMIG publishes a separate counters slice (server >= 1.35.0; pre-releases compare below).

    Accepts a minor number (``35``) or a version string (``v1.35.0``, ``1.35.0-alpha.1``).
    """
    if isinstance(kubernetes_version, int):
        return kubernetes_version >= SPLIT_SLICES_MIN_MINOR
    text = kubernetes_version.strip().lstrip("v")
    core, _, pre = text.partition("-")
    nums = [int(x) for x in re.findall(r"\d+", core)[:3]]
    major, minor, patch = (*nums, 0, 0, 0)[:3]
    if (major, minor) != (1, SPLIT_SLICES_MIN_MINOR):
        return (major, minor) > (1, SPLIT_SLICES_MIN_MINOR)
    return patch > 0 or not pre


# ---------------------------------------------------------------------------------------------------
# Attributes (§4.3).


def _parent_attributes(g: GpuFacts, gates: Mapping[str, bool]) -> Json:
    attrs: Json = {
        "architecture": _s(g.architecture),
        "brand": _s(g.brand),
        "cudaComputeCapability": {"version": semver(g.cuda_compute_capability)},
        "cudaDriverVersion": {"version": semver(g.cuda_driver_version)},
        "driverVersion": {"version": semver(g.driver_version)},
        "productName": _s(g.product_name),
        names.PCI_BUS_ID_ATTR: _s(g.pci_bus_id),
    }
    if g.pcie_root:
        attrs[names.PCIE_ROOT_ATTR] = _s(g.pcie_root)
    if g.numa_node >= 0:
        attrs[names.NUMA_NODE_ATTR] = (
            {"ints": [g.numa_node]} if gates.get("DRAListTypeAttributes", False) else {"int": g.numa_node}
        )
    if g.addressing_mode is not None:
        attrs["addressingMode"] = _s(g.addressing_mode)
    return attrs


def gpu_attributes(g: GpuFacts, gates: Mapping[str, bool] | None = None) -> Json:
    """Attributes of the full-GPU device (``type: gpu``)."""
    attrs = _parent_attributes(g, gates or {})
    attrs["type"] = _s("gpu")
    attrs["uuid"] = _s(g.uuid)
    return dict(sorted(attrs.items()))


def mig_attributes(g: GpuFacts, profile: Profile, uuid: str | None, gates: Mapping[str, bool] | None = None) -> Json:
    """Attributes of a MIG device; ``uuid`` only for static MIG (the dynamic one does not exist yet)."""
    attrs = _parent_attributes(g, gates or {})
    attrs["type"] = _s("mig")
    attrs["parentUUID"] = _s(g.uuid)
    attrs["profile"] = _s(profile.name)
    if uuid is not None:
        attrs["uuid"] = _s(uuid)
    return dict(sorted(attrs.items()))


# ---------------------------------------------------------------------------------------------------
# Capacities and counters (§4.4, §4.5).


def profile_dimensions(p: Profile) -> dict[str, int]:
    """Capacity dimensions of one MIG profile in capacity-name form (memory in bytes)."""
    return {
        "copyEngines": p.engines.ce,
        "decoders": p.engines.dec,
        "encoders": p.engines.enc,
        "jpegEngines": p.engines.jpeg,
        "memory": p.memory_mib * 2**20,
        "multiprocessors": p.sms,
        "ofaEngines": p.engines.ofa,
    }


ENGINE_DIMENSIONS: Final = ("copyEngines", "decoders", "encoders", "jpegEngines", "ofaEngines")
"""Capacity dimensions that come from a profile's engine counts (``Profile.engines``)."""


def max_dimensions(geo: GpuGeometry) -> dict[str, int]:
    """Per-dimension maximum over all profiles: the full GPU's capacity under DynamicMIG (§4.4).

    The real plugin reads every profile's engines from NVML, so the maximum is the 7g (whole-GPU) value. Where
    our geometry data has no engine capture for some profile (``engines_known=False``: B200 3g/4g/7g) the
    maximum over the *known* profiles would be too small — on B200 the 2g's 2 JPEG units, so only two 1g
    devices would fit the counters although the GPU holds seven. For engine dimensions we therefore take the
    per-GPU total a known profile implies when packed to its ``max_instances`` (7×1g: 7 JPEG, 14 CE), which
    is a lower bound of the real whole-GPU value and lets every placement the oracle allows fit the counters.
    """
    out: dict[str, int] = {}
    for p in geo.profiles:
        for k, v in profile_dimensions(p).items():
            out[k] = max(out.get(k, 0), v)
    if not all(p.engines_known for p in geo.profiles):
        for p in geo.profiles:
            if not p.engines_known:
                continue
            dims = profile_dimensions(p)
            for k in ENGINE_DIMENSIONS:
                out[k] = max(out[k], dims[k] * p.max_instances)
    return out


def memory_slice_count(geo: GpuGeometry) -> int:
    """Largest placement size over all profiles (§4.5 ``memSliceCount``)."""
    return max(p.memory_slices for p in geo.profiles)


def _dims_to_capacity(dims: Mapping[str, int]) -> Json:
    return {k: _cap(binary_si(v) if k == "memory" else v) for k, v in sorted(dims.items())}


def _dims_to_counters(dims: Mapping[str, int], slices: range) -> Json:
    counters: Json = {
        names.CAPACITY_TO_COUNTER[k]: _cap(binary_si(v) if k == "memory" else v) for k, v in dims.items()
    }
    for i in slices:
        counters[names.memory_slice_counter(i)] = _cap(1)
    return dict(sorted(counters.items()))


def counter_set(g: GpuFacts) -> Json:
    """``sharedCounters`` entry of a partitionable GPU: every dimension at max plus ``memory-slice-<i>``."""
    assert g.mig is not None
    return {
        "name": names.counter_set_name(g.minor),
        "counters": _dims_to_counters(max_dimensions(g.mig), range(memory_slice_count(g.mig))),
    }


def is_partitionable(g: GpuFacts) -> bool:
    """DynamicMIG applies: MIG-capable and (Hopper or newer, or Ampere with MIG already on) (§4.5)."""
    if g.mig is None:
        return False
    if g.architecture == "Ampere":
        return g.mig_enabled
    return True


# ---------------------------------------------------------------------------------------------------
# Devices.


def full_gpu_device(g: GpuFacts, gates: Mapping[str, bool], *, partitionable: bool) -> Json:
    """The ``gpu-<minor>`` device; under DynamicMIG on a partitionable GPU it consumes everything."""
    dev: Json = {"name": g.name, "attributes": gpu_attributes(g, gates)}
    if partitionable and g.mig is not None:
        dims = max_dimensions(g.mig)
        dev["capacity"] = _dims_to_capacity(dims)
        dev["consumesCounters"] = [
            {
                "counterSet": names.counter_set_name(g.minor),
                "counters": _dims_to_counters(dims, range(memory_slice_count(g.mig))),
            }
        ]
    elif g.memory_bytes is not None:
        dev["capacity"] = {"memory": _cap(binary_si(g.memory_bytes))}
    return dev


def dynamic_mig_devices(g: GpuFacts, gates: Mapping[str, bool]) -> list[Json]:
    """Every profile × placement of a partitionable GPU, consuming its counter set (§4.5)."""
    assert g.mig is not None
    out: list[Json] = []
    for p in g.mig.profiles:
        dims = profile_dimensions(p)
        for start in p.starts:
            out.append(
                {
                    "name": mig_device_name(g.minor, p.name, p.nvml_id, start),
                    "attributes": mig_attributes(g, p, None, gates),
                    "capacity": _dims_to_capacity(dims),
                    "consumesCounters": [
                        {
                            "counterSet": names.counter_set_name(g.minor),
                            "counters": _dims_to_counters(dims, p.slots(start)),
                        }
                    ],
                }
            )
    return out


def static_mig_devices(g: GpuFacts, gates: Mapping[str, bool]) -> list[Json]:
    """Pre-created MIG devices: capacities plus ``memorySlice<i>``, a ``uuid``, no counters (§4.4, §4.6 d)."""
    assert g.mig is not None
    out: list[Json] = []
    for m in g.static_mig:
        p = g.mig.profile(m.profile)
        capacity = _dims_to_capacity(profile_dimensions(p))
        for i in p.slots(m.start):
            capacity[names.memory_slice_capacity(i)] = _cap(1)
        out.append(
            {
                "name": mig_device_name(g.minor, p.name, p.nvml_id, m.start),
                "attributes": mig_attributes(g, p, m.uuid, gates),
                "capacity": dict(sorted(capacity.items())),
            }
        )
    return out


def _by_name(devices: list[Json]) -> list[Json]:
    return sorted(devices, key=lambda d: str(d["name"]))


@dataclass(frozen=True)
class Publication:
    """What the plugin publishes for one node: slice specs in index order plus the warnings it logs."""

    specs: list[Json]
    """``spec`` of each slice, index 0 first."""
    warnings: list[str]
    """Warning log lines emitted while building (e.g. MIG enabled without devices)."""
    layout: str
    """``single`` (default), ``combined`` (DynamicMIG, < 1.35), ``split`` (DynamicMIG, >= 1.35) or
    ``fallback`` (DynamicMIG without any MIG-capable GPU)."""

    def devices(self) -> list[Json]:
        """All devices across the slices, in publication order."""
        return [d for s in self.specs for d in s.get("devices", [])]


def publish(
    node: str,
    gpus: Sequence[GpuFacts],
    gates: Mapping[str, bool] | None = None,
    kubernetes_version: str | int = 36,
    *,
    generation: int = 1,
) -> Publication:
    """Compute the slice specs the GPU plugin publishes for ``node`` (§4.1-§4.6)."""
    eff = gate_table.effective(gates or {})
    ordered = sorted(gpus, key=lambda g: g.pci_bus_id)
    warnings: list[str] = []

    def spec(devices: list[Json] | None, counters: list[Json] | None) -> Json:
        s: Json = {"driver": names.GPU_DRIVER, "nodeName": node, "pool": {"name": node, "generation": generation}}
        if counters:
            s["sharedCounters"] = counters
        if devices is not None:
            s["devices"] = devices
        return s

    if not eff["DynamicMIG"]:
        devices: list[Json] = []
        for g in ordered:
            if g.mig is not None and g.mig_enabled:
                if not g.static_mig:
                    warnings.append(f"Physical GPU {g.name} has MIG mode enabled but no configured MIG devices")
                devices.extend(static_mig_devices(g, eff))
            else:
                devices.append(full_gpu_device(g, eff, partitionable=False))
        specs = [spec(_by_name(devices), None)]
        layout = "single"
    elif not any(is_partitionable(g) for g in ordered):
        if not any(g.mig is not None for g in ordered):
            warnings.append(
                "DynamicMIG enabled but no MIG capable GPU found on this node; falling back to legacy Full GPU support"
            )
        specs = [spec([full_gpu_device(g, eff, partitionable=False)], None) for g in ordered]
        layout = "fallback"
    else:
        per_gpu: list[tuple[GpuFacts, list[Json]]] = []
        for g in ordered:
            part = is_partitionable(g)
            devs: list[Json] = []
            if part:
                if g.architecture != "Ampere":
                    devs.append(full_gpu_device(g, eff, partitionable=True))
                devs.extend(dynamic_mig_devices(g, eff))
            else:
                devs.append(full_gpu_device(g, eff, partitionable=False))
            per_gpu.append((g, _by_name(devs)))
        if uses_split_slices(kubernetes_version):
            counters = [counter_set(g) for g, _ in per_gpu if is_partitionable(g)]
            specs = [spec(None, counters)] + [spec(devs, None) for _, devs in per_gpu]
            layout = "split"
        else:
            specs = [spec(devs, [counter_set(g)] if is_partitionable(g) else None) for g, devs in per_gpu]
            layout = "combined"
    for s in specs:
        s["pool"]["resourceSliceCount"] = len(specs)
    return Publication(specs=specs, warnings=warnings, layout=layout)


def slice_object(spec: Json, index: int, node: str, node_uid: str) -> Json:
    """A full ResourceSlice body for ``spec``: ``generateName`` per §4.1, owned by the Node."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {
            "generateName": names.slice_generate_name(index, node),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": True}
            ],
        },
        "spec": spec,
    }
