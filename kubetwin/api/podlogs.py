"""``pods/log``: one read or a chunked follow stream from the registered log source, with the kubelet's
option semantics (``sinceSeconds``, ``tailLines``, ``timestamps``, ``limitBytes``) and its error wording."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from kubetwin.api import errors as E
from kubetwin.api.errors import ApiError
from kubetwin.api.request import ClientGone, Obj, q1, qbool, qint
from kubetwin.api.resources import ResourceType
from kubetwin.api.verbs import Verbs


def log(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]], body: bytes) -> None:
    pod = h.api.get(rt, ns, name)
    spec = pod.get("spec") or {}
    container = q1(q, "container")
    names = [c.get("name") for c in spec.get("containers") or []]
    inits = [c.get("name") for c in spec.get("initContainers") or []]
    ephem = [c.get("name") for c in spec.get("ephemeralContainers") or []]
    if not container:
        if len(names) == 1:
            container = names[0]
        elif not names:
            raise E.bad_request(f"a container name must be specified for pod {name}")
        else:
            msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            if inits:
                msg += f" or one of the init containers: [{' '.join(inits)}]"
            if ephem:
                msg += f" or one of the ephemeral containers: [{' '.join(ephem)}]"
            raise E.bad_request(msg)
    elif container not in names + inits + ephem:
        raise E.bad_request(f"container {container} is not valid for pod {name}")
    opts = _LogOptions.parse(q)
    if not spec.get("nodeName"):
        h._send_bytes(200, b"", "text/plain")  # unscheduled: no location, empty log (as the apiserver)
        return
    _check_container_log_state(pod, name, container, opts.previous)
    src = h.twin.log_source
    if src is None:
        raise E.bad_request(f'no log source is registered with the twin for container "{container}" in pod '
                            f'"{name}"')
    raw = src.read(str(ns), name, container, previous=opts.previous)
    if raw is None:
        raise ApiError(404, "NotFound", f'log of container "{container}" in pod "{name}" not found',
                       {"name": name, "kind": "pods"})
    now = h.api.clock.now()
    text = opts.render(raw, now, tail=True)
    if not opts.follow or opts.previous or _container_finished(pod, container):
        if opts.limit_bytes is not None:
            text = text[:opts.limit_bytes]
        h._send_bytes(200, text, "text/plain")
        return
    h._start_stream("text/plain")
    sent = 0
    it = src.follow(str(ns), name, container, offset=len(raw))
    try:
        if opts.limit_bytes is not None:
            text = text[:opts.limit_bytes]
        h._chunk(text)
        sent += len(text)
        for chunk in it:
            if h.twin.stopping.is_set():
                break
            if opts.limit_bytes is not None and sent >= opts.limit_bytes:
                break
            out = opts.render(chunk, now, tail=False)
            if opts.limit_bytes is not None:
                out = out[:opts.limit_bytes - sent]
            h._chunk(out)
            sent += len(out)
    except ClientGone:
        pass
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
    h._end_stream()



@dataclass(frozen=True)
class _LogOptions:
    """``PodLogOptions`` from the query (§8.8)."""

    follow: bool
    """Stream until the container ends."""
    previous: bool
    """The previous terminated instance's log."""
    timestamps: bool
    """Keep each line's RFC 3339 timestamp prefix."""
    tail_lines: int | None
    """Only the last N lines of what exists (the follow part is not cut)."""
    since_seconds: int | None
    """Only lines newer than this many seconds."""
    limit_bytes: int | None
    """Stop after this many bytes."""

    @classmethod
    def parse(cls, q: dict[str, list[str]]) -> _LogOptions:
        tail = qint(q, "tailLines")
        since = qint(q, "sinceSeconds")
        limit = qint(q, "limitBytes")
        if tail is not None and tail < 0:
            raise E.bad_request("tailLines: Invalid value: must be greater than or equal to 0")
        if since is not None and since < 1:
            raise E.bad_request("sinceSeconds: Invalid value: must be greater than 0")
        if limit is not None and limit < 1:
            raise E.bad_request("limitBytes: Invalid value: must be greater than 0")
        if q1(q, "sinceTime") and since is not None:
            raise E.bad_request("at most one of `sinceTime` or `sinceSeconds` may be specified")
        return cls(qbool(q, "follow"), qbool(q, "previous"), qbool(q, "timestamps"), tail, since, limit)

    def render(self, raw: bytes, now: dt.datetime, *, tail: bool) -> bytes:
        lines = raw.splitlines(keepends=True)
        if self.since_seconds is not None:
            cutoff = now - dt.timedelta(seconds=self.since_seconds)
            lines = [ln for ln in lines if (_line_time(ln) or now) >= cutoff]
        if tail and self.tail_lines is not None:
            lines = lines[len(lines) - self.tail_lines:] if self.tail_lines else []
        if not self.timestamps:
            lines = [ln.split(b" ", 1)[1] if b" " in ln else b"" for ln in lines]
        return b"".join(lines)


def _line_time(line: bytes) -> dt.datetime | None:
    stamp = line.split(b" ", 1)[0].decode("ascii", "replace")
    try:
        s = stamp.replace("Z", "+00:00")
        if "." in s:  # Python parses at most microseconds: trim nanoseconds
            head, frac = s.split(".", 1)
            n = len(frac) - len(frac.lstrip("0123456789"))
            s = f"{head}.{frac[:min(n, 6)]}{frac[n:]}"
        return dt.datetime.fromisoformat(s)
    except ValueError:
        return None


def _container_status(pod: Obj, container: str) -> Obj | None:
    st = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in st.get(key) or []:
            if cs.get("name") == container:
                return dict(cs)
    return None


def _container_finished(pod: Obj, container: str) -> bool:
    cs = _container_status(pod, container)
    return cs is not None and bool((cs.get("state") or {}).get("terminated"))


def _check_container_log_state(pod: Obj, pod_name: str, container: str, previous: bool) -> None:
    """The kubelet's ``validateContainerLogStatus`` messages, so ``kubectl logs`` errors read as on a node."""
    cs = _container_status(pod, container)
    if cs is None:
        if ((pod.get("status") or {}).get("phase") or "Pending") == "Pending":
            raise E.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start: '
                                f"ContainerCreating")
        raise E.bad_request(f'container "{container}" in pod "{pod_name}" is not available')
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise E.bad_request(f'previous terminated container "{container}" in pod "{pod_name}" not found')
        return
    if state.get("running") or state.get("terminated") or last:
        return
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason") or ""
        detail = {"ErrImagePull": "image can't be pulled",
                  "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise E.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start: {detail}')
    raise E.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start - no logs yet')


