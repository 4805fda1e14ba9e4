"""Pure readers of what the API returns: slice devices, attribute values, semver, MIG placements, pod
conditions, allocations, the UUIDs ``nvidia-smi -L`` printed.

The checks and the notebooks share them. They take plain dicts and never touch a cluster, so they are
unit-tested on their own (``tests/test_scenarios_readers.py``) and a check's assertion reads as one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checks.driver import names
from checks.mig import GpuGeometry, Placement, device_name, parse_device_name

Obj = dict[str, Any]

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
"""Semantic Versioning 2.0.0: no leading zeros, exactly three numeric components (semver.org grammar)."""

VERSION_ATTRS = ("cudaComputeCapability", "driverVersion", "cudaDriverVersion")
"""Attributes the driver publishes with the ``version`` type (nvidia-dra-driver.md §4.3)."""

UNSCHEDULABLE_TEXT = "cannot allocate all claims"
"""What the DynamicResources Filter reports when no device assignment exists (kubernetes-dra.md §3.14, §4.2)."""

FULL_GPU_NAME = re.compile(r"^gpu-(\d+)$")
"""Full-GPU device name ``gpu-<minor>`` (nvidia-dra-driver.md §4.2)."""

GPU_UUID = re.compile(r"\(UUID: (GPU-[0-9a-fA-F-]+)\)")
MIG_UUID = re.compile(r"\(UUID: (MIG-[0-9a-fA-F-]+)\)")


def smi_uuids(text: str) -> list[str]:
    """UUIDs printed by ``nvidia-smi -L`` (GPU and MIG lines, in order) — nvidia-dra-driver.md §6.3."""
    out = []
    for line in text.splitlines():
        m = GPU_UUID.search(line) or MIG_UUID.search(line)
        if m:
            out.append(m.group(1))
    return out


def gpu_uuids(text: str) -> list[str]:
    """The ``GPU-…`` UUIDs among :func:`smi_uuids`."""
    return [u for u in smi_uuids(text) if u.startswith("GPU-")]


def mig_uuids(text: str) -> list[str]:
    """The ``MIG-…`` UUIDs among :func:`smi_uuids`."""
    return [u for u in smi_uuids(text) if u.startswith("MIG-")]


def condition_message(obj: Mapping[str, Any], cond_type: str) -> str:
    """The message of status condition ``cond_type`` ('' when absent or empty)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == cond_type:
            return str(cond.get("message") or "")
    return ""


def is_unschedulable(pod: Mapping[str, Any]) -> bool:
    """``PodScheduled=False`` with reason ``Unschedulable``: the scheduler tried and found no fit
    (kubernetes-dra.md §4.2)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return bool(cond.get("status") == "False" and cond.get("reason") == "Unschedulable")
    return False


def is_semver(text: str) -> bool:
    """Whether ``text`` is a valid semantic version (the form the ``version`` attribute type requires)."""
    return bool(SEMVER.match(text))


def attr(device: Mapping[str, Any], key: str) -> Any:
    """The value of a typed slice attribute (``{"string": …}``/``version``/``int``/``bool``), None if absent."""
    raw = (device.get("attributes") or {}).get(key)
    if not isinstance(raw, Mapping):
        return None
    for typ in ("string", "version", "int", "bool"):
        if typ in raw:
            return raw[typ]
    return None


def attr_type(device: Mapping[str, Any], key: str) -> str | None:
    """Which value type an attribute carries (``string``, ``version``, ``int``, ``bool``), None if absent."""
    raw = (device.get("attributes") or {}).get(key)
    if not isinstance(raw, Mapping):
        return None
    return next((t for t in ("string", "version", "int", "bool") if t in raw), None)


def device_type(device: Mapping[str, Any]) -> str | None:
    """The driver's ``type`` attribute: ``gpu``, ``mig`` or ``vfio``."""
    value = attr(device, "type")
    return None if value is None else str(value)


def attribute_key_problems(device: Mapping[str, Any], expected: Iterable[str],
                           optional: Iterable[str] = (names.NUMA_NODE_ATTR,)) -> list[str]:
    """Differences between a device's attribute keys and the expected set; ``optional`` keys may appear.

    Empty when the keys are exactly ``expected`` (plus any of ``optional``). The bats test compared the
    first device only; a check calls this for every device.
    """
    keys = set((device.get("attributes") or {}).keys())
    want = set(expected)
    problems = [f"missing {k}" for k in sorted(want - keys)]
    problems += [f"unexpected {k}" for k in sorted(keys - want - set(optional))]
    return problems


def version_problems(device: Mapping[str, Any]) -> list[str]:
    """Version attributes that are not ``version``-typed or not valid semver."""
    out = []
    for key in VERSION_ATTRS:
        typ = attr_type(device, key)
        value = attr(device, key)
        if typ is None:
            continue  # absence is reported by attribute_key_problems
        if typ != "version":
            out.append(f"{key} is a {typ}, not a version")
        elif not is_semver(str(value)):
            out.append(f"{key}={value!r} is not valid semver")
    return out


def slice_devices(slices: Iterable[Obj], driver: str = names.GPU_DRIVER) -> list[Obj]:
    """Every device of ``driver`` across ``slices``, each with ``_pool`` and ``_node`` added (slice-name order)."""
    out: list[Obj] = []
    for s in sorted(slices, key=lambda s: (s.get("metadata") or {}).get("name", "")):
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        for d in spec.get("devices") or []:
            out.append({**d, "_pool": (spec.get("pool") or {}).get("name"), "_node": spec.get("nodeName")})
    return out


def find_device(devices: Iterable[Mapping[str, Any]], result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The slice device an allocation result names (``pool`` + ``device``), or None."""
    for d in devices:
        if d.get("name") == result.get("device") and d.get("_pool") == result.get("pool"):
            return d
    return None


def allocation_results(claim: Mapping[str, Any]) -> list[Obj]:
    """``status.allocation.devices.results`` of a claim ([] when unallocated)."""
    alloc = (claim.get("status") or {}).get("allocation") or {}
    return list((alloc.get("devices") or {}).get("results") or [])


def allocated_devices(claim: Mapping[str, Any]) -> list[str]:
    """Device names in a claim's allocation ([] when unallocated)."""
    return [str(r.get("device")) for r in allocation_results(claim)]


def reserved_uids(claim: Mapping[str, Any]) -> set[str]:
    """UIDs of the consumers in ``status.reservedFor``."""
    return {str(r.get("uid")) for r in (claim.get("status") or {}).get("reservedFor") or []}


def pool_layout_problems(slices: Iterable[Obj], driver: str = names.GPU_DRIVER) -> list[str]:
    """What is wrong with the pools of ``driver``: one pool per node named after it, consistent generation and
    ``resourceSliceCount``, unique device names per pool (nvidia-dra-driver.md §4.1; kubernetes-dra.md §1.5)."""
    pools: dict[str, list[Obj]] = {}
    problems: list[str] = []
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pool = spec.get("pool") or {}
        pools.setdefault(str(pool.get("name")), []).append(s)
        node = spec.get("nodeName")
        if not node:
            problems.append(f"slice {s['metadata']['name']}: no spec.nodeName (node-local devices)")
        elif pool.get("name") != node:
            problems.append(f"slice {s['metadata']['name']}: pool {pool.get('name')!r} is not named after "
                            f"node {node!r}")
    for name, members in sorted(pools.items()):
        gens = {(m["spec"]["pool"]).get("generation") for m in members}
        counts = {(m["spec"]["pool"]).get("resourceSliceCount") for m in members}
        if len(gens) != 1:
            problems.append(f"pool {name}: slices disagree on generation {sorted(map(str, gens))}")
        if counts != {len(members)}:
            problems.append(f"pool {name}: resourceSliceCount {sorted(map(str, counts))} but {len(members)} "
                            "slices")
        seen: set[str] = set()
        for m in members:
            for d in m["spec"].get("devices") or []:
                if d["name"] in seen:
                    problems.append(f"pool {name}: device {d['name']} published twice")
                seen.add(d["name"])
    return problems


def version_at_least(git_version: str, major: int, minor: int) -> bool:
    """``v1.36.2``/``v1.35.0-rc.1+abc`` ≥ major.minor (pre-releases of a minor count as that minor)."""
    m = re.match(r"^v?(\d+)\.(\d+)", git_version.strip())
    if m is None:
        return False
    return (int(m.group(1)), int(m.group(2))) >= (major, minor)


def unschedulable_problems(pod: Mapping[str, Any]) -> list[str]:
    """Why a pod does not look like a DRA-unschedulable pod (kubernetes-dra.md §4.2): Pending, not bound,
    ``PodScheduled=False`` reason ``Unschedulable`` with ``cannot allocate all claims`` in the message."""
    status = pod.get("status") or {}
    problems = []
    if status.get("phase") != "Pending":
        problems.append(f"phase is {status.get('phase')!r}, not Pending")
    if (pod.get("spec") or {}).get("nodeName"):
        problems.append(f"bound to node {pod['spec']['nodeName']}")
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if cond is None:
        problems.append("no PodScheduled condition")
    else:
        if cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
            problems.append(f"PodScheduled={cond.get('status')}/{cond.get('reason')}, not False/Unschedulable")
        if UNSCHEDULABLE_TEXT not in str(cond.get("message") or ""):
            problems.append(f"message {cond.get('message')!r} lacks {UNSCHEDULABLE_TEXT!r}")
    return problems


@dataclass(frozen=True)
class MigDevice:
    """One published DynamicMIG device, parsed."""

    name: str
    """Device name, e.g. ``gpu-0-mig-1g10gb-19-3``."""
    minor: int
    """Parent GPU minor (from the name)."""
    profile: str
    """``profile`` attribute, e.g. ``1g.10gb``."""
    start: int
    """Placement start (from the name)."""
    parent_uuid: str
    """``parentUUID`` attribute."""
    product: str
    """Parent's ``productName``."""
    node: str
    """Node publishing it."""
    pool: str
    """Pool (= node) publishing it."""


def mig_devices(devices: Iterable[Mapping[str, Any]]) -> list[MigDevice]:
    """The ``type=mig`` devices among ``devices`` (from :func:`slice_devices`), parsed."""
    out = []
    for d in devices:
        if device_type(d) != "mig":
            continue
        parsed = parse_device_name(str(d["name"]))
        out.append(MigDevice(name=str(d["name"]), minor=parsed.minor, profile=str(attr(d, "profile")),
                             start=parsed.start, parent_uuid=str(attr(d, "parentUUID")),
                             product=str(attr(d, "productName")), node=str(d.get("_node") or ""),
                             pool=str(d.get("_pool") or "")))
    return out


def smallest_profile(geo: GpuGeometry) -> str:
    """The profile an over-capacity check fills the GPU with: fewest compute, then memory slices, no ``+me``."""
    plain = [p for p in geo.profiles if not p.media_extension]
    return min(plain, key=lambda p: (p.compute_slices, p.memory_slices, p.name)).name


def profile_of_class(geo: GpuGeometry, profile_class: str) -> str:
    """The profile name of a class (``3g`` → ``3g.40gb`` on H100) on ``geo``."""
    for p in geo.profiles:
        if p.profile_class == profile_class:
            return p.name
    raise LookupError(f"{geo.key} has no {profile_class} profile")


def placement_of(device_name: str, geo: GpuGeometry) -> Placement:
    """The oracle placement a DynamicMIG device name denotes on ``geo``."""
    parsed = parse_device_name(device_name)
    return Placement(parsed.profile(geo).name, parsed.start)


def same_uuid(outputs: Sequence[Sequence[str]]) -> bool:
    """Whether every output lists exactly one and the same UUID."""
    return bool(outputs) and all(len(o) == 1 for o in outputs) and len({o[0] for o in outputs}) == 1


def parent_selector(parent_uuid: str, profile: str | None = None) -> list[str]:
    """CEL selectors pinning a MIG request to one parent GPU (and optionally one profile)."""
    sel = [f"device.attributes['{names.GPU_DRIVER}'].parentUUID == '{parent_uuid}'"]
    if profile is not None:
        sel.append(f"device.attributes['{names.GPU_DRIVER}'].profile == '{profile}'")
    return sel


MIG_LINE = re.compile(r"^\s*MIG\s+(\S+)\s+Device\s+\d+:\s+\(UUID: (MIG-[0-9a-fA-F-]+)\)")
"""``  MIG 1g.10gb     Device  0: (UUID: MIG-…)`` (nvidia-dra-driver.md §6.3)."""


def mig_lines(text: str) -> list[tuple[str, str]]:
    """``(profile, MIG-uuid)`` of every MIG line ``nvidia-smi -L`` printed, in order."""
    out = []
    for line in text.splitlines():
        m = MIG_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def published_mig_names(geo: GpuGeometry, minor: int) -> set[str]:
    """Every DynamicMIG device the driver announces for GPU ``minor``: each profile × each placement (§4.5)."""
    return {device_name(minor, p.name, p.nvml_id, s) for p in geo.profiles for s in p.starts}
