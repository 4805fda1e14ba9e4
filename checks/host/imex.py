"""Can single-node compute-domain checks run on this host? The IMEX notebook's logic, testable offline.

The answer follows what the compute-domain (CD) kubelet plugin does (reference nvidia-dra-driver.md
§11.4-§11.5):

- without ``nvidia-caps-imex-channels`` in /proc/devices the plugin fails at startup → **no**;
- with the default ``CrashOnNVLinkFabricErrors=true`` a fabric registration that is not COMPLETED, or a
  registration error, or GPUs disagreeing on cluster UUID / clique id makes it refuse to start → **no**;
- fabric info NOT_SUPPORTED, state NOT_SUPPORTED or an all-zero cluster UUID give the "no-clique
  fallback": claims succeed and daemon pods go Ready, but **no IMEX channel is injected** → only the
  degraded-path checks can run (the upstream channel-injection test, which lists ``channel0`` in the
  pod, cannot pass);
- otherwise (a real clique) channel injection works → **yes**.

Independently, the host itself has no usable channel until ``/dev/nvidia-caps-imex-channels/channel0``
exists; the next step names the module parameter or the exact ``mknod`` with the major read from
/proc/devices. :func:`create_channel0` performs that step only when explicitly allowed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from checks.host.report import HostReport

YES = "yes"
DEGRADED = "degraded"
NO = "no"
NO_DRIVER = "no-driver"

CHANNEL_DIR = "/dev/nvidia-caps-imex-channels"
MODULE_PARAM_STEP = (
    "set the NVIDIA module parameter NVreg_CreateImexChannel0=1 (e.g. `options nvidia "
    "NVreg_CreateImexChannel0=1` in /etc/modprobe.d/nvidia-imex.conf) and reload the driver or reboot"
)


@dataclass
class Finding:
    """One fact the verdict rests on."""

    topic: str
    """Short name: ``driver``, ``imex-major``, ``fabric``, ``channel-node``, ``daemons``, ``nvlink``."""
    ok: bool
    """Whether this fact is in favour of running compute-domain checks."""
    detail: str
    """The fact, in words a person can check against the host."""


@dataclass
class ImexVerdict:
    """The answer to "can single-node compute-domain checks run here?" and what to do next."""

    answer: str
    """``yes``, ``degraded`` (no-clique fallback: claims work, no channel injected), ``no`` or ``no-driver``."""
    summary: str
    """One sentence for people."""
    findings: list[Finding] = field(default_factory=list)
    """The facts, in the order the CD plugin meets them."""
    next_steps: list[str] = field(default_factory=list)
    """Exact actions, most useful first."""
    mknod_command: str | None = None
    """The command that would create channel0 on this host, when the major is known and the node missing."""
    conclusion: str = ""
    """The written finding: channel device present or not, the step that creates it, and feasibility."""

    @property
    def can_run(self) -> bool:
        """True only when channel-injection checks can pass."""
        return self.answer == YES


def _mknod(major: int) -> str:
    return f"mkdir -p {CHANNEL_DIR} && mknod -m 666 {CHANNEL_DIR}/channel0 c {major} 0"


def imex_verdict(report: HostReport) -> ImexVerdict:
    """Judge a probe report (live or loaded from JSON); pure function, no host access."""
    findings: list[Finding] = []
    steps: list[str] = []
    imex = report.imex
    if not report.nvidia_driver:
        return ImexVerdict(
            answer=NO_DRIVER,
            summary=f"No: this host has no usable NVIDIA driver ({report.reason}).",
            findings=[Finding("driver", False, report.reason or "NVML unavailable")],
            next_steps=["run this on a GPU host with the NVIDIA driver (>= 570.158.01 for the default gates)"],
        )
    findings.append(Finding("driver", True, f"driver {report.driver_version}, {len(report.gpus)} GPU(s): "
                            + ", ".join(sorted({g.name for g in report.gpus}))))

    major = imex.channels_major
    if major is None:
        findings.append(Finding("imex-major", False, "/proc/devices has no nvidia-caps-imex-channels entry: "
                                "the CD kubelet plugin fails at startup (error getting device major)"))
        steps.append("upgrade to a driver that registers nvidia-caps-imex-channels (R550+; >= 570.158.01 "
                     "for the default IMEXDaemonsWithDNSNames gate)")
    else:
        findings.append(Finding("imex-major", True, f"/proc/devices: {major} nvidia-caps-imex-channels"))

    # Fabric / clique, as the plugin's getCliqueID does with CrashOnNVLinkFabricErrors=true (default).
    fabric_blocks = False
    no_clique_reasons: list[str] = []
    uuids: set[str] = set()
    cliques: set[int] = set()
    for gpu in report.gpus:
        f = gpu.fabric
        label = f"GPU {gpu.index}"
        if f is None:
            why = next((v for k, v in gpu.notes.items() if "FabricInfo" in k), "not answered")
            no_clique_reasons.append(f"{label}: fabric info {why}")
        elif f.state == "not_supported":
            no_clique_reasons.append(f"{label}: fabric state NOT_SUPPORTED")
        elif f.state != "completed":
            fabric_blocks = True
            findings.append(Finding("fabric", False, f"{label}: fabric state {f.state}: the CD plugin refuses "
                                    "to start (NVLink fabric not attached)"))
        elif f.status != "SUCCESS":
            fabric_blocks = True
            findings.append(Finding("fabric", False, f"{label}: fabric registration status {f.status}: the CD "
                                    "plugin refuses to start"))
        elif f.cluster_uuid_is_zero:
            no_clique_reasons.append(f"{label}: fabric completed/SUCCESS, clique {f.clique_id}, cluster UUID "
                                     "all zeros (treated as fabric not attached)")
        else:
            uuids.add(f.cluster_uuid)
            cliques.add(f.clique_id)
    if len(uuids) > 1 or len(cliques) > 1:
        fabric_blocks = True
        findings.append(Finding("fabric", False, "GPUs report different cluster UUIDs / clique ids: the CD "
                                "plugin refuses to start"))
    if no_clique_reasons:
        findings.append(Finding("fabric", False, "no-clique fallback — " + "; ".join(no_clique_reasons)))
    elif uuids and not fabric_blocks:
        findings.append(Finding("fabric", True, f"clique {uuids.pop()}.{cliques.pop()} on every GPU"))

    links = sum(g.active_nvlinks for g in report.gpus)
    findings.append(Finding("nvlink", links > 0, f"{links} active NVLink(s) across {len(report.gpus)} GPU(s); "
                            f"{len(report.nvswitches)} NVSwitch device(s) visible"))
    fm, imexd = report.daemon("nvidia-fabricmanager"), report.daemon("nvidia-imex")
    findings.append(Finding(
        "daemons", True,
        f"fabric manager {'present' if fm and fm.present else 'absent'}"
        f"{' (running)' if fm and fm.running else ''}; nvidia-imex {'present' if imexd and imexd.present else 'absent'}"
        f"{' (running: must be disabled for driverManaged mode)' if imexd and imexd.running else ''}"))

    mknod = None
    if imex.channel0_is_char_device:
        findings.append(Finding("channel-node", True, f"{CHANNEL_DIR}/channel0 exists (major "
                                f"{imex.channel0_major}); {imex.channel_nodes} channel node(s)"))
    else:
        where = f"{CHANNEL_DIR} exists but has no channel0" if imex.channel_dir_exists else f"{CHANNEL_DIR} is absent"
        findings.append(Finding("channel-node", False, f"{where}; CreateImexChannel0={imex.create_imex_channel0}, "
                                f"ImexChannelCount={imex.imex_channel_count}"))
        if major is not None:
            mknod = _mknod(major)
            steps.append(f"create the host channel now: `{mknod}` (major {major} from /proc/devices), or "
                         + MODULE_PARAM_STEP)
        else:
            steps.append(MODULE_PARAM_STEP)

    if major is None or fabric_blocks:
        answer = NO
        summary = "No: the compute-domain plugin cannot start on this host."
    elif no_clique_reasons:
        answer = DEGRADED
        summary = ("Only in degraded form: the CD plugin starts but falls back to no clique, so channel claims "
                   "succeed without any IMEX channel injected; channel-injection checks cannot pass here.")
        steps.append("for real channel injection use a host whose GPUs join an NVLink fabric with a non-zero "
                     "cluster UUID (GB200/GB300 NVL; upstream runs compute-domain tests only on such nodes)")
    else:
        answer = YES
        summary = "Yes: the CD plugin will find a clique and inject IMEX channels."
    if imex.channel0_is_char_device:
        channel = f"The IMEX channel device exists ({CHANNEL_DIR}/channel0, major {imex.channel0_major})."
    else:
        how = f"`{mknod}` (major {major} from /proc/devices) or " if mknod else ""
        channel = (f"No IMEX channel device on this host ({CHANNEL_DIR} absent, CreateImexChannel0="
                   f"{imex.create_imex_channel0}); the step that creates it: {how}{MODULE_PARAM_STEP}.")
    conclusion = f"{channel} Single-node compute-domain checks: {summary}"
    return ImexVerdict(answer=answer, summary=summary, findings=findings, next_steps=steps, mknod_command=mknod,
                       conclusion=conclusion)


def create_channel0(report: HostReport, *, allow_changes: bool = False, root: str = "/") -> str:
    """Create ``channel0`` with the major from /proc/devices — only when ``allow_changes`` is true.

    Returns what it did or would do. Without permission it only describes the command, so running the
    notebook with default parameters changes nothing on the host.
    """
    major = report.imex.channels_major
    if major is None:
        return "nothing to do: /proc/devices has no nvidia-caps-imex-channels major"
    if report.imex.channel0_is_char_device:
        return f"nothing to do: {CHANNEL_DIR}/channel0 already exists"
    if not allow_changes:
        return f"not changed (allow_changes is false); would run: {_mknod(major)}"
    directory = Path(root) / CHANNEL_DIR.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    os.mknod(directory / "channel0", stat.S_IFCHR | 0o666, os.makedev(major, 0))
    return f"created {directory / 'channel0'} (c {major} 0)"
