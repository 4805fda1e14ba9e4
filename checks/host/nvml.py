"""The host probe: NVML (nvidia-ml-py) plus /proc, strictly read-only.

Imports only the stdlib and ``pynvml`` so it runs on a bare GPU host (``python -m checks.host``). The
probe never changes MIG mode, clocks or driver settings, and never creates device nodes: it asks.
Every NVML call goes through :func:`_call`, which turns a refusal (NOT_SUPPORTED and friends) into a
note instead of an exception — on a real host some calls are refused and that fact is a result.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import importlib.metadata
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from checks.host import procfs
from checks.host.report import (
    Fabric,
    GpuPair,
    Health,
    HostGpu,
    HostReport,
    MigProfile,
    NvLink,
    NvmlPlacement,
    XidEvent,
)

T = TypeVar("T")

ARCHITECTURES = {
    2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing",
    7: "Ampere", 8: "Ada", 9: "Hopper", 10: "Blackwell",
}
"""``nvmlDeviceArchitecture_t`` -> go-nvlib spelling (what the MIG oracle's ``architecture`` uses)."""
FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}
"""``nvmlGpuFabricState_t`` values."""
REMOTE_TYPES = {0: "gpu", 1: "ibmnpu", 2: "switch"}
"""``nvmlIntNvLinkDeviceType_t`` values."""
ANCESTORS = {0: "internal", 10: "single", 20: "multiple", 30: "hostbridge", 40: "node", 50: "system"}
"""``nvmlGpuTopologyLevel_t`` values (``nvidia-smi topo -m`` legend)."""
PROFILE_ENUM_COUNT_FALLBACK = 20
"""Profile indices to ask when pynvml lacks ``NVML_GPU_INSTANCE_PROFILE_COUNT``."""
_XID_CRITICAL = 0x8
"""``nvmlEventTypeXidCriticalError``."""


class _Notes:
    """Collects call -> outcome for calls that did not succeed."""

    def __init__(self, nvml: Any, target: dict[str, str]) -> None:
        self.nvml = nvml
        self.target = target

    def classify(self, exc: BaseException) -> str:
        nvml = self.nvml
        if isinstance(exc, nvml.NVMLError):
            value = getattr(exc, "value", None)
            named = {
                getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3): "not_supported",
                getattr(nvml, "NVML_ERROR_INVALID_ARGUMENT", 2): "invalid_argument",
                getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13): "function_not_found",
                getattr(nvml, "NVML_ERROR_NO_PERMISSION", 4): "no_permission",
                getattr(nvml, "NVML_ERROR_TIMEOUT", 10): "timeout",
                getattr(nvml, "NVML_ERROR_NOT_FOUND", 6): "not_found",
            }
            return named.get(value, f"nvml_error({value}): {exc}")
        return f"{type(exc).__name__}: {exc}"

    def call(self, name: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Run one NVML call; on failure record why under ``name`` and return None."""
        try:
            return fn(*args)
        except Exception as exc:  # the probe must survive any driver/binding quirk and say what it was
            self.target[name] = self.classify(exc)
            return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _uuid_from_bytes(raw: Any) -> str:
    h = bytes(raw).hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _norm_bus(bus_id: str) -> str:
    """``00000000:18:00.0`` and ``0000:18:00.0`` name the same function."""
    domain, _, rest = bus_id.lower().partition(":")
    return f"{int(domain or '0', 16):x}:{rest}" if rest else bus_id.lower()


def _return_name(nvml: Any, code: int) -> str:
    for attr in dir(nvml):
        if (attr == "NVML_SUCCESS" or attr.startswith("NVML_ERROR_")) and getattr(nvml, attr) == code:
            return attr.removeprefix("NVML_ERROR_").removeprefix("NVML_")
    return str(code)


def _placements(nvml: Any, handle: Any, profile_id: int) -> list[NvmlPlacement]:
    """``nvmlDeviceGetGpuInstancePossiblePlacements_v2``, coping with both pynvml calling conventions."""
    fn = nvml.nvmlDeviceGetGpuInstancePossiblePlacements
    struct = nvml.c_nvmlGpuInstancePlacement_t
    try:
        count = ctypes.c_uint(0)
        fn(handle, profile_id, None, ctypes.byref(count))
        array = (struct * max(count.value, 1))()
        fn(handle, profile_id, array, ctypes.byref(count))
        items = [array[i] for i in range(count.value)]
    except TypeError:  # older nvidia-ml-py: (device, profileId) -> list of structs
        items = list(fn(handle, profile_id))
    return [NvmlPlacement(start=int(p.start), size=int(p.size)) for p in items]


def _fabric(nvml: Any, handle: Any, notes: _Notes) -> Fabric | None:
    """Fabric info: the versioned call first (health mask), then the deprecated one."""
    v2 = getattr(nvml, "c_nvmlGpuFabricInfo_v2_t", None)
    if v2 is not None and hasattr(nvml, "nvmlDeviceGetGpuFabricInfoV"):
        info = v2()
        if notes.call("nvmlDeviceGetGpuFabricInfoV", nvml.nvmlDeviceGetGpuFabricInfoV, handle,
                      ctypes.byref(info)) is not None:
            return Fabric(
                state=FABRIC_STATES.get(int(info.state), f"unknown({info.state})"),
                status=_return_name(nvml, int(info.status)),
                clique_id=int(info.cliqueId),
                cluster_uuid=_uuid_from_bytes(info.clusterUuid),
                health_mask=int(info.healthMask),
                source="nvmlDeviceGetGpuFabricInfoV",
            )
    v1 = getattr(nvml, "c_nvmlGpuFabricInfo_t", None)
    if v1 is not None and hasattr(nvml, "nvmlDeviceGetGpuFabricInfo"):
        info1 = v1()
        if notes.call("nvmlDeviceGetGpuFabricInfo", nvml.nvmlDeviceGetGpuFabricInfo, handle,
                      ctypes.byref(info1)) is not None:
            return Fabric(
                state=FABRIC_STATES.get(int(info1.state), f"unknown({info1.state})"),
                status=_return_name(nvml, int(info1.status)),
                clique_id=int(info1.cliqueId),
                cluster_uuid=_uuid_from_bytes(info1.clusterUuid),
                source="nvmlDeviceGetGpuFabricInfo",
            )
    return None


def _mig_profiles(nvml: Any, handle: Any, gpu: HostGpu, notes: _Notes) -> None:
    count = int(getattr(nvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", PROFILE_ENUM_COUNT_FALLBACK))
    for index in range(count):
        local: dict[str, str] = {}
        info = _Notes(nvml, local).call("profile", nvml.nvmlDeviceGetGpuInstanceProfileInfo, handle, index)
        if info is None:
            gpu.mig_profiles_unavailable[str(index)] = local["profile"]
            continue
        profile = MigProfile(
            profile_index=index,
            nvml_id=int(info.id),
            name=_text(getattr(info, "name", b"")).removeprefix("MIG ").strip(),
            compute_slices=int(info.sliceCount),
            memory_mib=int(info.memorySizeMB),
            sms=int(info.multiprocessorCount),
            max_instances=int(info.instanceCount),
            copy_engines=int(info.copyEngineCount),
            decoders=int(info.decoderCount),
            encoders=int(info.encoderCount),
            jpegs=int(info.jpegCount),
            ofas=int(info.ofaCount),
            p2p_supported=bool(info.isP2pSupported),
        )
        try:
            profile.placements = _placements(nvml, handle, profile.nvml_id)
        except Exception as exc:  # recorded, like every refusal
            profile.placements_error = notes.classify(exc)
        gpu.mig_profiles.append(profile)


def _nvlinks(nvml: Any, handle: Any, notes: _Notes) -> list[NvLink]:
    links: list[NvLink] = []
    for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
        local: dict[str, str] = {}
        state = _Notes(nvml, local).call("state", nvml.nvmlDeviceGetNvLinkState, handle, link)
        if state is None:
            if not links:  # the first link refused: NVLink absent or disabled on this GPU
                notes.target["nvmlDeviceGetNvLinkState"] = local["state"]
            break
        entry = NvLink(link=link, active=bool(state))
        if entry.active:
            entry.version = notes.call("nvmlDeviceGetNvLinkVersion", nvml.nvmlDeviceGetNvLinkVersion,
                                       handle, link)
            pci = notes.call("nvmlDeviceGetNvLinkRemotePciInfo", nvml.nvmlDeviceGetNvLinkRemotePciInfo,
                             handle, link)
            entry.remote_pci_bus_id = _text(pci.busId) if pci is not None else None
            if hasattr(nvml, "nvmlDeviceGetNvLinkRemoteDeviceType"):
                kind = notes.call("nvmlDeviceGetNvLinkRemoteDeviceType",
                                  nvml.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link)
                entry.remote_device_type = REMOTE_TYPES.get(kind, "unknown") if kind is not None else None
        links.append(entry)
    return links


def _gpu(nvml: Any, index: int, handle: Any) -> HostGpu:
    notes_map: dict[str, str] = {}
    n = _Notes(nvml, notes_map)
    name = n.call("nvmlDeviceGetName", nvml.nvmlDeviceGetName, handle)
    uuid = n.call("nvmlDeviceGetUUID", nvml.nvmlDeviceGetUUID, handle)
    mem = n.call("nvmlDeviceGetMemoryInfo", nvml.nvmlDeviceGetMemoryInfo, handle)
    cc = n.call("nvmlDeviceGetCudaComputeCapability", nvml.nvmlDeviceGetCudaComputeCapability, handle)
    arch = n.call("nvmlDeviceGetArchitecture", nvml.nvmlDeviceGetArchitecture, handle)
    pci = n.call("nvmlDeviceGetPciInfo", nvml.nvmlDeviceGetPciInfo, handle)
    gpu = HostGpu(
        index=index,
        name=_text(name) if name is not None else "",
        uuid=_text(uuid) if uuid is not None else "",
        minor=n.call("nvmlDeviceGetMinorNumber", nvml.nvmlDeviceGetMinorNumber, handle),
        memory_total_bytes=int(mem.total) if mem is not None else None,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else None,
        architecture=ARCHITECTURES.get(int(arch), f"unknown({arch})") if arch is not None else None,
        pci_bus_id=_text(pci.busId) if pci is not None else None,
        pci_device_id=f"0x{int(pci.pciDeviceId):08X}" if pci is not None else None,
        notes=notes_map,
    )
    mode = n.call("nvmlDeviceGetMigMode", nvml.nvmlDeviceGetMigMode, handle)
    if mode is not None:
        gpu.mig_mode_current, gpu.mig_mode_pending = int(mode[0]), int(mode[1])
    gpu.max_mig_devices = n.call("nvmlDeviceGetMaxMigDeviceCount", nvml.nvmlDeviceGetMaxMigDeviceCount, handle)
    _mig_profiles(nvml, handle, gpu, n)
    gpu.nvlinks = _nvlinks(nvml, handle, n)
    gpu.fabric = _fabric(nvml, handle, n)
    rows = n.call("nvmlDeviceGetRemappedRows", nvml.nvmlDeviceGetRemappedRows, handle)
    health = Health()
    if rows is not None:
        health.remapped_rows_correctable, health.remapped_rows_uncorrectable = int(rows[0]), int(rows[1])
        health.remap_pending, health.remap_failure = bool(rows[2]), bool(rows[3])
    health.supported_event_types = n.call("nvmlDeviceGetSupportedEventTypes",
                                          nvml.nvmlDeviceGetSupportedEventTypes, handle)
    gpu.health = health
    return gpu


def _pairs(nvml: Any, handles: list[Any], gpus: list[HostGpu], notes: _Notes) -> list[GpuPair]:
    pairs = []
    nvlink_cap = getattr(nvml, "NVML_P2P_CAPS_INDEX_NVLINK", 3)
    statuses = {0: "ok", 1: "chipset_not_supported", 2: "gpu_not_supported", 3: "iohub_topology_not_supported",
                4: "disabled_by_regkey", 5: "not_supported", 6: "unknown"}
    for i in range(len(handles)):
        for j in range(i + 1, len(handles)):
            pair = GpuPair(a=i, b=j)
            p2p = notes.call("nvmlDeviceGetP2PStatus", nvml.nvmlDeviceGetP2PStatus, handles[i], handles[j],
                             nvlink_cap)
            pair.nvlink_p2p = statuses.get(p2p, str(p2p)) if p2p is not None else None
            level = notes.call("nvmlDeviceGetTopologyCommonAncestor", nvml.nvmlDeviceGetTopologyCommonAncestor,
                               handles[i], handles[j])
            pair.common_ancestor = ANCESTORS.get(level, str(level)) if level is not None else None
            target = _norm_bus(gpus[j].pci_bus_id or "")
            pair.nvlinks_between = sum(
                1 for link in gpus[i].nvlinks
                if link.active and link.remote_pci_bus_id and _norm_bus(link.remote_pci_bus_id) == target
            )
            pair.via_switch = pair.nvlink_p2p == "ok" and all(
                any(link.active and link.remote_device_type == "switch" for link in gpus[k].nvlinks) for k in (i, j)
            )
            pairs.append(pair)
    return pairs


def _wait_for_xids(nvml: Any, handles: list[Any], gpus: list[HostGpu], wait_s: float,
                   notes: _Notes, clock: Callable[[], float]) -> list[XidEvent]:
    """Register critical-XID events on every GPU and collect what arrives within ``wait_s`` seconds."""
    event_set = notes.call("nvmlEventSetCreate", nvml.nvmlEventSetCreate)
    if event_set is None:
        return []
    events: list[XidEvent] = []
    try:
        mask = int(getattr(nvml, "nvmlEventTypeXidCriticalError", _XID_CRITICAL))
        for handle, gpu in zip(handles, gpus, strict=True):
            # nvmlDeviceRegisterEvents returns nothing: success is "no note was recorded".
            _Notes(nvml, gpu.notes).call("nvmlDeviceRegisterEvents", nvml.nvmlDeviceRegisterEvents,
                                         handle, mask, event_set)
            gpu.health.xid_events_registered = "nvmlDeviceRegisterEvents" not in gpu.notes
        if not any(g.health.xid_events_registered for g in gpus):
            return events
        deadline = clock() + wait_s
        while (remaining := deadline - clock()) > 0:
            try:
                data = nvml.nvmlEventSetWait(event_set, max(1, int(remaining * 1000)))
            except nvml.NVMLError as exc:
                if notes.classify(exc) != "timeout":
                    notes.target["nvmlEventSetWait"] = notes.classify(exc)
                break
            idx_local: dict[str, str] = {}
            idx = _Notes(nvml, idx_local).call("nvmlDeviceGetIndex", nvml.nvmlDeviceGetIndex, data.device)
            events.append(XidEvent(gpu_index=-1 if idx is None else int(idx), xid=int(data.eventData),
                                   event_type=int(data.eventType)))
    finally:
        notes.call("nvmlEventSetFree", nvml.nvmlEventSetFree, event_set)
    return events


def _no_driver(report: HostReport, reason: str) -> HostReport:
    report.nvidia_driver = False
    report.reason = reason
    return report


def probe(*, xid_wait_s: float = 1.0, root: str | os.PathLike[str] = "/",
          clock: Callable[[], float] = time.monotonic) -> HostReport:
    """Probe this host's NVIDIA GPUs, read-only; never raises for a missing or unhappy driver.

    ``xid_wait_s`` bounds how long to listen for critical XID events (0 skips the wait). ``root`` is where
    /proc, /dev and the unit directories are read from (tests point it at a prepared tree); NVML always
    describes the live host.
    """
    base = Path(root)
    report = HostReport(
        nvidia_driver=False,
        probed_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        kernel=os.uname().release,
        driver_version=procfs.driver_version_from_proc(base),
        imex=procfs.imex_facts(base),
        daemons=procfs.daemons(base),
        nvswitches=procfs.nvswitches(base),
        xid_wait_s=xid_wait_s,
    )
    try:
        import pynvml as nvml
    except ImportError:
        return _no_driver(report, "nvidia-ml-py (pynvml) is not installed, so NVML cannot be asked")
    try:
        report.pynvml_version = importlib.metadata.version("nvidia-ml-py")
    except importlib.metadata.PackageNotFoundError:
        report.pynvml_version = None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        value = getattr(exc, "value", None)
        if value == getattr(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
            why = "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed on this host"
        elif value == getattr(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", 9):
            why = "no NVIDIA driver: the NVIDIA kernel module is not loaded"
        else:
            why = f"no NVIDIA driver usable: nvmlInit failed ({exc})"
        return _no_driver(report, why)
    except OSError as exc:
        return _no_driver(report, f"no NVIDIA driver: NVML could not be loaded ({exc})")
    try:
        report.nvidia_driver = True
        host = _Notes(nvml, report.notes)
        version = host.call("nvmlSystemGetDriverVersion", nvml.nvmlSystemGetDriverVersion)
        report.driver_version = _text(version) if version is not None else report.driver_version
        nvml_version = host.call("nvmlSystemGetNVMLVersion", nvml.nvmlSystemGetNVMLVersion)
        report.nvml_version = _text(nvml_version) if nvml_version is not None else None
        cuda = host.call("nvmlSystemGetCudaDriverVersion", nvml.nvmlSystemGetCudaDriverVersion)
        report.cuda_driver_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda is not None else None
        count = host.call("nvmlDeviceGetCount", nvml.nvmlDeviceGetCount) or 0
        handles = []
        for index in range(count):
            handle = host.call(f"nvmlDeviceGetHandleByIndex({index})", nvml.nvmlDeviceGetHandleByIndex, index)
            if handle is not None:
                handles.append(handle)
                report.gpus.append(_gpu(nvml, index, handle))
        report.pairs = _pairs(nvml, handles, report.gpus, host)
        if xid_wait_s > 0 and handles:
            report.xid_events = _wait_for_xids(nvml, handles, report.gpus, xid_wait_s, host, clock)
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    return report
