"""A twin node's MIG configuration as node state: written at boot, changed by the node's ``nvidia-smi``, read by
the emulated GPU plugin when it starts (static MIG without the GPU Operator, roadmap item 7).

The state file lives in the node's emulated host root under the driver root (:data:`host_smi.STATE_REL`), next
to ``/usr/bin/nvidia-smi`` (:mod:`.host_smi`, copied there); both are written once per node by a host-files
installer. MIG mode set at boot (``TwinOptions.mig_enabled``) and pre-created devices seed it. A GPU plugin that
starts reads it through its ``/driver-root`` mount, as the real one asks NVML: MIG mode, GIs with a compute
instance → static MIG devices (the parent GPU is then not announced). Ampere GPUs need a reset for a MIG-mode
change (pending until then), as the real A100s that cannot be reset on Lambda (issue #883).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checks.driver.slices import GpuFacts, StaticMigDevice
from checks.twin.nvidia import host_smi
from kubetwin.kubelet.seam import ContainerContext, register_host_files_installer


def _bus_id(g: GpuFacts) -> str:
    """``0000:00:06.0`` → nvidia-smi's ``00000000:00:06.0``."""
    domain, _, rest = g.pci_bus_id.partition(":")
    return f"{int(domain, 16):08X}:{rest.upper()}"


def initial_state(gpus: Sequence[GpuFacts]) -> dict[str, Any]:
    """The state a node boots with (from the twin's GPU facts)."""
    out = []
    for g in gpus:
        profiles = []
        geo = g.mig
        if geo is not None:
            for p in geo.profiles:
                profiles.append({"name": p.name, "id": p.nvml_id, "size": p.memory_slices, "starts": list(p.starts),
                                 "max": p.max_instances, "memory_mib": p.memory_mib, "sms": p.sms,
                                 "compute": p.compute_slices, "ce": p.engines.ce, "dec": p.engines.dec,
                                 "enc": p.engines.enc, "jpeg": p.engines.jpeg, "ofa": p.engines.ofa,
                                 "me": p.media_extension})
        gis: list[dict[str, Any]] = []
        for m in g.static_mig:
            if geo is not None:
                p = geo.profile(m.profile)
                gis.append({"id": m.gi or len(gis) + 1, "profile": p.nvml_id, "start": m.start,
                            "size": p.memory_slices, "cis": [m.ci], "uuid": m.uuid})
        out.append({"index": g.index, "name": g.product_name, "uuid": g.uuid, "bus_id": _bus_id(g),
                    "mig_capable": geo is not None, "mig_current": g.mig_enabled, "mig_pending": g.mig_enabled,
                    "needs_reset": g.architecture == "Ampere", "profiles": profiles, "gis": gis,
                    "driver": g.driver_version, "cuda": g.cuda_driver_version})
    return {"gpus": out}


def install(gpus_of: Any) -> None:
    """Register the host-files installer writing ``/usr/bin/nvidia-smi`` and the state (``gpus_of(node)``)."""

    def installer(node: str, host_root: Path) -> None:
        gpus = gpus_of(node)
        if not gpus:
            return
        state = host_root / host_smi.STATE_REL
        if not state.exists():
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps(initial_state(gpus), indent=1, sort_keys=True))
        smi = host_root / "usr" / "bin" / "nvidia-smi"
        smi.parent.mkdir(parents=True, exist_ok=True)
        smi.write_text("#!/usr/bin/python3\n" + Path(host_smi.__file__).read_text())
        os.chmod(smi, 0o755)

    register_host_files_installer("nvidia-mig-state", installer)


def state_file(ctx: ContainerContext) -> Path | None:
    """The node's state as the plugin container sees it under its ``/driver-root`` mount (None: no such mount)."""
    try:
        path = ctx.host_path(f"/driver-root/{host_smi.STATE_REL}")
    except Exception:
        return None
    return path if path.exists() else None


def apply(gpus: Sequence[GpuFacts], path: Path | None) -> list[GpuFacts]:
    """``gpus`` as NVML reports them now: MIG mode and the existing MIG devices from the node's state."""
    if path is None:
        return list(gpus)
    state = json.loads(path.read_text())
    by_uuid = {g["uuid"]: g for g in state.get("gpus") or []}
    out = []
    for g in gpus:
        s = by_uuid.get(g.uuid)
        if s is None or g.mig is None:
            out.append(g)
            continue
        statics = []
        for gi in s["gis"]:
            if not gi["cis"]:
                continue  # a GI without a compute instance is no usable MIG device
            p = g.mig.profile_by_id(int(gi["profile"]))
            statics.append(StaticMigDevice(p.name, int(gi["start"]), str(gi["uuid"]), gi=int(gi["id"]),
                                           ci=int(gi["cis"][0])))
        out.append(dataclasses.replace(g, mig_enabled=bool(s["mig_current"]), static_mig=tuple(statics)))
    return out


__all__ = ["apply", "initial_state", "install", "state_file"]
