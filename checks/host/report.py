"""What the host probe reports: typed, JSON round-trippable dataclasses.

Every NVML call that the driver does not support leaves its field ``None`` and records the fact in the
owning object's ``notes`` (call name -> ``"not_supported"`` or the error), so a reader can tell "the GPU
said no" from "we did not ask". Facts carried over from the reference are cited where they shape a field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from checks.host._codec import from_plain, to_plain

NVLINK_VERSIONS = {1: "1.0", 2: "2.0", 3: "2.2", 4: "3.0", 5: "3.1", 6: "4.0", 7: "5.0"}
"""``nvmlNvlinkVersion_t`` -> NVLink generation (NVML numbers the versions, not the generations)."""

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning; fixtures record the version they were written with."""


@dataclass
class NvmlPlacement:
    """One possible GPU-instance placement on the memory-slice axis (``nvidia-smi mig -lgipp``)."""

    start: int
    """First memory slice."""
    size: int
    """Memory slices covered (reference mig-geometry.md §2: the placement axis is the memory axis)."""


@dataclass
class MigProfile:
    """One GPU-instance profile as NVML answers it (it answers with MIG mode off too)."""

    profile_index: int
    """Value of the ``NVML_GPU_INSTANCE_PROFILE_*`` constant that was asked (1_SLICE=0 … 1_SLICE_REV2=9)."""
    nvml_id: int
    """The profile ``id`` NVML returns (19/20/15/14/9/5/0 on H100); what ``-lgip`` prints as ID."""
    name: str
    """Profile name without the ``MIG `` prefix, e.g. ``1g.10gb+me``."""
    compute_slices: int
    """NVML ``sliceCount``."""
    memory_mib: int
    """NVML ``memorySizeMB`` (MiB)."""
    sms: int
    """NVML ``multiprocessorCount``."""
    max_instances: int
    """NVML ``instanceCount`` on an empty GPU."""
    copy_engines: int
    """NVML ``copyEngineCount``."""
    decoders: int
    """NVML ``decoderCount``."""
    encoders: int
    """NVML ``encoderCount``."""
    jpegs: int
    """NVML ``jpegCount``."""
    ofas: int
    """NVML ``ofaCount``."""
    p2p_supported: bool
    """NVML ``isP2pSupported``."""
    placements: list[NvmlPlacement] | None = None
    """``nvmlDeviceGetGpuInstancePossiblePlacements_v2``; None when the call failed (see ``placements_error``)."""
    placements_error: str | None = None
    """Why ``placements`` is missing, if it is."""

    @property
    def memory_slices(self) -> int | None:
        """Placement size, i.e. memory slices; None without placements or with mixed sizes."""
        sizes = {p.size for p in self.placements or []}
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def starts(self) -> tuple[int, ...]:
        """Placement starts, ascending."""
        return tuple(sorted(p.start for p in self.placements or []))


@dataclass
class NvLink:
    """One NVLink of a GPU that NVML knows about."""

    link: int
    """Link index."""
    active: bool
    """``nvmlDeviceGetNvLinkState`` == enabled."""
    version: int | None = None
    """``nvmlDeviceGetNvLinkVersion`` raw ``nvmlNvlinkVersion_t`` (6 = NVLink 4.0 on H100); see ``version_name``."""
    remote_pci_bus_id: str | None = None
    """PCI bus id at the far end (a GPU or an NVSwitch)."""
    remote_device_type: str | None = None
    """``gpu``, ``ibmnpu``, ``switch`` or ``unknown`` (``nvmlDeviceGetNvLinkRemoteDeviceType``)."""

    @property
    def version_name(self) -> str | None:
        """NVLink generation as people say it (``4.0``), from the NVML enum."""
        if self.version is None:
            return None
        return NVLINK_VERSIONS.get(self.version, f"enum {self.version}")


@dataclass
class Fabric:
    """NVLink fabric registration of a GPU (``nvmlDeviceGetGpuFabricInfoV`` or its older form).

    The compute-domain plugin derives the node's clique from these (reference nvidia-dra-driver.md §11.5):
    state NOT_SUPPORTED or an all-zero cluster UUID mean "no clique" and no IMEX channel is injected.
    """

    state: str
    """``not_supported``, ``not_started``, ``in_progress`` or ``completed``."""
    status: str
    """Registration result as an NVML return name, e.g. ``SUCCESS``."""
    clique_id: int
    """Clique id."""
    cluster_uuid: str
    """Cluster UUID (all zeros when the GPU is not attached to a multi-node fabric)."""
    health_mask: int | None = None
    """Raw health mask (V2 structure only)."""
    source: str = ""
    """Which NVML function answered."""

    @property
    def cluster_uuid_is_zero(self) -> bool:
        """The plugin's "treat as fabric not attached" condition."""
        return set(self.cluster_uuid.replace("-", "")) <= {"0"}


@dataclass
class XidEvent:
    """A critical XID seen while the probe waited."""

    gpu_index: int
    """GPU that raised it."""
    xid: int
    """The XID number (NVML eventData)."""
    event_type: int
    """NVML event type bit."""


@dataclass
class Health:
    """Per-GPU health readings."""

    remapped_rows_correctable: int | None = None
    """Rows remapped for correctable errors."""
    remapped_rows_uncorrectable: int | None = None
    """Rows remapped for uncorrectable errors."""
    remap_pending: bool | None = None
    """A remap waits for a GPU reset."""
    remap_failure: bool | None = None
    """A remap failed: the GPU should be serviced."""
    supported_event_types: int | None = None
    """``nvmlDeviceGetSupportedEventTypes`` bit mask."""
    xid_events_registered: bool = False
    """Whether critical-XID events could be registered for this GPU."""


@dataclass
class HostGpu:
    """One GPU as NVML reports it."""

    index: int
    """NVML index."""
    name: str
    """Product name, exactly as nvidia-smi prints it."""
    uuid: str
    """GPU UUID."""
    minor: int | None
    """Device minor number (``/dev/nvidia<minor>``)."""
    memory_total_bytes: int | None
    """Framebuffer size."""
    compute_capability: str | None
    """``major.minor``."""
    architecture: str | None
    """go-nvlib spelling (``Ampere``, ``Hopper``, ``Blackwell``…), or ``unknown(<n>)``."""
    pci_bus_id: str | None
    """PCI bus id (``00000000:00:06.0``)."""
    pci_device_id: str | None = None
    """PCI device id as NVML prints it (``0x233010DE``)."""
    mig_mode_current: int | None = None
    """1 enabled, 0 disabled; None when MIG is not supported."""
    mig_mode_pending: int | None = None
    """Mode after the next GPU reset."""
    max_mig_devices: int | None = None
    """``nvmlDeviceGetMaxMigDeviceCount`` (0 with MIG off)."""
    mig_profiles: list[MigProfile] = field(default_factory=list)
    """Every GI profile NVML answered, in profile-index order."""
    mig_profiles_unavailable: dict[str, str] = field(default_factory=dict)
    """Profile index -> why NVML refused it (``not_supported``, ``invalid_argument``)."""
    nvlinks: list[NvLink] = field(default_factory=list)
    """Links NVML knows for this GPU (active or not)."""
    fabric: Fabric | None = None
    """Fabric registration; None when neither fabric call answered (see ``notes``)."""
    health: Health = field(default_factory=Health)
    """Remapped rows and event support."""
    notes: dict[str, str] = field(default_factory=dict)
    """NVML call -> ``not_supported`` or the error it raised."""

    @property
    def active_nvlinks(self) -> int:
        """Number of active NVLinks."""
        return sum(1 for link in self.nvlinks if link.active)


@dataclass
class GpuPair:
    """How two GPUs reach each other (what ``nvidia-smi topo -m`` shows)."""

    a: int
    """GPU index."""
    b: int
    """GPU index."""
    nvlink_p2p: str | None = None
    """``nvmlDeviceGetP2PStatus`` with the NVLink capability: ``ok`` or the NVML refusal."""
    common_ancestor: str | None = None
    """``nvmlDeviceGetTopologyCommonAncestor``: ``internal``, ``single``, ``multiple``, ``hostbridge``,
    ``node`` or ``system``."""
    nvlinks_between: int = 0
    """Active links of ``a`` whose far end is ``b`` (direct NVLink, no switch)."""
    via_switch: bool = False
    """Both GPUs have active links that end at an NVSwitch and NVLink P2P is ``ok``: connected through the
    switch fabric even when the switches themselves are hidden from this host (pass-through VMs)."""


@dataclass
class Imex:
    """Host IMEX facts read from /proc and /dev (reference nvidia-dra-driver.md §11.4)."""

    channels_major: int | None = None
    """Major of ``nvidia-caps-imex-channels`` in /proc/devices; the CD plugin fails to start without it."""
    channel_dir_exists: bool = False
    """``/dev/nvidia-caps-imex-channels`` exists."""
    channel_nodes: int = 0
    """Number of ``channel<N>`` entries in that directory."""
    channel_nodes_sample: list[str] = field(default_factory=list)
    """The first few entries, sorted by channel number."""
    channel0_is_char_device: bool = False
    """``channel0`` exists and is a character device."""
    channel0_major: int | None = None
    """Major number of ``channel0``."""
    imex_channel_count: int | None = None
    """``ImexChannelCount`` from /proc/driver/nvidia/params."""
    create_imex_channel0: int | None = None
    """``CreateImexChannel0`` from /proc/driver/nvidia/params (1 makes the driver create channel0)."""
    fabric_imex_mgmt_cap: bool = False
    """``/proc/driver/nvidia/capabilities/fabric-imex-mgmt`` exists."""
    nvidia_char_majors: dict[str, int] = field(default_factory=dict)
    """Every ``nvidia*`` character device in /proc/devices -> major."""
    params_source: str | None = None
    """Where the module parameters were read from."""


@dataclass
class Daemon:
    """A host service that matters for NVLink/IMEX: the fabric manager or the IMEX daemon."""

    name: str
    """``nvidia-fabricmanager`` or ``nvidia-imex``."""
    running: bool = False
    """A process with that command name runs (seen in /proc/*/comm)."""
    unit_files: list[str] = field(default_factory=list)
    """systemd unit files found (read-only look in the usual unit directories)."""
    binary: str | None = None
    """Path of the binary on PATH or in /usr/bin, /usr/sbin."""

    @property
    def present(self) -> bool:
        """Installed in any form."""
        return self.running or bool(self.unit_files) or self.binary is not None


@dataclass
class HostReport:
    """Everything :func:`checks.host.probe` learned about this host."""

    nvidia_driver: bool
    """False when NVML could not be initialised (no driver, no library, no nvidia-ml-py)."""
    reason: str = ""
    """Why ``nvidia_driver`` is False, in one sentence."""
    schema: int = SCHEMA_VERSION
    """Report schema version."""
    probed_at: str = ""
    """UTC time of the probe, ISO 8601."""
    kernel: str = ""
    """``uname -r``."""
    driver_version: str | None = None
    """``nvmlSystemGetDriverVersion`` (or /proc/driver/nvidia/version without NVML)."""
    nvml_version: str | None = None
    """``nvmlSystemGetNVMLVersion``."""
    cuda_driver_version: str | None = None
    """CUDA version the driver supports, ``major.minor``."""
    pynvml_version: str | None = None
    """nvidia-ml-py version that did the asking."""
    gpus: list[HostGpu] = field(default_factory=list)
    """GPUs in NVML index order."""
    pairs: list[GpuPair] = field(default_factory=list)
    """GPU-to-GPU topology for every pair."""
    imex: Imex = field(default_factory=Imex)
    """Host IMEX facts."""
    daemons: list[Daemon] = field(default_factory=list)
    """Fabric manager and IMEX daemon presence."""
    nvswitches: list[str] = field(default_factory=list)
    """Entries of /proc/driver/nvidia-nvswitch/devices (NVSwitches visible to this host)."""
    xid_wait_s: float = 0.0
    """How long the probe waited for XID events."""
    xid_events: list[XidEvent] = field(default_factory=list)
    """Critical XIDs that arrived during the wait."""
    notes: dict[str, str] = field(default_factory=dict)
    """Host-level NVML call -> ``not_supported`` or the error it raised."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (what ``to_json`` writes)."""
        plain: dict[str, Any] = to_plain(self)
        return plain

    def to_json(self, indent: int | None = 1) -> str:
        """JSON text; :meth:`from_json` reads it back to an equal report."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostReport:
        """Inverse of :meth:`to_dict`; ``ValueError`` names the JSON path of a bad field."""
        return from_plain(cls, data)

    @classmethod
    def from_json(cls, text: str) -> HostReport:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def daemon(self, name: str) -> Daemon | None:
        """The daemon entry of that name, if probed."""
        return next((d for d in self.daemons if d.name == name), None)
