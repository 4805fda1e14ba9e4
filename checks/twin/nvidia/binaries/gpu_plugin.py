"""Emulated ``gpu-kubelet-plugin``: publishes the node's ResourceSlices and prepares claims like the real one.

Behaviour (reference nvidia-dra-driver.md §3.3, §4, §5, §6): parse ``FEATURE_GATES``/``-v``; a forbidden gate
combination prints ``Error: feature gate validation failed: …`` and exits 1; logs the startup block; publishes
the slices of :mod:`checks.driver.slices` through the API (official client); registers as DRA plugin
``gpu.nvidia.com`` with the twin kubelet; prepares claims with strict config decoding + validation and the
real error chains; with DynamicMIG an occupied placement fails with ``Insufficient Resources``; with MPSSupport
an MPS config starts the claim's MPS control-daemon Deployment and waits for it (:mod:`.mps`, §12.5).

The checkpoint is a real file at ``<pluginsDir>/gpu.nvidia.com/checkpoint.json`` on the node (:mod:`.checkpoint`):
prepared claims are written ``PrepareStarted`` → ``PrepareCompleted`` and removed at Unprepare, and a restarted or
upgraded plugin picks them up, so pods that kept running are unprepared correctly later. Twin simplifications
(fidelity notes): no VFIO or ConsumableShares; health events come from :mod:`.health`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.driver import configs, logs, names
from checks.driver import gates as gate_table
from checks.driver.configs import AllocatedDevice, ConfigEntry, OpaqueConfigError
from checks.driver.slices import GpuFacts, publish
from checks.mig import parse_device_name
from checks.twin.nvidia.binaries.checkpoint import PREPARE_COMPLETED, PREPARE_STARTED, CheckpointFile
from checks.twin.nvidia.binaries.metrics import PluginMetrics
from checks.twin.nvidia.binaries.mps import PIPE_DIRECTORY, MpsDaemons
from checks.twin.nvidia.hardware import mig_uuid
from checks.twin.nvidia.smi import SmiGpu, SmiMig
from kubetwin.kubelet.seam import PreparedDevice, PrepareResult

ClaimReader = Callable[[str, str], dict[str, Any]]
"""(namespace, name) → ResourceClaim as REST JSON."""


@dataclass
class GpuPlugin:
    """The prepare/unprepare half of the plugin (the DRA gRPC service), independent of how it is started."""

    node: str
    """Node (and pool) name."""
    gpus: Sequence[GpuFacts]
    """The node's GPUs."""
    gates: Mapping[str, bool]
    """Explicitly set gates (defaults apply on top)."""
    read_claim: ClaimReader
    """How the plugin reads a claim (the API)."""
    log: Callable[[logs.LogLine], None] = lambda _line: None
    """Where log lines go (filtered by verbosity by the caller)."""
    prepared: dict[str, PrepareResult] = field(default_factory=dict)
    """Completed claims by uid (the real plugin's checkpoint ``PrepareCompleted`` entries)."""
    mig_slots: dict[str, tuple[int, range]] = field(default_factory=dict)
    """DynamicMIG: created MIG device name → (parent minor, memory slots)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """The node-global prep/unprep lock (``pu.lock``)."""
    metrics: PluginMetrics | None = None
    """Prometheus families to update (§9.2); None = metrics disabled (empty ``HTTP_ENDPOINT``)."""
    mps: MpsDaemons | None = None
    """Starts/stops MPS control daemons; None = no API access for them (an MPS claim then fails to prepare)."""
    mps_groups: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    """Claim uid → device UUID sets whose MPS daemon this plugin started (stopped at Unprepare)."""
    checkpoint: CheckpointFile | None = None
    """The checkpoint file; None = state only in this process (unit tests)."""
    boot_id: str = ""
    """Node boot id the checkpoint records."""

    def restore(self) -> None:
        """Start-up: read the checkpoint (``NewDeviceState``) and take over its completed claims.

        Raises :class:`.checkpoint.CorruptCheckpoint` (after logging the diff) when it does not verify."""
        if self.checkpoint is None:
            return
        cp = self.checkpoint.open(self.boot_id)
        for uid, claim in (cp.get("preparedClaims") or {}).items():
            if claim.get("checkpointState") != PREPARE_COMPLETED:
                continue
            devices = []
            for group in claim.get("preparedDevices") or []:
                for entry in group.get("devices") or []:
                    dev = (entry.get("gpu") or entry.get("mig") or {}).get("device") or {}
                    if dev.get("DeviceName"):
                        devices.append((str(dev["DeviceName"]), tuple(dev.get("Requests") or ())))
            self.prepared[uid] = PrepareResult(devices=tuple(self._device(uid, d, r) for d, r in devices))
            for d, _ in devices:
                if "-mig-" in d:
                    parsed = parse_device_name(d)
                    geo = self._gpu(parsed.minor).mig
                    if geo is not None:
                        self.mig_slots[d] = (parsed.minor, parsed.profile(geo).slots(parsed.start))
        if self.metrics is not None:
            self.metrics.set_prepared(self._counts())

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.prepared.values():
            for dev in result.devices:
                kind = "mig" if "-mig-" in dev.device_name else "gpu"
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def _record(self, uid: str, ref: Mapping[str, str], state: str | None,
                result: PrepareResult | None = None) -> None:
        """Read-mutate-write the checkpoint: set a claim's state (None = remove it)."""
        if self.checkpoint is None:
            return
        cp = self.checkpoint.read()
        claims = cp.setdefault("preparedClaims", {})
        if state is None:
            claims.pop(uid, None)
        else:
            devices = [{"gpu" if "-mig-" not in d.device_name else "mig": {"device": {
                "Requests": list(d.request_names), "PoolName": d.pool_name, "DeviceName": d.device_name,
                "CDIDeviceIDs": list(d.cdi_device_ids)}}} for d in (result.devices if result else ())]
            claims[uid] = {"checkpointState": state, "status": {},
                           "preparedDevices": [{"devices": devices, "configState": {}}] if devices else None,
                           "name": ref.get("name", ""), "namespace": ref.get("namespace", "")}
            if not devices:
                claims[uid].pop("preparedDevices")
        self.checkpoint.write(cp)

    def _gpu(self, minor: int) -> GpuFacts:
        for g in self.gpus:
            if g.minor == minor:
                return g
        raise OpaqueConfigError(f"unknown GPU minor {minor}")

    def prepare(self, claims: list[dict[str, str]]) -> dict[str, PrepareResult]:
        """NodePrepareResources for a batch of claims."""
        with self._measured("prepare") as ok:
            with self.lock:
                out = {c["uid"]: self._prepare_one(c) for c in claims}
            failed = sum(1 for r in out.values() if r.error)
            if failed and self.metrics is not None:
                self.metrics.prepare_errors.labels(names.GPU_DRIVER, "prepare_devices").inc(failed)
            ok.append(not failed)
            return out

    def unprepare(self, claims: list[dict[str, str]]) -> dict[str, str]:
        """NodeUnprepareResources: stop the claim's MPS daemons, destroy its dynamic MIG devices, forget it."""
        errors: dict[str, str] = {}
        with self._measured("unprepare") as ok, self.lock:
            for c in claims:
                uid = c["uid"]
                try:
                    for uuids in list(self.mps_groups.get(uid, [])):
                        if self.mps is not None:
                            self.mps.stop(uid, uuids)
                        self.mps_groups[uid].remove(uuids)
                except OpaqueConfigError as exc:
                    errors[uid] = f"unprepare devices failed for claim {c['namespace']}/{c['name']}:{uid}: {exc}"
                    continue
                self.mps_groups.pop(uid, None)
                result = self.prepared.pop(uid, None)
                for dev in result.devices if result else ():
                    self.mig_slots.pop(dev.device_name, None)
                self._record(uid, c, None)
            ok.append(not errors)
            return {c["uid"]: errors.get(c["uid"], "") for c in claims}

    @contextlib.contextmanager
    def _measured(self, operation: str) -> Iterator[list[bool]]:
        """In-flight gauge around a request; counter + duration only on success; prepared gauge after (§9.2)."""
        m = self.metrics
        outcome: list[bool] = []
        if m is None:
            yield outcome
            return
        start = time.monotonic()
        m.inflight.labels(names.GPU_DRIVER, operation).inc()
        try:
            yield outcome
        finally:
            m.inflight.labels(names.GPU_DRIVER, operation).dec()
            if outcome and outcome[0]:
                m.requests.labels(names.GPU_DRIVER, operation).inc()
                m.duration.labels(names.GPU_DRIVER, operation).observe(time.monotonic() - start)
            m.set_prepared(self._counts())

    def _prepare_one(self, ref: Mapping[str, str]) -> PrepareResult:
        uid, ns, name = ref["uid"], ref["namespace"], ref["name"]
        if uid in self.prepared:
            return self.prepared[uid]
        self._record(uid, ref, PREPARE_STARTED)
        try:
            devices, env = self._prepare_devices(self.read_claim(ns, name))
        except OpaqueConfigError as exc:
            return PrepareResult(error=configs.prepare_error(ns, name, uid, str(exc)))
        cdi = [names.cdi_device_id(uid, d) for d in devices]
        result = PrepareResult(devices=tuple(self._device(uid, d, req, env.get(d, {})) for d, req in devices.items()))
        self.prepared[uid] = result
        self._record(uid, ref, PREPARE_COMPLETED, result)
        self.log(logs.prepared(ns, name, uid, cdi))
        return result

    def _prepare_devices(
        self, claim: dict[str, Any]
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, str]]]:
        """Devices to prepare (device → request names) and the extra container env per device."""
        alloc = ((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}
        results = [
            r for r in alloc.get("results") or [] if r.get("driver") == names.GPU_DRIVER and r.get("pool") == self.node
        ]
        eff = gate_table.effective(self.gates)
        entries = alloc.get("config") or []
        class_entries = [ConfigEntry.from_api(e) for e in entries if e.get("source") == "FromClass"]
        claim_entries = [ConfigEntry.from_api(e) for e in entries if e.get("source") != "FromClass"]
        try:
            decoded = configs.opaque_configs(class_entries, claim_entries)
        except OpaqueConfigError as exc:
            raise OpaqueConfigError(configs.opaque_configs_error(exc)) from exc
        allocated = [
            AllocatedDevice(r["request"], r["device"], "mig" if "-mig-" in r["device"] else "gpu") for r in results
        ]
        chosen = configs.resolve(decoded, allocated, gates=eff)
        for cfg in {id(c): c for c in chosen.values()}.values():
            configs.normalize_and_validate(cfg, eff)
            configs.prepare_checks(cfg, device_count=len(self.gpus))
        devices: dict[str, tuple[str, ...]] = {}
        for a in allocated:
            devices[a.device] = (*devices.get(a.device, ()), a.request.split("/", 1)[0])
        if eff["DynamicMIG"]:
            self._create_migs([d for d in devices if "-mig-" in d])
        env: dict[str, dict[str, str]] = {}
        uid = str((claim.get("metadata") or {}).get("uid", ""))
        for cfg in {id(c): c for c in chosen.values()}.values():
            if not (eff["MPSSupport"] and cfg.sharing is not None and cfg.sharing.strategy == configs.STRATEGY_MPS):
                continue
            group = [d for d, c in chosen.items() if c is cfg]
            try:
                self._start_mps(uid, group, cfg, dynamic_mig=eff["DynamicMIG"])
            except OpaqueConfigError as exc:
                raise OpaqueConfigError(f"error applying config: {exc}") from exc
            for d in group:
                env[d] = {"CUDA_MPS_PIPE_DIRECTORY": PIPE_DIRECTORY}
        return devices, env

    def _start_mps(self, uid: str, group: list[str], cfg: configs.OpaqueConfig, *, dynamic_mig: bool) -> None:
        """``applySharingConfig`` for MPS (§12.5): start the daemon of this device set and wait until Ready."""
        if dynamic_mig:
            raise OpaqueConfigError("MPS is not yet supported when using featureGates.DynamicMIG=true")
        if self.mps is None:
            raise OpaqueConfigError("error starting MPS control daemon: no API access")
        assert cfg.sharing is not None
        uuids = tuple(self._uuid(d) for d in group)
        self.mps.start(uid, uuids, cfg.sharing.mps or configs.MpsConfig())
        if uuids not in self.mps_groups.setdefault(uid, []):
            self.mps_groups[uid].append(uuids)
        self.mps.assert_ready(self.mps.name(uid, uuids))

    def _uuid(self, dev: str) -> str:
        """The UUID a device set is hashed with: the GPU's, or the MIG device's."""
        view = self._device("", dev, ()).view
        assert isinstance(view, SmiGpu)
        return view.mig.uuid if view.mig else view.uuid

    def _create_migs(self, wanted: list[str]) -> None:
        """Reserve memory slots of new dynamic MIG devices; overlap → NVML ``Insufficient Resources``."""
        staged: dict[str, tuple[int, range]] = {}
        for dev in wanted:
            if dev in self.mig_slots:
                continue
            parsed = parse_device_name(dev)
            geo = self._gpu(parsed.minor).mig
            if geo is None:
                raise OpaqueConfigError(f"prepare devices failed: GPU {parsed.minor} is not MIG capable")
            slots = parsed.profile(geo).slots(parsed.start)
            for minor, used in [*self.mig_slots.values(), *staged.values()]:
                if minor == parsed.minor and set(used) & set(slots):
                    raise OpaqueConfigError(
                        f"error creating MIG device: error creating GPU instance for '{dev}': Insufficient Resources"
                    )
            staged[dev] = (parsed.minor, slots)
        self.mig_slots.update(staged)

    def _device(self, uid: str, dev: str, requests: tuple[str, ...],
                extra_env: Mapping[str, str] | None = None) -> PreparedDevice:
        if "-mig-" in dev:
            parsed = parse_device_name(dev)
            g = self._gpu(parsed.minor)
            profile = parsed.profile(g.mig).name if g.mig else parsed.profile_slug
            static = {f"{s.profile}@{s.start}": s.uuid for s in g.static_mig}
            muuid = static.get(f"{profile}@{parsed.start}", mig_uuid(g.uuid, dev))
            smi_mig: SmiMig | None = SmiMig(profile, muuid)
        else:
            g = self._gpu(int(dev.split("-")[1]))
            smi_mig = None
        return PreparedDevice(
            request_names=requests,
            pool_name=self.node,
            device_name=dev,
            cdi_device_ids=(names.cdi_device_id(uid, dev),),
            env={"NVIDIA_VISIBLE_DEVICES": "void", **(extra_env or {})},
            # CDI deviceNodes: the GPU (a MIG device's parent) plus the driver's control nodes.
            device_nodes=(f"/dev/nvidia{g.minor}", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"),
            view=SmiGpu(
                name=g.product_name, uuid=g.uuid, pci_bus_id=g.pci_bus_id, mig=smi_mig,
                driver_version=g.driver_version, cuda_version=g.cuda_driver_version,
                memory_mib=(g.memory_bytes or 0) // 2**20,
            ),
        )


def slice_bodies(node: str, node_uid: str, gpus: Sequence[GpuFacts], gates: Mapping[str, bool],
                 kubernetes_version: str | int) -> tuple[list[dict[str, Any]], list[logs.LogLine]]:
    """ResourceSlice bodies to create at startup and the log lines that go with them (§4.1)."""
    from checks.driver.slices import slice_object, uses_split_slices

    pub = publish(node, gpus, gates, kubernetes_version)
    lines: list[logs.LogLine] = []
    if gate_table.effective(gates)["DynamicMIG"]:
        lines += logs.layout(str(kubernetes_version), uses_split_slices(kubernetes_version))
    lines += [logs.LogLine(0, w, "driver.go", 280, "W") for w in pub.warnings]
    lines += [logs.announce(d["name"]) for d in pub.devices()]
    bodies = [slice_object(spec, i, node, node_uid) for i, spec in enumerate(pub.specs)]
    return bodies, lines


def now() -> dt.datetime:
    """Wall clock for log headers (UTC, as klog in a container)."""
    return dt.datetime.now(dt.UTC)
