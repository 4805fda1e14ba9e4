"""A container's filesystem view: its own mount and PID namespace with an image-like root (see :mod:`.shim`).

The root is a real per-container directory under the twin's run dir (writes to ``/tmp``, ``/root``, ``/var`` …
land there, so :meth:`Sandbox.host_path` can hand emulated programs the same files an exec shell sees). Onto it
the shim mounts, read-only, the host's ``/usr``, ``/etc`` and the ``/lib*`` links — the "image" is the host's
userland, which is what the twin's real containers have always run — and then what is the container's own:

* ``/usr/local/bin``: an overlay with the container's tools dir on top (CDI-injected vendor tools such as
  ``nvidia-smi``), so a login shell, which resets PATH from ``/etc/profile``, still finds them;
* ``/dev``: a tmpfs with the standard nodes (null, zero, full, random, urandom, tty) plus the node's emulated
  host device files: all of them for a privileged container, else only those of its prepared devices (CDI
  ``deviceNodes``);
* ``/proc``: a new procfs (new PID namespace), with the node's emulated ``/proc/<dir>/...`` entries (e.g.
  ``/proc/driver/nvidia``) mounted over it, as every container on a GPU node sees the host kernel's;
* ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` of the pod; the pod's volumes.

The node's emulated host files live in ``<node run dir>/host`` ("the node's ``/``"); vendor models fill it via
:func:`kubetwin.kubelet.seam.register_host_files_installer`, and ``hostPath`` volumes point into it.

Without usable namespaces (no ``unshare``, not permitted) the runtime logs one line and runs containers as plain
local processes seeing the host filesystem, as before.
"""

from __future__ import annotations

import functools
import logging
import marshal
import os
import posixpath
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)
SHIM = Path(__file__).with_name("shim.py")
HOST_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Top-level host directories (or their usr-merge symlinks) every container root gets, read-only."""
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
"""The device nodes a container runtime puts in every container's ``/dev``."""
ROOT_DIRS = ("proc", "dev", "sys", "tmp", "root", "run", "var/tmp", "home", "opt", "mnt", "srv")
"""Directories of an image root (created real in the container's root dir)."""


@dataclass(frozen=True)
class Mount:
    """One step of a container's mount plan, applied in order by the shim (targets are container paths)."""

    kind: str
    """``dir``, ``symlink``, ``bind``, ``tmpfs``, ``proc`` or ``overlay``."""
    target: str
    """Absolute path inside the container."""
    source: str = ""
    """Host path (bind) or link text (symlink)."""
    ro: bool = False
    """Read-only bind."""
    lower: tuple[str, ...] = ()
    """Overlay lower dirs, topmost first."""
    optional: bool = False
    """A failure to apply it is ignored (e.g. ``/sys`` where the host forbids it)."""
    data: str = ""
    """tmpfs mount options."""


@dataclass
class Sandbox:
    """Where and how one container instance runs in its namespaces."""

    root: Path
    """Host directory that is the container's ``/``."""
    mounts: list[Mount] = field(default_factory=list)
    cwd: str = "/"
    """Working directory inside the container."""
    shim_pid: int | None = None
    """Host PID of the container's PID 1 once started (``nsenter`` target of exec)."""
    ready: threading.Event = field(default_factory=threading.Event)
    """Set once the shim finished (or failed) its setup: exec and exec probes wait for it."""

    def host_path(self, path: str) -> Path:
        """The real file backing ``path`` as the container sees it: the innermost bind mount covering it, an
        overlay's topmost lower dir that has it, else the container's root dir."""
        p = PurePosixPath("/") / path
        best: Mount | None = None
        for m in self.mounts:
            if m.kind not in ("bind", "overlay"):
                continue
            t = PurePosixPath(m.target)
            if (p == t or t in p.parents) and (best is None or len(m.target) >= len(best.target)):
                best = m
        if best is None:
            return self.root / str(p).lstrip("/")
        rel = p.relative_to(best.target)
        if best.kind == "overlay":
            for lower in best.lower:
                cand = Path(lower) / rel
                if cand.exists():
                    return cand
            return Path(best.lower[0]) / rel
        return Path(best.source) / rel if str(rel) != "." else Path(best.source)

    def find_command(self, name: str, path_env: str) -> bool:
        """Whether ``name`` resolves to an executable inside the container (for exec's OCI error)."""
        return not self.command_error(name, path_env)

    def command_error(self, name: str, path_env: str) -> str:
        """'' when ``name`` resolves to an executable inside the container, else the runtime's exec error
        (``exec: "x": executable file not found in $PATH`` / ``permission denied``)."""
        if "/" in name:
            cands = [name if name.startswith("/") else posixpath.join(self.cwd, name)]
        else:
            cands = [f"{d}/{name}" for d in path_env.split(":") if d]
        denied = False
        for c in cands:
            real = _resolve_in(self, c)  # a usr-merge symlink (/bin -> usr/bin) resolves inside the root
            if real is not None and real.is_file():
                if os.access(real, os.X_OK):
                    return ""
                denied = True
        if denied:
            return f'exec: "{name}": permission denied'
        if "/" in name:
            return f'exec: "{name}": stat {name}: no such file or directory'
        return f'exec: "{name}": executable file not found in $PATH'


def _resolve_in(sb: Sandbox, path: str) -> Path | None:
    parts = PurePosixPath(path).parts[1:]
    cur = PurePosixPath("/")
    for i, part in enumerate(parts):
        nxt = cur / part
        hp = sb.host_path(str(nxt))
        if not hp.is_symlink() and not any(m.kind == "symlink" and m.target == str(nxt) for m in sb.mounts):
            cur = nxt
            continue
        link = next((m.source for m in sb.mounts if m.kind == "symlink" and m.target == str(nxt)), None)
        if link is None:
            link = os.readlink(hp)
        cur = (cur / link) if not link.startswith("/") else PurePosixPath(link)
        if i == len(parts) - 1:
            break
    return sb.host_path(os.path.normpath(str(cur)))


@functools.cache
def namespaces_available() -> bool:
    """Whether containers can get their own mount + PID namespace here (checked once, one log line if not)."""
    exe = shutil.which("unshare")
    if exe is None:
        log.warning("twin containers share the host filesystem view: util-linux unshare is not installed")
        return False
    try:
        rc = subprocess.run([exe, "--mount", "--pid", "--fork", "--propagation", "private", "true"],
                            capture_output=True, timeout=10).returncode
    except (OSError, subprocess.TimeoutExpired):
        rc = -1
    if rc != 0:
        log.warning("twin containers share the host filesystem view: mount/PID namespaces are not permitted here")
    return rc == 0


def base_mounts(tools_dir: Path) -> list[Mount]:
    """The image-like part of every container root (host userland, tools overlay, /sys, /tmp mode)."""
    out: list[Mount] = []
    for name in HOST_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            out.append(Mount("symlink", f"/{name}", source=os.readlink(host)))
        elif host.is_dir():
            out.append(Mount("bind", f"/{name}", source=str(host), ro=True))
    if Path("/usr/local/bin").is_dir():
        out.append(Mount("overlay", "/usr/local/bin", lower=(str(tools_dir), "/usr/local/bin")))
    else:
        out.append(Mount("bind", "/usr/local/bin", source=str(tools_dir), ro=True))
    out.append(Mount("bind", "/sys", source="/sys", ro=True, optional=True))
    return out


def dev_mounts(host_root: Path, device_files: Iterable[str], *, privileged: bool) -> list[Mount]:
    """``/dev``: tmpfs, standard nodes, and the node's emulated device files this container may see."""
    out = [Mount("tmpfs", "/dev", data="mode=755,size=65536k")]
    out += [Mount("bind", f"/dev/{n}", source=f"/dev/{n}", optional=True) for n in DEV_NODES]
    out += [Mount("symlink", "/dev/fd", source="/proc/self/fd"),
            Mount("symlink", "/dev/stdin", source="/proc/self/fd/0"),
            Mount("symlink", "/dev/stdout", source="/proc/self/fd/1"),
            Mount("symlink", "/dev/stderr", source="/proc/self/fd/2"),
            Mount("tmpfs", "/dev/shm", data="mode=1777,size=65536k")]
    host_dev = host_root / "dev"
    names = sorted(p.name for p in host_dev.iterdir()) if privileged and host_dev.is_dir() else []
    wanted = [f"/dev/{n}" for n in names] + [f for f in device_files if not privileged]
    for path in dict.fromkeys(wanted):
        src = host_root / path.lstrip("/")
        if src.exists() and path.removeprefix("/dev/") not in DEV_NODES:
            out.append(Mount("bind", path, source=str(src)))
    return out


def proc_mounts(host_root: Path) -> list[Mount]:
    """A fresh ``/proc`` plus the node's emulated ``/proc/<dir>/<entry>`` files (e.g. ``/proc/driver/nvidia``)."""
    out = [Mount("proc", "/proc")]
    host_proc = host_root / "proc"
    if host_proc.is_dir():
        for d in sorted(p for p in host_proc.iterdir() if p.is_dir()):
            out.append(Mount("tmpfs", f"/proc/{d.name}", optional=True))
            out += [Mount("bind", f"/proc/{d.name}/{e.name}", source=str(e), ro=True, optional=True)
                    for e in sorted(d.iterdir())]
    return out


def etc_mounts(files: Mapping[str, Path]) -> list[Mount]:
    """Per-pod files bound over ``/etc`` entries (``hosts``, ``hostname``, ``resolv.conf``)."""
    return [Mount("bind", f"/etc/{name}", source=str(src)) for name, src in files.items()]


def pod_etc_files(d: Path, *, namespace: str, hostname: str, loopback: str, pod_ip: str) -> dict[str, Path]:
    """Write the pod's ``/etc/hosts`` (``localhost`` → the pod's own loopback address, where its emulated servers
    listen), ``/etc/hostname`` and ``/etc/resolv.conf`` into ``d``; returns them by ``/etc`` name."""
    d.mkdir(parents=True, exist_ok=True)
    hosts = ["# Kubernetes-managed hosts file (twin: localhost is this pod's loopback address).",
             f"{loopback}\tlocalhost", "::1\tip6-localhost ip6-loopback"]
    if pod_ip:
        hosts.append(f"{pod_ip}\t{hostname}")
    (d / "hosts").write_text("\n".join(hosts) + "\n")
    (d / "hostname").write_text(hostname + "\n")
    (d / "resolv.conf").write_text(f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
                                   "nameserver 10.96.0.10\noptions ndots:5\n")
    return {"hosts": d / "hosts", "hostname": d / "hostname", "resolv.conf": d / "resolv.conf"}


def prepare_root(root: Path) -> None:
    """Create the real directories of a container root (idempotent; kept across restarts like a rootfs)."""
    for d in ROOT_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)


def launch(sb: Sandbox, *, argv: list[str], env: Mapping[str, str], hold: bool, stdout: int,
           stderr: int, config_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the shim for ``sb``: returns the ``unshare`` process and the read end of the shim's status fd
    (first line ``ok`` or ``error <message>``; in hold mode then ``signal N`` lines)."""
    status_r, status_w = os.pipe()
    cfg = {"root": str(sb.root), "mounts": [_mount_dict(m) for m in sb.mounts], "cwd": sb.cwd, "argv": argv,
           "env": dict(env), "mode": "hold" if hold else "exec", "status_fd": status_w}
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_bytes(marshal.dumps(cfg))
    cmd = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
           sys.executable, "-S", str(SHIM), str(config_path)]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True, pass_fds=(status_w,), env={"PATH": os.defpath})
    finally:
        os.close(status_w)
    return proc, status_r


def shim_pid(unshare_pid: int) -> int | None:
    """Host PID of the shim (the ``unshare`` process's only child)."""
    try:
        kids = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def _mount_dict(m: Mount) -> dict[str, object]:
    return {"kind": m.kind, "target": m.target, "source": m.source, "ro": m.ro, "lower": list(m.lower),
            "optional": m.optional, "data": m.data}


__all__ = ["Mount", "Sandbox", "base_mounts", "dev_mounts", "etc_mounts", "launch", "namespaces_available",
           "pod_etc_files", "prepare_root", "proc_mounts", "shim_pid"]
