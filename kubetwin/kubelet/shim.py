"""PID 1 of a twin container: builds the container's filesystem view in its own mount namespace, then runs it.

Started by the runtime as ``unshare --mount --pid --fork --kill-child --propagation private python -S shim.py
CONFIG`` (see :mod:`kubetwin.kubelet.sandbox`), so this process is PID 1 of a fresh PID namespace whose mounts
nobody else sees. It runs as a plain script (stdlib only, no package imports): it must start fast and must not
depend on anything the container root hides.

Steps:

1. apply the mount plan (``CONFIG["mounts"]``, made by the kubelet): directories, symlinks, read-only binds of
   the host's ``/usr``, ``/etc``…, a tmpfs ``/dev`` with the standard device nodes plus the node's emulated
   host files the container may see, ``/proc``, volume binds, the per-pod ``/etc/hosts``;
2. ``chroot`` into the container root and ``chdir`` to its working directory;
3. ``exec`` mode (a real container process): fork the command as PID 2, report ``ok`` (or the exec error) on
   the status fd, relay signals sent *from inside the container* (``kill -s TERM 1`` in an exec shell) to it,
   reap orphans, and exit with its status (128+N when killed by signal N). Signals from outside (the runtime's
   group-wide SIGTERM/SIGKILL) already reach the command directly, so they are not forwarded twice;
   ``hold`` mode (an emulated in-process program): report ``ok``, then write ``signal N`` on the status fd for
   every signal sent to PID 1 (the kubelet hands it to the program's ``on_signal`` handlers), until killed.

Why a shim and not the command as PID 1: an emulated program has no process, yet ``kill -s SIGUSR2 1`` in an exec
shell must reach it; and a command as PID 1 would ignore SIGTERM without a handler (``sleep``), turning every
graceful deletion into a full grace period. ``docker run --init`` makes the same choice.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import signal
import sys

# Startup cost matters (one shim per container start): only builtin-cheap modules are imported — the config is
# marshal, not JSON, and typing is imported for the type checker only (mypy treats MYPY as True).
MYPY = False
if MYPY:
    from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_CATCH = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _apply(root: str, m: dict[str, Any]) -> None:
    kind, target = m["kind"], root + m["target"]
    if kind == "dir":
        os.makedirs(target, exist_ok=True)
    elif kind == "symlink":
        if not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(m["source"], target)
    elif kind == "bind":
        src = m["source"]
        if os.path.isdir(src):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        _mount(src, target, None, MS_BIND | MS_REC)
        if m.get("ro"):
            _mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
    elif kind == "tmpfs":
        os.makedirs(target, exist_ok=True)
        _mount("tmpfs", target, "tmpfs", MS_NOSUID, m.get("data") or "mode=755")
    elif kind == "proc":
        os.makedirs(target, exist_ok=True)
        _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    elif kind == "overlay":
        os.makedirs(target, exist_ok=True)
        _mount("overlay", target, "overlay", 0, "lowerdir=" + ":".join(m["lower"]))
    else:
        raise ValueError(f"unknown mount kind {kind}")


def _setup(cfg: dict[str, Any]) -> None:
    root = cfg["root"]
    _mount(root, root, None, MS_BIND | MS_REC)
    for m in cfg["mounts"]:
        try:
            _apply(root, m)
        except OSError:
            if not m.get("optional"):
                raise
    os.chroot(root)
    os.chdir(cfg.get("cwd") or "/")


def _status(fd: int, line: str) -> None:
    try:  # noqa: SIM105 - contextlib costs startup time
        os.write(fd, (line + "\n").encode())
    except OSError:
        pass


def _execvpe(argv: list[str], env: dict[str, str]) -> None:
    """``os.execvpe`` without its lazy imports (the stdlib is gone after the chroot): PATH search by hand."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    denied: OSError | None = None
    for d in (env.get("PATH") or os.defpath).split(":"):
        try:
            os.execve(os.path.join(d or ".", name), argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            denied = exc
    raise denied or FileNotFoundError(2, "No such file or directory", name)


def _exec_mode(cfg: dict[str, Any], status_fd: int) -> int:
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        for s in _CATCH:
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        argv, env = cfg["argv"], cfg["env"]
        try:
            _execvpe(argv, env)
        except OSError as exc:
            why = ("executable file not found in $PATH" if isinstance(exc, FileNotFoundError)
                   else "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc))
            os.write(w, f'exec: "{argv[0]}": {why}'.encode())
        os._exit(127)
    os.close(w)
    err = b""
    while chunk := os.read(r, 4096):
        err += chunk
    os.close(r)
    if err:
        os.waitpid(pid, 0)
        _status(status_fd, "error " + err.decode(errors="replace"))
        return 128
    _status(status_fd, "ok")
    os.close(status_fd)
    while True:
        info = signal.sigwaitinfo(set(_CATCH) | {signal.SIGCHLD})
        if info.si_signo != signal.SIGCHLD:
            if info.si_pid != 0:  # sent from inside the container: PID 1's signal goes to the command
                try:  # noqa: SIM105 - contextlib costs startup time
                    os.kill(pid, info.si_signo)
                except ProcessLookupError:
                    pass
            continue
        while True:
            try:
                got, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if got == 0:
                break
            if got == pid:
                return os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)


def _hold_mode(status_fd: int) -> int:
    _status(status_fd, "ok")
    while True:
        info = signal.sigwaitinfo(set(_CATCH) | {signal.SIGCHLD})
        if info.si_signo == signal.SIGCHLD:
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            continue
        if info.si_pid != 0:  # from inside (exec shell); the kubelet's own stop comes through the program
            _status(status_fd, f"signal {info.si_signo}")


def main() -> int:
    with open(sys.argv[1], "rb") as f:
        cfg = marshal.loads(f.read())
    try:  # noqa: SIM105 - contextlib costs startup time
        os.unlink(sys.argv[1])  # it holds the container env (secret values): not kept on disk
    except OSError:
        pass
    status_fd = int(cfg["status_fd"])
    signal.pthread_sigmask(signal.SIG_BLOCK, set(_CATCH) | {signal.SIGCHLD})
    try:
        _setup(cfg)
    except OSError as exc:
        _status(status_fd, f"error {exc}")
        return 128
    if cfg["mode"] == "hold":
        return _hold_mode(status_fd)
    return _exec_mode(cfg, status_fd)


if __name__ == "__main__":
    sys.exit(main())
