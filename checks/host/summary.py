"""Human-readable rendering of a :class:`~checks.host.report.HostReport` (``dra-lab probe`` without --json)."""

from __future__ import annotations

from checks.host.report import HostReport


def _bytes_gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def render(report: HostReport) -> str:
    """A few lines per GPU plus IMEX and daemon facts; what a person checks first."""
    lines: list[str] = []
    imex = report.imex
    if not report.nvidia_driver:
        lines.append(report.reason or "no NVIDIA driver")
    else:
        lines.append(f"driver {report.driver_version}  CUDA {report.cuda_driver_version}  NVML "
                     f"{report.nvml_version}  kernel {report.kernel}  GPUs {len(report.gpus)}")
    for g in report.gpus:
        mig = {None: "n/a", 0: "off", 1: "on"}
        lines.append(
            f"GPU {g.index}: {g.name}  {g.uuid}  minor {g.minor}  {_bytes_gib(g.memory_total_bytes)}  "
            f"cc {g.compute_capability} {g.architecture}  pci {g.pci_bus_id}  MIG "
            f"{mig.get(g.mig_mode_current, '?')}/{mig.get(g.mig_mode_pending, '?')}"
        )
        profiles = ", ".join(
            f"{p.name}(id {p.nvml_id} x{p.max_instances} @{','.join(map(str, p.starts)) or '?'})"
            for p in g.mig_profiles
        )
        lines.append(f"  MIG profiles: {profiles or 'none'}")
        fab = g.fabric
        fabric = (f"{fab.state}/{fab.status} clique {fab.clique_id} cluster {fab.cluster_uuid}" if fab
                  else "unavailable")
        lines.append(f"  NVLink active {g.active_nvlinks}/{len(g.nvlinks)}  fabric {fabric}")
        h = g.health
        lines.append(f"  remapped rows corr {h.remapped_rows_correctable} unc {h.remapped_rows_uncorrectable} "
                     f"pending {h.remap_pending} failure {h.remap_failure}")
        if g.notes:
            lines.append("  refused: " + ", ".join(f"{k}={v}" for k, v in sorted(g.notes.items())))
    for p in report.pairs:
        lines.append(f"GPU {p.a}<->{p.b}: {p.nvlinks_between} direct NVLink(s), "
                     f"{'through NVSwitch, ' if p.via_switch else ''}NVLink P2P {p.nvlink_p2p}, "
                     f"common ancestor {p.common_ancestor}")
    lines.append(
        f"IMEX: major {imex.channels_major if imex.channels_major is not None else 'absent'}; "
        f"/dev/nvidia-caps-imex-channels {'present' if imex.channel_dir_exists else 'absent'} "
        f"({imex.channel_nodes} node(s)); CreateImexChannel0={imex.create_imex_channel0} "
        f"ImexChannelCount={imex.imex_channel_count}"
    )
    for d in report.daemons:
        lines.append(f"{d.name}: {'running' if d.running else 'not running'}; units "
                     f"{', '.join(d.unit_files) or 'none'}; binary {d.binary or 'none'}")
    lines.append(f"NVSwitches: {len(report.nvswitches)}  XID events in {report.xid_wait_s:g}s: "
                 f"{len(report.xid_events)}")
    return "\n".join(lines)
