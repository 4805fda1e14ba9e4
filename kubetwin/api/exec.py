"""``pods/exec`` over WebSocket: the RFC 6455 handshake and framing plus the Kubernetes channel protocol.

Reference kubernetes-dra.md §8.8. kubectl ≥ 1.30 offers ``v5.channel.k8s.io``, the official Python client's
``kubernetes.stream.stream`` offers ``v4.channel.k8s.io``; both speak *binary* frames whose first byte is the
channel: 0 stdin, 1 stdout, 2 stderr, 3 status (one JSON ``Status`` when the command ends), 4 resize. v5 adds
the client's ``[255, <channel>]`` message that half-closes a stream (stdin EOF, so ``kubectl exec -i … -- cat``
ends). After the status the server closes the WebSocket, which is how both clients learn the command is done.

A real kubelet runs the command inside the container's namespaces, and so does the twin where containers have
them (:mod:`kubetwin.kubelet.sandbox`): ``nsenter`` joins the mount and PID namespaces of the container's PID 1
(also for emulated driver containers, whose PID 1 is a shim relaying signals to the program), with the
container's environment — what :class:`ExecTarget` carries. Without namespaces the command is a local process
with the container's environment, working directory and PATH (the twin tools such as ``nvidia-smi`` first).
No TTY is allocated (``tty=true``
runs the command without one; resize messages are read and ignored), and SPDY is not offered: a client that
cannot upgrade to WebSocket gets a 400.

Everything after the handshake runs in the request's handler thread as one ``select`` loop over the TLS socket
and the process's pipes: an ``ssl.SSLSocket`` must not be read and written from two threads at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455 §1.3: appended to ``Sec-WebSocket-Key`` before hashing."""
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
"""Channel protocols the twin speaks, preferred first (both carry a JSON Status on channel 3)."""
STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
"""v5: a message ``[255, channel]`` from the client closes that channel (stdin EOF)."""

_OP_CONT, _OP_TEXT, _OP_BIN, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class ExecTarget:
    """Where an exec'd command runs: what the kubelet knows about the running container instance."""

    env: Mapping[str, str]
    """The container's complete environment (PATH with the twin tools dir first, HOSTNAME, env/envFrom, CDI env)."""
    work_dir: Path
    """The container's working directory (also its HOME unless the pod sets one)."""
    emulated: bool = False
    """The container runs an in-process emulated program without a namespace shim: nothing to exec into."""
    enter_pid: int | None = None
    """Host PID of the container's PID 1: run the command in its mount and PID namespaces (``nsenter``)."""
    has_command: Callable[[str], bool] | None = None
    """Whether a command name resolves inside the container (checked first: the OCI exec error otherwise)."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()


def pick_protocol(offered: str | None) -> str | None:
    """The subprotocol to answer from a ``Sec-WebSocket-Protocol`` header (comma-separated, may repeat)."""
    names = [p.strip() for p in (offered or "").split(",") if p.strip()]
    for p in PROTOCOLS:
        if p in names:
            return p
    return None


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame (servers never mask, RFC 6455 §5.1)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class FrameParser:
    """Incremental parser of client frames (masked, possibly fragmented); yields whole messages."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._msg_op: int | None = None
        self._msg = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return the complete ``(opcode, payload)`` messages (control frames as they come)."""
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._frame()
            if frame is None:
                return out
            fin, op, payload = frame
            if op >= 0x8:  # control frames are never fragmented and may interleave
                out.append((op, payload))
                continue
            if op != _OP_CONT:
                self._msg_op, self._msg = op, bytearray()
            self._msg += payload
            if fin and self._msg_op is not None:
                out.append((self._msg_op, bytes(self._msg)))
                self._msg_op, self._msg = None, bytearray()

    def _frame(self) -> tuple[bool, int, bytes] | None:
        b = self._buf
        if len(b) < 2:
            return None
        fin, op, masked, n = bool(b[0] & 0x80), b[0] & 0x0F, bool(b[1] & 0x80), b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = int.from_bytes(b[2:10], "big"), 10
        mask = b""
        if masked:
            if len(b) < pos + 4:
                return None
            mask, pos = bytes(b[pos:pos + 4]), pos + 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if masked:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return fin, op, payload


def success_status() -> dict[str, Any]:
    """Channel-3 Status of a command that exited 0 (the kubelet's exact shape, §8.8)."""
    return {"metadata": {}, "status": "Success"}


def exit_status(argv: Sequence[str], code: int) -> dict[str, Any]:
    """Channel-3 Status of a non-zero exit: kubectl prints ``command terminated with exit code <n>`` from the
    ``ExitCode`` cause and exits with it; the Python client's ``returncode`` reads the same cause."""
    if code == 0:
        return success_status()
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(argv)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict[str, Any]:
    """Channel-3 Status of a command that could not run at all (missing binary…)."""
    return {"metadata": {}, "status": "Failure", "message": message}


@dataclass
class ExecRequest:
    """The query of one exec call."""

    argv: list[str]
    """``command`` parameters, in order."""
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def _flag(q: Mapping[str, list[str]], name: str, default: bool) -> bool:
    vals = q.get(name)
    if not vals:
        return default
    return vals[-1].strip().lower() in ("1", "true", "t", "yes", "y")


def parse_request(q: Mapping[str, list[str]]) -> ExecRequest:
    """The exec options from the query; stdout and stderr default on only if given (PodExecOptions)."""
    return ExecRequest(argv=list(q.get("command") or []), stdin=_flag(q, "stdin", False),
                       stdout=_flag(q, "stdout", False), stderr=_flag(q, "stderr", False),
                       tty=_flag(q, "tty", False))


class ExecSession:
    """Runs one command on an upgraded connection until it ends, the client goes away, or the server stops."""

    def __init__(self, conn: socket.socket, protocol: str, req: ExecRequest, target: ExecTarget,
                 stopping: threading.Event) -> None:
        self._conn = conn
        self._v5 = protocol.startswith("v5.")
        self._req = req
        self._target = target
        self._stopping = stopping
        self._parser = FrameParser()
        self._stdin_buf = bytearray()
        self._stdin_eof = False
        self._client_gone = False

    # -- output --------------------------------------------------------------------------------------
    def _send(self, opcode: int, payload: bytes) -> None:
        if self._client_gone:
            return
        try:
            self._conn.sendall(encode_frame(opcode, payload))
        except OSError:
            self._client_gone = True

    def _send_channel(self, channel: int, data: bytes) -> None:
        # Chunk large outputs so one frame never holds a whole big write.
        for i in range(0, len(data), 32 * 1024):
            self._send(_OP_BIN, bytes([channel]) + data[i:i + 32 * 1024])

    def close(self, code: int = 1000) -> None:
        """Send a WebSocket close frame (both clients treat it as end of all streams)."""
        self._send(_OP_CLOSE, code.to_bytes(2, "big"))

    def send_status(self, status: Mapping[str, Any]) -> None:
        self._send_channel(STATUS, json.dumps(status, separators=(",", ":")).encode())

    # -- run -----------------------------------------------------------------------------------------
    def run(self) -> None:
        req, t = self._req, self._target
        argv, cwd = list(req.argv), t.work_dir
        try:
            if t.enter_pid is not None:
                if req.argv and t.has_command is not None and not t.has_command(req.argv[0]):
                    raise FileNotFoundError(req.argv[0])
                argv = [shutil.which("nsenter") or "nsenter", "--target", str(t.enter_pid), "--mount", "--pid",
                        "--root", "--wd", "--", *argv]
                cwd = Path("/")
            proc = subprocess.Popen(
                argv, cwd=cwd, env=dict(t.env), start_new_session=True, close_fds=True,
                stdin=subprocess.PIPE if req.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if req.stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE if req.stderr else subprocess.DEVNULL)
        except OSError as exc:
            # containerd: the runtime's OCI exec error; the command never ran.
            reason = ("executable file not found in $PATH" if isinstance(exc, FileNotFoundError)
                      else exc.strerror or str(exc))
            self.send_status(error_status(f'OCI runtime exec failed: exec failed: unable to start container '
                                          f'process: exec: "{req.argv[0]}": {reason}: unknown'))
            self.close()
            return
        try:
            code = self._pump(proc)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        if code is not None and not self._client_gone:
            self.send_status(exit_status(req.argv, code))
            self.close()

    def _pump(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Move bytes until the process exited and its outputs are drained; None if the client went away."""
        outs: dict[int, int] = {}
        for f, ch in ((proc.stdout, STDOUT), (proc.stderr, STDERR)):
            if f is not None:
                os.set_blocking(f.fileno(), False)
                outs[f.fileno()] = ch
        stdin_fd = proc.stdin.fileno() if proc.stdin is not None else None
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)
        pidfd = os.pidfd_open(proc.pid)
        exited = False
        try:
            while outs or not exited:
                if self._stopping.is_set() or self._client_gone:
                    return None
                if stdin_fd is not None and self._stdin_eof and not self._stdin_buf:
                    self._close_stdin(proc)
                    stdin_fd = None
                rlist: list[Any] = [self._conn, *outs]
                if not exited:
                    rlist.append(pidfd)
                wlist = [stdin_fd] if stdin_fd is not None and self._stdin_buf else []
                pending = isinstance(self._conn, ssl.SSLSocket) and self._conn.pending() > 0
                r, w = _ready(rlist, wlist, 0 if pending else 0.5)
                if pending and self._conn not in r:
                    r.append(self._conn)
                if self._conn in r and not self._read_client():
                    return None
                if stdin_fd is not None and stdin_fd in w:
                    stdin_fd = self._write_stdin(proc, stdin_fd)
                for fd in [x for x in r if x in outs]:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        self._send_channel(outs[fd], data)
                    else:
                        del outs[fd]
                if pidfd in r:
                    exited = True
        finally:
            os.close(pidfd)
        return proc.wait()

    def _close_stdin(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _write_stdin(self, proc: subprocess.Popen[bytes], fd: int) -> int | None:
        try:
            n = os.write(fd, self._stdin_buf)
        except BlockingIOError:
            return fd
        except OSError:  # the command closed its stdin (EPIPE): drop what the client still sends
            self._stdin_buf.clear()
            self._stdin_eof = True
            self._close_stdin(proc)
            return None
        del self._stdin_buf[:n]
        return fd

    def _read_client(self) -> bool:
        """Handle what the client sent; False when it closed the connection."""
        try:
            data = self._conn.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except OSError:
            self._client_gone = True
            return False
        if not data:
            self._client_gone = True
            return False
        for op, payload in self._parser.feed(data):
            if op == _OP_PING:
                self._send(_OP_PONG, payload)
            elif op == _OP_CLOSE:
                self._send(_OP_CLOSE, payload[:2])
                self._client_gone = True
                return False
            elif op in (_OP_BIN, _OP_TEXT) and payload:
                self._on_message(payload)
        return True

    def _on_message(self, payload: bytes) -> None:
        ch, data = payload[0], payload[1:]
        if ch == STDIN and self._req.stdin and not self._stdin_eof:
            self._stdin_buf += data
        elif ch == CLOSE_SIGNAL and self._v5 and data[:1] == bytes([STDIN]):
            self._stdin_eof = True
        # RESIZE (no TTY in the twin) and unknown channels are ignored.



def _ready(rlist: list[Any], wlist: list[Any], timeout_s: float) -> tuple[list[Any], list[Any]]:
    """``select.select`` for reading/writing, through poll: select() fails for descriptors >= 1024, which a twin
    running many containers reaches. Items are file descriptors or objects with ``fileno()``."""
    masks: dict[int, int] = {}
    objs: dict[int, Any] = {}
    for items, flag in ((rlist, select.POLLIN), (wlist, select.POLLOUT)):
        for obj in items:
            fd = obj if isinstance(obj, int) else obj.fileno()
            objs[fd] = obj
            masks[fd] = masks.get(fd, 0) | flag
    poller = select.poll()
    for fd, mask in masks.items():
        poller.register(fd, mask)
    readable = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL
    r: list[Any] = []
    w: list[Any] = []
    for fd, event in poller.poll(timeout_s * 1000):
        if event & readable and masks[fd] & select.POLLIN:
            r.append(objs[fd])
        if event & (select.POLLOUT | select.POLLERR) and masks[fd] & select.POLLOUT:
            w.append(objs[fd])
    return r, w

__all__ = ["CLOSE_SIGNAL", "PROTOCOLS", "ExecRequest", "ExecSession", "ExecTarget", "FrameParser", "accept_key",
           "encode_frame", "error_status", "exit_status", "parse_request", "pick_protocol", "success_status"]
