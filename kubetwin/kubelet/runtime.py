"""The twin's container runtime: each container is a real local process (or an emulated in-process program).

Why real processes: the upstream specs run shell one-liners (``bash -c "nvidia-smi -L; trap 'exit 0' TERM;
sleep 9999 & wait"``) whose meaning is shell semantics, exit codes and signal handling — reproducing those
with a fake would be the least faithful part of the twin. Each process gets its own session/process group
(so SIGTERM/SIGKILL reach its children, like a container's cgroup), a private work dir under the twin's run
dir as cwd and ``HOME``, and a PATH whose first entry is the container's twin tools dir. It is not a sandbox:
the process can read host files — the twin must only run workloads you would run on your own machine.

One selector thread per runtime multiplexes every container's stdout/stderr pipes and a ``pidfd`` per process:
a container "exits" when its main process does (then the rest of its group is SIGKILLed, as the runtime kills
a container's cgroup when its init exits), not when its pipes close. Logs are written in the CRI format real
kubelets keep under ``/var/log/pods`` (``<RFC3339Nano> <stream> F <line>``) so timestamps and tails are exact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import select
import selectors
import signal
import subprocess
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetwin.kubelet.sandbox import Sandbox, launch, shim_pid
from kubetwin.kubelet.seam import ContainerContext, EmulatedProgram

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class LogWriter:
    """Appends CRI-format lines to one container log file; partial lines are held until their newline."""

    def __init__(self, path: Path, now: Callable[[], dt.datetime]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the container
        self._now = now
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.wrote = threading.Event()
        """Set at the first write (the kubelet's evented-PLEG stand-in: a container that printed has started)."""
        self.on_first_write: Callable[[], None] | None = None

    def write(self, stream: str, data: bytes) -> None:
        if not self.wrote.is_set():
            self.wrote.set()
            if self.on_first_write is not None:
                self.on_first_write()
        with self._lock:
            buf = self._partial.get(stream, b"") + data
            *lines, rest = buf.split(b"\n")
            self._partial[stream] = rest
            if lines:
                stamp = _ts(self._now()).encode()
                self._f.write(b"".join(stamp + b" " + stream.encode() + b" F " + ln + b"\n" for ln in lines))

    def close(self) -> None:
        with self._lock:
            for stream, rest in self._partial.items():
                if rest:
                    self._f.write(_ts(self._now()).encode() + b" " + stream.encode() + b" P " + rest + b"\n")
            self._partial.clear()
            self._f.close()


class _StreamIO(io.TextIOBase):
    """A text stream an emulated program writes to; goes to the container log."""

    def __init__(self, log: LogWriter, stream: str) -> None:
        self._log = log
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._log.write(self._stream, s.encode())
        return len(s)


def read_log(path: Path, *, timestamps: bool = False, tail_lines: int | None = None,
             since: dt.datetime | None = None, limit_bytes: int | None = None, start: int = 0
             ) -> tuple[list[bytes], int]:
    """Lines of a CRI log file as ``kubectl logs`` shows them; returns (lines, byte offset read up to)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            raw = f.read()
    except FileNotFoundError:
        return [], start
    end = start + raw.rfind(b"\n") + 1 if b"\n" in raw else start
    out: list[bytes] = []
    for rec in raw[: end - start].split(b"\n"):
        if not rec:
            continue
        parts = rec.split(b" ", 3)
        if len(parts) < 4:
            continue
        stamp, _stream, tag, text = parts
        if since is not None and stamp.decode() < _ts(since):
            continue
        line = text + (b"\n" if tag == b"F" else b"")
        out.append(stamp + b" " + line if timestamps else line)
    if tail_lines is not None:
        out = out[-tail_lines:] if tail_lines > 0 else []
    if limit_bytes is not None:
        acc, n = [], 0
        for ln in out:
            if n + len(ln) > limit_bytes:
                acc.append(ln[: limit_bytes - n])
                break
            acc.append(ln)
            n += len(ln)
        out = acc
    return out, end


@dataclass
class ProcessSpec:
    """What to start for one container."""

    argv: list[str]
    """Final argv (command + args, variables expanded)."""
    env: dict[str, str]
    """Complete environment (PATH included)."""
    work_dir: Path
    """cwd and HOME of the process."""
    log_path: Path
    """CRI log file for this container instance."""
    program: EmulatedProgram | None = None
    """Set for emulated images: run this in a thread instead of a process."""
    context: ContainerContext | None = None
    """The context handed to ``program``."""
    sandbox: Sandbox | None = None
    """Run in its own mount + PID namespace with this root (None: a plain local process on the host view)."""


_SHIM_START_TIMEOUT_S = 30.0
"""How long the runtime waits for a container's shim to report its mounts done (a loaded 2-core CI machine)."""


@dataclass
class Container:
    """A started container instance (one per start; a restart is a new instance)."""

    id: str
    """``containerd://<64 hex>``."""
    started_at: dt.datetime
    log: LogWriter
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    context: ContainerContext | None = None
    exit_code: int | None = None
    finished_at: dt.datetime | None = None
    signalled: str = ""
    """``TERM`` or ``KILL`` once the kubelet sent that signal."""
    done: threading.Event = field(default_factory=threading.Event)
    on_exit: Callable[[Container], None] | None = None
    spec: ProcessSpec | None = None
    """What was started (env, work dir, program): ``pods/exec`` runs commands with the same env and cwd."""
    shim: subprocess.Popen[bytes] | None = None
    """The namespace shim (PID 1) of an emulated container; real containers' ``proc`` is their shim."""
    _open_streams: int = 0

    @property
    def running(self) -> bool:
        return not self.done.is_set()


def _first_status(fd: int) -> str:
    """Wait for the shim's first status line: '' for ``ok``, else the error to report as StartError."""
    buf = b""
    # poll, not select: select() fails outright for descriptors >= 1024, which a busy twin reaches.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in buf:
        if not poller.poll(_SHIM_START_TIMEOUT_S * 1000):
            return "container shim did not start in time"
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf.decode(errors="replace").removeprefix("error ") or "container shim exited during setup"
        buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace")
    return "" if line == "ok" else line.removeprefix("error ")


def _relay_signals(fd: int, ctx: ContainerContext) -> None:
    """Hand ``signal N`` lines of an emulated container's shim to the program (until the shim is gone)."""
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            parts = raw.split()
            if len(parts) == 2 and parts[0] == b"signal" and parts[1].isdigit():
                ctx.deliver_signal(int(parts[1]))


class StartError(Exception):
    """The runtime could not start the container (missing binary…): the kubelet reports StartError/128."""


class Runtime:
    """Starts, signals and reaps containers; one selector thread for all of them."""

    def __init__(self, now: Callable[[], dt.datetime]) -> None:
        self._now = now
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[int, Any]] = []
        self._containers: dict[str, Container] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="twin-runtime", daemon=True)
        self._thread.start()

    # -- start ---------------------------------------------------------------------------------------
    def start(self, spec: ProcessSpec, on_exit: Callable[[Container], None],
              on_output: Callable[[], None] | None = None) -> Container:
        """Start a container; ``on_exit`` runs when it ended, ``on_output`` at its first output."""
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        log = LogWriter(spec.log_path, self._now)
        log.on_first_write = on_output
        cid = "containerd://" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        c = Container(id=cid, started_at=self._now(), log=log, on_exit=on_exit, spec=spec)
        if spec.program is not None:
            assert spec.context is not None
            c.context = spec.context
            spec.context.stdout = _StreamIO(log, "stdout")  # type: ignore[assignment]
            spec.context.stderr = _StreamIO(log, "stderr")  # type: ignore[assignment]
            if spec.sandbox is not None:
                c.shim, status_r = launch(spec.sandbox, argv=["/shim"], env=spec.env, hold=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          config_path=spec.log_path.with_suffix(".shim"))
                err = _first_status(status_r)
                if err:
                    os.close(status_r)
                    self._kill_shim(c.shim)
                    log.close()
                    raise StartError(err)
                spec.sandbox.shim_pid = shim_pid(c.shim.pid)
                spec.sandbox.ready.set()
                ctx = spec.context
                threading.Thread(target=_relay_signals, args=(status_r, ctx), daemon=True,
                                 name=f"signals-{ctx.pod_name}").start()
            with self._lock:
                self._containers[cid] = c
            threading.Thread(target=self._run_program, args=(c, spec.program, spec.context),
                             name=f"emulated-{spec.context.pod_name}", daemon=True).start()
            return c
        try:
            shim_status: int | None = None
            if spec.sandbox is not None:
                # The binary is looked up here, in the container's view, so a missing one is a StartError at
                # once; the shim's setup then runs without holding up the node's sync worker (its "ok" marks
                # the sandbox ready for exec; a late failure is an exit 128 with the error on stderr).
                err = spec.sandbox.command_error(spec.argv[0], spec.env.get("PATH", ""))
                if err:
                    log.close()
                    raise StartError(err)
                proc, shim_status = launch(spec.sandbox, argv=spec.argv, env=spec.env, hold=False,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           config_path=spec.log_path.with_suffix(".shim"))
            else:
                proc = subprocess.Popen(spec.argv, cwd=spec.work_dir, env=spec.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                        close_fds=True)
        except FileNotFoundError as exc:
            log.close()
            raise StartError(f'exec: "{spec.argv[0]}": executable file not found in $PATH') from exc
        except PermissionError as exc:
            log.close()
            raise StartError(f'exec: "{spec.argv[0]}": permission denied') from exc
        except OSError as exc:
            log.close()
            raise StartError(f'exec: "{spec.argv[0]}": {exc.strerror}') from exc
        c.proc, c.pid = proc, proc.pid
        pidfd = os.pidfd_open(proc.pid)
        assert proc.stdout is not None and proc.stderr is not None
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stderr.fileno(), False)
        c._open_streams = 2
        with self._lock:
            self._containers[cid] = c
            if shim_status is not None:
                os.set_blocking(shim_status, False)
                self._pending.append((shim_status, ("status", c, shim_status)))
            self._pending += [(proc.stdout.fileno(), ("out", c, "stdout", proc.stdout)),
                              (proc.stderr.fileno(), ("out", c, "stderr", proc.stderr)),
                              (pidfd, ("pid", c, pidfd))]
        os.write(self._wake_w, b"x")
        return c

    @staticmethod
    def _kill_shim(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _run_program(self, c: Container, program: EmulatedProgram, ctx: ContainerContext) -> None:
        try:
            code = int(program(ctx))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # like a Go panic: exit 2, trace on stderr
            ctx.stderr.write(traceback.format_exc())
            code = 2
        if c.signalled == "KILL":
            return  # already reported as killed
        self._finish(c, code)

    # -- signals -------------------------------------------------------------------------------------
    def terminate(self, c: Container) -> None:
        """SIGTERM the container (its whole process group), or set the emulated program's stop event."""
        if not c.running:
            return
        c.signalled = c.signalled or "TERM"
        if c.context is not None:
            c.context.stop.set()
            return
        assert c.pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.pid, signal.SIGTERM)

    def kill(self, c: Container) -> None:
        """SIGKILL the container; an emulated program is abandoned and reported as exit 137."""
        if not c.running:
            return
        c.signalled = "KILL"
        if c.context is not None:
            c.context.stop.set()
            c.context.killed.set()
            self._finish(c, 137)
            return
        assert c.pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.pid, signal.SIGKILL)

    def _finish(self, c: Container, code: int) -> None:
        with self._lock:
            if c.done.is_set():
                return
            c.exit_code = code
            c.finished_at = self._now()
            c.done.set()
            self._containers.pop(c.id, None)
        if c.context is not None:
            c.log.close()
        if c.shim is not None:
            self._kill_shim(c.shim)
        if c.on_exit is not None:
            c.on_exit(c)

    # -- loop ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            for fd, data in pending:
                self._sel.register(fd, selectors.EVENT_READ, data)
            if self._stopping:
                return
            for key, _mask in self._sel.select(timeout=1.0):
                data = key.data
                if data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                if data[0] == "status":
                    self._shim_status(key.fd, data[1])
                    continue
                if data[0] == "out":
                    _, c, stream, f = data
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if chunk:
                        c.log.write(stream, chunk)
                    else:
                        self._sel.unregister(key.fd)
                        f.close()
                        c._open_streams -= 1
                        if c._open_streams == 0 and c.done.is_set():
                            c.log.close()
                else:
                    _, c, pidfd = data
                    self._sel.unregister(pidfd)
                    os.close(pidfd)
                    assert c.proc is not None
                    rc = c.proc.wait()
                    # The container's init exited: the runtime kills what is left of the cgroup.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    code = rc if rc >= 0 else 128 - rc
                    if c._open_streams == 0:
                        c.log.close()
                    self._finish(c, code)

    def _shim_status(self, fd: int, c: Container) -> None:
        """A real container's shim reported its setup: ``ok`` → ready for exec, else the error on stderr."""
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        self._sel.unregister(fd)
        os.close(fd)
        sb = c.spec.sandbox if c.spec is not None else None
        line = chunk.split(b"\n", 1)[0].decode(errors="replace")
        if sb is not None and line == "ok" and c.proc is not None:
            sb.shim_pid = shim_pid(c.proc.pid)
        elif line:
            c.log.write("stderr", line.removeprefix("error ").encode() + b"\n")
        if sb is not None:
            sb.ready.set()

    def stop(self) -> None:
        """Kill every container and stop the loop (the twin is going away)."""
        with self._lock:
            live = list(self._containers.values())
        for c in live:
            self.kill(c)
        for c in live:
            c.done.wait(5)
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)

    def running(self) -> Iterator[Container]:
        with self._lock:
            return iter(list(self._containers.values()))


__all__ = ["STANDARD_PATH", "Container", "LogWriter", "ProcessSpec", "Runtime", "StartError", "read_log"]
