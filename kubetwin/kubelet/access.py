"""What the API server reads from a kubelet about its running pods: container logs (``pods/log``) and the running
instance's process spec (``pods/exec``). A mixin of :class:`~kubetwin.kubelet.kubelet.Kubelet`, kept apart from
the pod state machine because it only reads the kubelet's bookkeeping under its lock.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

from kubetwin.kubelet.podstate import PodState
from kubetwin.kubelet.runtime import ProcessSpec, read_log


class PodAccess:
    """Log and exec access to the pods of one kubelet (see the module docstring)."""

    run_dir: Path
    _lock: threading.RLock
    _stop: threading.Event
    _pods: dict[str, PodState]
    _by_key: dict[tuple[str, str], str]

    def _pod_dir(self, st: PodState) -> Path:
        return self.run_dir / "pods" / f"{st.ns}_{st.name}_{st.uid}"

    def log_path(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> Path | None:
        """The CRI log file of a container (``previous``: the instance before the last restart)."""
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            if st is None or container not in st.containers:
                return None
            cs = st.containers[container]
            idx = cs.restart_count - (1 if previous else 0)
            if idx < 0 or not cs.started_once:
                return None
            return self._pod_dir(st) / "logs" / container / f"{idx}.log"

    def read_log(self, namespace: str, pod: str, container: str, *, previous: bool = False,
                 timestamps: bool = False, tail_lines: int | None = None, since: dt.datetime | None = None,
                 limit_bytes: int | None = None) -> bytes:
        path = self.log_path(namespace, pod, container, previous=previous)
        if path is None:
            return b""
        lines, _ = read_log(path, timestamps=timestamps, tail_lines=tail_lines, since=since,
                            limit_bytes=limit_bytes)
        return b"".join(lines)

    # G's LogSource protocol (kubetwin.api.server): timestamped lines, the server applies options.
    def read(self, namespace: str, pod: str, container: str, *, previous: bool) -> bytes | None:
        path = self.log_path(namespace, pod, container, previous=previous)
        if path is None:
            return None
        lines, _ = read_log(path, timestamps=True)
        return b"".join(lines)

    def follow(self, namespace: str, pod: str, container: str, *, offset: int) -> Iterator[bytes]:
        path = self.log_path(namespace, pod, container)
        if path is None:
            return
        sent = offset
        while not self._stop.is_set():
            running = self.container_running(namespace, pod, container)
            lines, _ = read_log(path, timestamps=True)
            data = b"".join(lines)
            if len(data) > sent:
                yield data[sent:]
                sent = len(data)
            elif not running:
                return
            else:
                yield b""
                self._stop.wait(0.2)

    def container_running(self, namespace: str, pod: str, container: str) -> bool:
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            cs = st.containers.get(container) if st else None
            return bool(cs and cs.current and cs.current.running)

    def exec_spec(self, namespace: str, pod: str, container: str) -> ProcessSpec | None:
        """The process spec (env, work dir, emulated program) of the container's *running* instance, for
        ``pods/exec``; None when it is not running — a real kubelet only finds running containers to exec into
        (``container not found``)."""
        with self._lock:
            uid = self._by_key.get((namespace, pod))
            st = self._pods.get(uid) if uid else None
            cs = st.containers.get(container) if st else None
            cur = cs.current if cs else None
            return cur.spec if cur is not None and cur.running else None



__all__ = ["PodAccess"]
