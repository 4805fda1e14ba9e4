"""Read-only host facts from /proc, /dev, /sys and systemd unit directories.

Everything takes a ``root`` so tests can point it at a directory tree laid out like a host (real files,
real parsing) and so the probe never needs NVML for facts the kernel already exposes. Nothing here
writes, creates device nodes or talks to systemd.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from checks.host.report import Daemon, Imex

IMEX_CHANNELS_DEVICE = "nvidia-caps-imex-channels"
"""The /proc/devices name the CD plugin looks up (reference nvidia-dra-driver.md §11.4)."""
IMEX_CHANNEL_DIR = "dev/nvidia-caps-imex-channels"
"""Directory of channel nodes, relative to the root."""
PARAMS_FILES = ("proc/driver/nvidia/params", "sys/module/nvidia/parameters")
"""Module parameters: the procfs file first; the sysfs directory is the fallback some kernels have."""
_SAMPLE = 8

#: daemon name -> (process comm names, systemd unit names, binary names)
DAEMONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "nvidia-fabricmanager": (("nv-fabricmanager",), ("nvidia-fabricmanager.service",), ("nv-fabricmanager",)),
    "nvidia-imex": (("nvidia-imex",), ("nvidia-imex.service",), ("nvidia-imex",)),
}
UNIT_DIRS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system", "run/systemd/system")
"""Where systemd unit files live; only listed, never loaded."""
BIN_DIRS = ("usr/bin", "usr/sbin", "usr/local/bin", "sbin", "bin")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def char_devices(root: Path) -> dict[str, int]:
    """Character-device names -> major from ``/proc/devices`` (empty when unreadable)."""
    text = _read(root / "proc/devices") or ""
    result: dict[str, int] = {}
    section = ""
    for line in text.splitlines():
        if line.strip().endswith(":"):
            section = line.strip()
            continue
        m = re.match(r"\s*(\d+)\s+(\S.*?)\s*$", line)
        if m and section.lower().startswith("character"):
            result.setdefault(m.group(2), int(m.group(1)))
    return result


def module_params(root: Path) -> tuple[dict[str, str], str | None]:
    """NVIDIA kernel-module parameters and the path they came from."""
    proc = root / PARAMS_FILES[0]
    text = _read(proc)
    if text is not None:
        params: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                params[key.strip()] = value.strip().strip('"')
        return params, "/" + PARAMS_FILES[0]
    sysdir = root / PARAMS_FILES[1]
    if sysdir.is_dir():
        params = {}
        for entry in sorted(sysdir.iterdir()):
            raw = _read(entry)
            if raw is not None:
                params[entry.name.removeprefix("NVreg_")] = raw.strip()
        return params, "/" + PARAMS_FILES[1]
    return {}, None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def _channel_number(name: str) -> int:
    m = re.fullmatch(r"channel(\d+)", name)
    return int(m.group(1)) if m else 1 << 30


def imex_facts(root: Path) -> Imex:
    """IMEX channel facts: the major, the device nodes, and the module parameters that create them."""
    majors = char_devices(root)
    params, source = module_params(root)
    imex = Imex(
        channels_major=majors.get(IMEX_CHANNELS_DEVICE),
        nvidia_char_majors={k: v for k, v in sorted(majors.items()) if k.startswith("nvidia")},
        imex_channel_count=_int(params.get("ImexChannelCount")),
        create_imex_channel0=_int(params.get("CreateImexChannel0")),
        params_source=source,
        fabric_imex_mgmt_cap=(root / "proc/driver/nvidia/capabilities/fabric-imex-mgmt").exists(),
    )
    chan_dir = root / IMEX_CHANNEL_DIR
    if chan_dir.is_dir():
        imex.channel_dir_exists = True
        names = sorted((e.name for e in chan_dir.iterdir()), key=lambda n: (_channel_number(n), n))
        imex.channel_nodes = sum(1 for n in names if n.startswith("channel"))
        imex.channel_nodes_sample = names[:_SAMPLE]
        try:
            st = os.stat(chan_dir / "channel0")
        except OSError:
            pass
        else:
            imex.channel0_is_char_device = stat.S_ISCHR(st.st_mode)
            imex.channel0_major = os.major(st.st_rdev) if imex.channel0_is_char_device else None
    return imex


def driver_version_from_proc(root: Path) -> str | None:
    """Driver version from /proc/driver/nvidia/version (the kernel module, no NVML needed)."""
    text = _read(root / "proc/driver/nvidia/version") or ""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def running_commands(root: Path) -> set[str]:
    """Command names (``/proc/<pid>/comm``, at most 15 characters) of every visible process."""
    names: set[str] = set()
    proc = root / "proc"
    try:
        entries = list(proc.iterdir())
    except OSError:
        return names
    for entry in entries:
        if entry.name.isdigit():
            comm = _read(entry / "comm")
            if comm:
                names.add(comm.strip())
    return names


def daemons(root: Path, *, use_path: bool = True) -> list[Daemon]:
    """Fabric manager and IMEX daemon: running process, unit files, binary — looked at, never touched."""
    comms = running_commands(root)
    result = []
    for name, (procs, units, binaries) in DAEMONS.items():
        d = Daemon(name=name, running=any(p[:15] in comms for p in procs))
        for unit_dir in UNIT_DIRS:
            for unit in units:
                if (root / unit_dir / unit).exists():
                    d.unit_files.append("/" + unit_dir + "/" + unit)
        for binary in binaries:
            found = shutil.which(binary) if use_path and root == Path("/") else None
            if found is None:
                found = next(
                    ("/" + b + "/" + binary for b in BIN_DIRS if (root / b / binary).exists()), None
                )
            if found:
                d.binary = found
                break
        result.append(d)
    return result


def nvswitches(root: Path) -> list[str]:
    """NVSwitch devices the driver lists (/proc/driver/nvidia-nvswitch/devices), as on HGX baseboards."""
    devdir = root / "proc/driver/nvidia-nvswitch/devices"
    try:
        return sorted(e.name for e in devdir.iterdir())
    except OSError:
        return []
