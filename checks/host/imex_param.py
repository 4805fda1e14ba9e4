"""The roadmap's next IMEX step (item 10): load the NVIDIA module with ``NVreg_CreateImexChannel0=1`` and see
whether IMEX channel device nodes appear.

Only with ``allow_changes``: it writes ``/etc/modprobe.d/dra-lab-imex.conf`` (``options nvidia
NVreg_CreateImexChannel0=1``, so the setting also holds after a reboot), tries to reload the module stack
(``modprobe -r nvidia_uvm nvidia_drm nvidia_modeset nvidia``, then ``modprobe nvidia``) — which fails while
anything holds the GPUs (persistenced, fabric manager, a DRA plugin, workloads) and then needs a reboot — and
re-reads ``/proc/driver/nvidia/params`` and ``/dev/nvidia-caps-imex-channels``. The report says plainly what
happened and whether channels appeared, i.e. whether single-node compute-domain checks become feasible.
Without permission it only lists the commands. Standard library only (runs on a bare GPU host).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from checks.host.procfs import imex_facts
from checks.host.report import HostReport

CONF = "etc/modprobe.d/dra-lab-imex.conf"
CONF_TEXT = "# dra-lab: IMEX channel0 for single-node compute domains (roadmap item 10)\n" \
            "options nvidia NVreg_CreateImexChannel0=1\n"
UNLOAD = ("modprobe", "-r", "nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nvidia")
LOAD = ("modprobe", "nvidia", "NVreg_CreateImexChannel0=1")

Runner = Callable[[Sequence[str]], tuple[int, str]]
"""Runs a command, returns (exit code, combined output)."""


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return res.returncode, (res.stdout + res.stderr).strip()


@dataclass
class ParamAttempt:
    """What the NVreg_CreateImexChannel0=1 step did and found."""

    attempted: bool
    """False when ``allow_changes`` was false (nothing changed)."""
    steps: list[str] = field(default_factory=list)
    """Commands run (or that would run), each with its outcome."""
    reloaded: bool = False
    """Whether the module was unloaded and loaded again with the parameter."""
    param_after: int | None = None
    """``CreateImexChannel0`` as /proc/driver/nvidia/params shows it afterwards."""
    channels_after: int = 0
    """Channel device nodes under /dev/nvidia-caps-imex-channels afterwards."""
    summary: str = ""
    """One paragraph for people."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def try_create_channel0_param(report: HostReport, *, allow_changes: bool = False, root: str = "/",
                              run: Runner = run_command) -> ParamAttempt:
    """Try the module parameter (see module doc); without ``allow_changes`` only describe it."""
    plan = [f"write /{CONF}: {CONF_TEXT.splitlines()[1]}", " ".join(UNLOAD), " ".join(LOAD),
            "cat /proc/driver/nvidia/params | grep CreateImexChannel0; ls -la /dev/nvidia-caps-imex-channels"]
    if report.imex.channels_major is None:
        return ParamAttempt(False, plan, summary="nothing to try: the driver registers no nvidia-caps-imex-channels "
                                                 "device (no major in /proc/devices)")
    if report.imex.channel0_is_char_device:
        return ParamAttempt(False, [], param_after=report.imex.create_imex_channel0,
                            channels_after=report.imex.channel_nodes,
                            summary="nothing to try: /dev/nvidia-caps-imex-channels/channel0 already exists")
    if not allow_changes:
        return ParamAttempt(False, plan, param_after=report.imex.create_imex_channel0,
                            channels_after=report.imex.channel_nodes,
                            summary="not changed (allow_changes is false); would run: " + "; ".join(plan))
    out = ParamAttempt(True)
    conf = Path(root) / CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONF_TEXT)
    out.steps.append(f"wrote {conf}")
    code, text = run(UNLOAD)
    out.steps.append(f"{' '.join(UNLOAD)} → exit {code}{': ' + text if text else ''}")
    if code == 0:
        code, text = run(LOAD)
        out.steps.append(f"{' '.join(LOAD)} → exit {code}{': ' + text if text else ''}")
        out.reloaded = code == 0
    after = imex_facts(Path(root))
    out.param_after, out.channels_after = after.create_imex_channel0, after.channel_nodes
    if out.channels_after:
        verdict = (f"channels appeared ({out.channels_after} node(s) under /dev/nvidia-caps-imex-channels): "
                   "single-node compute-domain checks are feasible on this host")
    elif out.reloaded:
        verdict = ("the module reloaded with the parameter but no channel node appeared "
                   f"(CreateImexChannel0={out.param_after}): channels are not created this way here")
    else:
        verdict = ("the module could not be reloaded (in use); the setting is in place for the next boot — "
                   "reboot and run this notebook again to see whether channels appear")
    out.summary = verdict
    return out


__all__ = ["ParamAttempt", "run_command", "try_create_channel0_param"]
