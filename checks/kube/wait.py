"""Watch-based waits: LIST, check, WATCH from the list's resourceVersion, relist when the watch breaks.

Why not poll: polling either sleeps (slow, and flaky under load) or hammers the server; a watch reports each
change as it happens, which is also what lets :class:`PodTimeline` time pods to the event. Why relist: a watch
can end at any moment (server timeout, proxy reset) and a resourceVersion can expire (410, reference
kubernetes-dra.md §8.4); a relist rebuilds the full state, so no change is ever missed.

Objects are the JSON the server sends, as plain dicts (camelCase keys, as in ``kubectl get -o json``): the same
shape for every kind (custom resources included) and for both a real cluster and the twin, with no
client-model conversion on the hot path.

Every wait has a timeout and raises :class:`WaitTimeout` saying what it waited for, for how long, and what it
saw last (for pods: phase, conditions, container states and the last event). There are no sleeps: time only
passes inside the watch; the clock is injectable so tests run on fake time.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from checks.kube.kinds import Kind, ListFn, kind
from checks.kube.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

Obj = dict[str, Any]
State = Mapping[str, Obj]
"""Current objects by ``namespace/name`` (``name`` for cluster-scoped kinds)."""

#: Extra seconds the client waits for a watch beyond the server-side ``timeoutSeconds``.
_CLIENT_GRACE_S = 10.0
#: Watches that end without any event this many times in a row trigger a backoff (a server closing at once).
_EMPTY_WATCHES_BEFORE_BACKOFF = 2


class WaitTimeout(Exception):
    """A wait ran out of time; the message says what, how long, and what was seen last."""

    def __init__(self, what: str, timeout_s: float, last_seen: str) -> None:
        super().__init__(f"timed out after {timeout_s:g}s waiting for {what}; last seen: {last_seen}")
        self.what = what
        self.timeout_s = timeout_s
        self.last_seen = last_seen


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Expired): the caller must relist."""


@dataclass(frozen=True)
class WatchStreamEvent:
    """One line of a watch stream."""

    type: str
    """``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``."""
    object: Obj
    """The object (for ERROR a ``Status``)."""


class ListWatch(Protocol):
    """A source of one kind's objects: what :func:`wait_until` needs and all it needs."""

    description: str
    """What is listed, for messages (``pods in ns x with app=y``)."""

    def list(self) -> tuple[list[Obj], str]:
        """Current objects and the list's resourceVersion."""
        ...

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[WatchStreamEvent]:
        """Changes after ``resource_version``; ends when the stream closes; raises WatchExpired on 410."""
        ...


def object_key(obj: Obj) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


@dataclass
class ApiListWatch:
    """:class:`ListWatch` over one list method of the official client, reading raw JSON."""

    list_fn: ListFn
    """The client's list method with the namespace already bound (see :meth:`Kind.list_fn`)."""
    description: str
    """For messages."""
    label_selector: str | None = None
    """Label selector sent with list and watch."""
    field_selector: str | None = None
    """Field selector sent with list and watch."""
    retry: RetryPolicy = DEFAULT_POLICY
    """Retry policy for the LIST and for opening the watch."""

    def _selectors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.label_selector:
            out["label_selector"] = self.label_selector
        if self.field_selector:
            out["field_selector"] = self.field_selector
        return out

    def list(self) -> tuple[list[Obj], str]:
        def once() -> tuple[list[Obj], str]:
            resp = self.list_fn(_preload_content=False, **self._selectors())
            try:
                body = json.loads(resp.data)
            finally:
                resp.release_conn()
            return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion", ""))

        return call_with_retry(self.retry, once, what=f"list {self.description}")

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[WatchStreamEvent]:
        server_timeout = max(1, math.ceil(timeout_s))

        def open_stream() -> Any:
            return self.list_fn(
                watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
                timeout_seconds=server_timeout, _preload_content=False,
                _request_timeout=(10.0, server_timeout + _CLIENT_GRACE_S), **self._selectors(),
            )

        try:
            resp = call_with_retry(self.retry, open_stream, what=f"watch {self.description}")
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(str(exc.reason)) from exc
            raise
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR" and obj.get("code") == 410:
                    raise WatchExpired(str(obj.get("message", "")))
                yield WatchStreamEvent(str(event.get("type")), obj)
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError, ConnectionError):
            return  # a dropped stream is an ordinary end: the caller relists
        finally:
            resp.close()
            resp.release_conn()


def source_for(cluster: ClusterClient, plural: str, namespace: str | None = None, *,
               label_selector: str | None = None, field_selector: str | None = None) -> ApiListWatch:
    """An :class:`ApiListWatch` for a kind of the :data:`~checks.kube.kinds.KINDS` registry."""
    k: Kind = kind(plural)
    where = f" in namespace {namespace}" if namespace else (" in all namespaces" if k.namespaced else "")
    sel = "".join(f" with {s}" for s in (label_selector, field_selector) if s)
    return ApiListWatch(k.list_fn(cluster, namespace), f"{plural}{where}{sel}", label_selector,
                        field_selector, cluster.retry)


# -- describing what was seen -------------------------------------------------------------------------------
def describe_conditions(obj: Obj) -> str:
    """``Type=Status(Reason: message)`` for each status condition."""
    parts = []
    for cond in (obj.get("status") or {}).get("conditions") or []:
        text = f"{cond.get('type')}={cond.get('status')}"
        detail = ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x)
        parts.append(f"{text}({detail})" if detail else text)
    return ", ".join(parts)


def describe_pod(pod: Obj) -> str:
    """Phase, conditions and the state of each container that is not running."""
    status = pod.get("status") or {}
    bits = [f"pod {object_key(pod)} phase {status.get('phase', '<none>')}"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        bits.append("terminating")
    if not (pod.get("spec") or {}).get("nodeName"):
        bits.append("not bound to a node")
    conds = describe_conditions(pod)
    if conds:
        bits.append(f"conditions {conds}")
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            if key in state and state[key] is not None:
                detail = state[key]
                reason = detail.get("reason") or key
                code = f" exit {detail['exitCode']}" if "exitCode" in detail else ""
                msg = f": {detail['message']}" if detail.get("message") else ""
                bits.append(f"container {cs.get('name')} {key} {reason}{code}{msg}")
    return "; ".join(bits)


def describe_object(obj: Obj) -> str:
    """A one-line summary fit for a timeout message, by kind."""
    kind_name = obj.get("kind") or ""
    if kind_name == "Pod" or ("containers" in (obj.get("spec") or {})):
        return describe_pod(obj)
    status = obj.get("status") or {}
    bits = [f"{kind_name or 'object'} {object_key(obj)}"]
    if "allocation" in status or "reservedFor" in status or kind_name == "ResourceClaim":
        bits.append("allocated" if status.get("allocation") else "not allocated")
        reserved = [r.get("name") for r in status.get("reservedFor") or []]
        if reserved:
            bits.append(f"reserved for {', '.join(str(r) for r in reserved)}")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        bits.append(f"terminating (finalizers {(obj.get('metadata') or {}).get('finalizers') or []})")
    if status.get("phase"):
        bits.append(f"phase {status['phase']}")
    conds = describe_conditions(obj)
    if conds:
        bits.append(f"conditions {conds}")
    return "; ".join(bits)


def describe_state(state: State, *, limit: int = 5) -> str:
    """The objects currently seen (first ``limit``), or that there are none."""
    if not state:
        return "no matching objects"
    keys = sorted(state)
    shown = [describe_object(state[k]) for k in keys[:limit]]
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return " | ".join(shown) + more


# -- the wait loop ------------------------------------------------------------------------------------------
@dataclass
class WaitStats:
    """What a wait went through; useful in reports and asserted by tests."""

    lists: int = 0
    """LIST calls made (1 + relists)."""
    watches: int = 0
    """Watch streams opened."""
    expired: int = 0
    """410 Expired answers that forced a relist."""
    events: int = 0
    """Watch events applied (bookmarks excluded)."""


@dataclass
class WaitOptions:
    """Knobs shared by every wait."""

    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds; tests pass a fake advanced by their fake source."""
    observe: Callable[[Obj, str], None] | None = None
    """Called with every object seen (listed or watched) and its event type (``LISTED`` for list items)."""
    on_timeout: Callable[[State], str] | None = None
    """Extra text appended to the timeout message (e.g. the last event of a pod)."""
    describe: Callable[[State], str] = describe_state
    """How the last-seen state is summarized in the timeout message."""
    backoff: RetryPolicy = field(default_factory=lambda: DEFAULT_POLICY)
    """Delays used only when watches keep closing without any event (a misbehaving server)."""
    stats: WaitStats = field(default_factory=WaitStats)
    """Filled in while waiting."""


def wait_until(source: ListWatch, condition: Callable[[State], bool], *, timeout: float, what: str,
               options: WaitOptions | None = None) -> dict[str, Obj]:
    """Wait until ``condition(state)`` holds for the objects ``source`` yields; return that state.

    LIST, check; WATCH from the list's resourceVersion, applying each event to the state and checking again;
    when the watch ends (dropped, server timeout) or expires (410), relist and go on. Raise
    :class:`WaitTimeout` once ``timeout`` seconds have passed without the condition holding.
    """
    opts = options or WaitOptions()
    stats = opts.stats
    deadline = opts.clock() + timeout
    state: dict[str, Obj] = {}
    empty_watches = 0

    def timed_out() -> WaitTimeout:
        seen = opts.describe(state)
        if opts.on_timeout is not None:
            with contextlib.suppress(Exception):  # enrichment must never hide the timeout itself
                extra = opts.on_timeout(state)
                if extra:
                    seen = f"{seen}; {extra}"
        return WaitTimeout(what, timeout, seen)

    while True:
        items, rv = source.list()
        stats.lists += 1
        state = {object_key(o): o for o in items}
        if opts.observe is not None:
            for o in items:
                opts.observe(o, "LISTED")
        if condition(state):
            return state
        remaining = deadline - opts.clock()
        if remaining <= 0:
            raise timed_out()
        stats.watches += 1
        applied = 0
        try:
            for ev in source.watch(rv, remaining):
                if ev.type == "ERROR":
                    break  # a non-410 error event: relist to be safe
                if ev.type == "BOOKMARK":
                    continue
                key = object_key(ev.object)
                if ev.type == "DELETED":
                    state.pop(key, None)
                else:
                    state[key] = ev.object
                applied += 1
                stats.events += 1
                if opts.observe is not None:
                    opts.observe(ev.object, ev.type)
                if condition(state):
                    return state
                if opts.clock() >= deadline:
                    raise timed_out()
        except WatchExpired:
            stats.expired += 1
        # The stream ended (dropped, closed by the server, or expired): relist, since state may have moved.
        if applied:
            empty_watches = 0
            continue
        empty_watches += 1
        if empty_watches >= _EMPTY_WATCHES_BEFORE_BACKOFF:
            delay = min(opts.backoff.delay_for(empty_watches - 1), max(0.0, deadline - opts.clock()))
            if delay > 0:
                opts.backoff.sleep(delay)


def wait_for(source: ListWatch, predicate: Callable[[Obj], bool], *, timeout: float, what: str,
             options: WaitOptions | None = None) -> Obj:
    """Wait until some object from ``source`` satisfies ``predicate``; return it."""
    found: list[Obj] = []

    def condition(state: State) -> bool:
        for key in sorted(state):
            if predicate(state[key]):
                found[:] = [state[key]]
                return True
        return False

    wait_until(source, condition, timeout=timeout, what=what, options=options)
    return found[0]


# -- pods and claims ----------------------------------------------------------------------------------------
def condition_status(obj: Obj, cond_type: str) -> str | None:
    """The ``status`` of condition ``cond_type`` (``True``/``False``/``Unknown``), None when absent."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == cond_type:
            return str(cond.get("status"))
    return None


def pod_is_ready(pod: Obj) -> bool:
    """Ready=True and not being deleted."""
    return condition_status(pod, "Ready") == "True" and not (pod.get("metadata") or {}).get("deletionTimestamp")


def last_event_text(cluster: ClusterClient, namespace: str, name: str | None = None) -> str:
    """``last event: <reason>: <message>`` for an object (or the namespace), newest by time; '' if none."""
    selector = f"involvedObject.name={name}" if name else None
    resp: Any = cluster.core.list_namespaced_event(namespace, field_selector=selector, _preload_content=False)
    try:
        items = json.loads(resp.data).get("items") or []
    finally:
        resp.release_conn()
    if not items:
        return ""
    newest = max(items, key=event_sort_key)
    return f"last event: {newest.get('reason')}: {newest.get('message', '')}".strip()


def event_sort_key(ev: Obj) -> str:
    """Events ordered by their most specific timestamp (RFC 3339 strings sort as times)."""
    return str(ev.get("eventTime") or ev.get("lastTimestamp") or ev.get("firstTimestamp")
               or (ev.get("metadata") or {}).get("creationTimestamp") or "")


def _with_events(cluster: ClusterClient, namespace: str, name: str | None,
                 options: WaitOptions | None) -> WaitOptions:
    opts = options or WaitOptions()
    if opts.on_timeout is None:
        opts.on_timeout = lambda _state: last_event_text(cluster, namespace, name)
    return opts


def wait_pod_condition(cluster: ClusterClient, namespace: str, name: str, cond_type: str, status: str = "True", *,
                       timeout: float, options: WaitOptions | None = None) -> Obj:
    """Wait until pod ``name`` has condition ``cond_type`` with ``status``."""
    source = source_for(cluster, "pods", namespace, field_selector=f"metadata.name={name}")
    return wait_for(source, lambda p: condition_status(p, cond_type) == status, timeout=timeout,
                    what=f"pod {namespace}/{name} condition {cond_type}={status}",
                    options=_with_events(cluster, namespace, name, options))


def wait_pod_ready(cluster: ClusterClient, namespace: str, name: str, *, timeout: float,
                   options: WaitOptions | None = None) -> Obj:
    """Wait until pod ``name`` is Ready."""
    source = source_for(cluster, "pods", namespace, field_selector=f"metadata.name={name}")
    return wait_for(source, pod_is_ready, timeout=timeout, what=f"pod {namespace}/{name} Ready",
                    options=_with_events(cluster, namespace, name, options))


def wait_pods_ready(cluster: ClusterClient, namespace: str | None, label_selector: str, *, timeout: float,
                    count: int | None = None, options: WaitOptions | None = None) -> list[Obj]:
    """Wait until the pods matching ``label_selector`` are all Ready (at least ``count``, else at least one).

    ``namespace`` None waits across all namespaces (as ``kubectl wait -A`` does for the driver's plugin pods).
    """
    source = source_for(cluster, "pods", namespace, label_selector=label_selector)
    need = 1 if count is None else count

    def condition(state: State) -> bool:
        live = [p for p in state.values() if not (p.get("metadata") or {}).get("deletionTimestamp")]
        return len(live) >= need and all(pod_is_ready(p) for p in live)

    where = namespace or "all namespaces"
    opts = options if namespace is None else _with_events(cluster, namespace, None, options)
    state = wait_until(source, condition, timeout=timeout,
                       what=f"{'at least ' + str(need) if count else 'all'} pods with {label_selector} in "
                            f"{where} Ready", options=opts)
    return [state[k] for k in sorted(state)]


def wait_deleted(cluster: ClusterClient, plural: str, name: str | None, namespace: str | None = None, *,
                 timeout: float, label_selector: str | None = None,
                 options: WaitOptions | None = None) -> None:
    """Wait until the named object (or every object matching ``label_selector``) is gone."""
    field_selector = f"metadata.name={name}" if name else None
    source = source_for(cluster, plural, namespace, label_selector=label_selector, field_selector=field_selector)
    wait_until(source, lambda state: not state, timeout=timeout,
               what=f"{source.description} to be deleted", options=options)


def claim_is_allocated(claim: Obj) -> bool:
    """``status.allocation`` is set (reference kubernetes-dra.md §1.3)."""
    return bool((claim.get("status") or {}).get("allocation"))


def wait_claim_allocated(cluster: ClusterClient, namespace: str, name: str, *, timeout: float,
                         options: WaitOptions | None = None) -> Obj:
    """Wait until ResourceClaim ``name`` is allocated."""
    source = source_for(cluster, "resourceclaims", namespace, field_selector=f"metadata.name={name}")
    return wait_for(source, claim_is_allocated, timeout=timeout,
                    what=f"resourceclaim {namespace}/{name} allocated",
                    options=_with_events(cluster, namespace, name, options))


# -- pod timelines ------------------------------------------------------------------------------------------
def parse_time(text: str | None) -> datetime | None:
    """RFC 3339 (``2026-11-26T17:58:00Z``, optionally with fractions) to an aware UTC datetime."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


@dataclass(frozen=True)
class PodTimelineSample:
    """When one pod passed each milestone (UTC); a milestone not reached is None."""

    namespace: str
    """Pod namespace."""
    name: str
    """Pod name."""
    uid: str
    """Pod uid (a recreated pod with the same name is another sample)."""
    created: datetime | None
    """When the pod was first seen (observed mode) or ``metadata.creationTimestamp`` (server mode)."""
    scheduled: datetime | None
    """When it was first seen bound (PodScheduled=True or a nodeName)."""
    running: datetime | None
    """When phase Running was first seen (server mode: the latest container ``startedAt``)."""
    ready: datetime | None
    """When Ready=True was first seen (server mode: its ``lastTransitionTime``)."""

    @property
    def to_scheduled_s(self) -> float | None:
        """created → scheduled, seconds."""
        return _seconds(self.created, self.scheduled)

    @property
    def to_running_s(self) -> float | None:
        """created → running, seconds."""
        return _seconds(self.created, self.running)

    @property
    def to_ready_s(self) -> float | None:
        """created → ready, seconds."""
        return _seconds(self.created, self.ready)


@dataclass
class _Track:
    namespace: str
    name: str
    uid: str
    created: datetime | None = None
    scheduled: datetime | None = None
    running: datetime | None = None
    ready: datetime | None = None


@dataclass
class PodTimeline:
    """Records per-pod milestones from the pods a watch observes (pass :meth:`observe` as ``observe``).

    Two clocks are possible, chosen by ``source``:

    - ``"observed"`` (default): each milestone is the moment this client first saw it in a watch event —
      one clock for every sample, millisecond resolution. This is what a latency measurement needs; feed it
      from :func:`record_pods`, which watches *before* the pods are created so ``created`` is the ADDED event.
    - ``"server"``: the server's own timestamps (creationTimestamp, condition lastTransitionTime, container
      startedAt) where present — whole seconds on real clusters and written by different components' clocks —
      with the observation time as fallback.
    """

    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """Wall-clock source for observation times; injectable for tests."""
    source: str = "observed"
    """``observed`` or ``server`` (see the class docstring)."""
    recorder: RecorderStats | None = None
    """How the background recording went, when :func:`record_pods` filled this timeline."""
    _tracks: dict[str, _Track] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, pod: Obj, event_type: str = "MODIFIED") -> None:
        """Fold one observed pod state into its track (DELETED events are ignored)."""
        if event_type == "DELETED":
            return
        server = self.source == "server"
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid") or object_key(pod))
        seen_at = self.now()
        with self._lock:
            track = self._tracks.get(uid)
            if track is None:
                track = _Track(str(meta.get("namespace", "")), str(meta.get("name", "")), uid)
                self._tracks[uid] = track
            if track.created is None:
                track.created = (parse_time(meta.get("creationTimestamp")) if server else None) or seen_at
            conds = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
            if track.scheduled is None:
                sched = conds.get("PodScheduled")
                if sched is not None and sched.get("status") == "True":
                    track.scheduled = (parse_time(sched.get("lastTransitionTime")) if server else None) or seen_at
                elif (pod.get("spec") or {}).get("nodeName"):
                    track.scheduled = seen_at
            status = pod.get("status") or {}
            if track.running is None and status.get("phase") == "Running":
                starts = [parse_time(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
                          for cs in status.get("containerStatuses") or []] if server else []
                known = [t for t in starts if t is not None]
                track.running = max(known) if known else seen_at
            if track.ready is None:
                ready = conds.get("Ready")
                if ready is not None and ready.get("status") == "True":
                    track.ready = (parse_time(ready.get("lastTransitionTime")) if server else None) or seen_at

    def samples(self) -> list[PodTimelineSample]:
        """One sample per pod seen, ordered by creation time then name."""
        with self._lock:
            out = [PodTimelineSample(t.namespace, t.name, t.uid, t.created, t.scheduled, t.running, t.ready)
                   for t in self._tracks.values()]
        return sorted(out, key=lambda s: (s.created or datetime.min.replace(tzinfo=UTC), s.name))


@dataclass
class RecorderStats:
    """How a :func:`record_pods` recording went; a timing report shows it next to the numbers."""

    relists: int = 0
    """Relists after a 410 (milestones between the expired version and the relist are seen late)."""
    catch_up_s: float = 0.0
    """Seconds spent at the end of the block until the recorder had seen the state the caller saw."""
    folded_late: int = 0
    """Objects the recorder had not seen in time and that were taken from the final LIST instead."""


class _Recorder:
    """The background watch behind :func:`record_pods`, and how it ends without losing anything.

    Ending is the subtle part. The caller's own wait (another watch) can see "all pods Ready" before this
    recorder's stream has delivered those events — its connection opens later, its thread gets less CPU.
    Stopping at that moment dropped whatever was still in flight (seen on a loaded machine: 18 of 20 samples,
    issue 14). So :meth:`finish` first takes a LIST — a consistent snapshot at least as new as anything the
    caller saw — and keeps consuming until the recorder has observed each listed object at its listed
    resourceVersion (a watch delivers every version in order, so it will). Only if the stream cannot get
    there in time are the snapshot's objects folded in directly, so a sample is never lost.
    """

    def __init__(self, source: ListWatch, tl: PodTimeline, watch_s: float) -> None:
        self.source, self.tl, self.watch_s = source, tl, watch_s
        self.stats = RecorderStats()
        self._seen: set[tuple[str, str]] = set()
        self._want: set[tuple[str, str]] | None = None
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        items, self._rv = source.list()
        for obj in items:
            self._fold(obj, "LISTED")
        self._thread = threading.Thread(target=self._run, name="pod-timeline", daemon=True)
        self._thread.start()

    @staticmethod
    def _version(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return str(meta.get("uid") or object_key(obj)), str(meta.get("resourceVersion") or "")

    def _fold(self, obj: Obj, event_type: str) -> None:
        self.tl.observe(obj, event_type)
        with self._lock:
            self._seen.add(self._version(obj))
            if self._want is not None and self._want <= self._seen:
                self._caught_up.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for ev in self.source.watch(self._rv, self.watch_s):
                    if self._stop.is_set():
                        return
                    self._rv = str((ev.object.get("metadata") or {}).get("resourceVersion") or self._rv)
                    if ev.type in ("BOOKMARK", "ERROR"):
                        continue
                    self._fold(ev.object, ev.type)
            except WatchExpired:
                self.stats.relists += 1
                fresh, self._rv = self.source.list()
                for obj in fresh:
                    self._fold(obj, "LISTED")
            except Exception:
                if self._stop.wait(0.5):
                    return

    def finish(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Catch up with a fresh LIST (see the class docstring), then stop the background watch."""
        started = clock()
        try:
            snapshot, _rv = self.source.list()
            with self._lock:
                self._want = {self._version(o) for o in snapshot}
                if self._want <= self._seen:
                    self._caught_up.set()
            if not self._caught_up.wait(timeout_s):
                with self._lock:
                    missing = {uid for uid, rv in self._want - self._seen}
                for obj in snapshot:
                    if self._version(obj)[0] in missing:
                        self.tl.observe(obj, "LISTED")
                        self.stats.folded_late += 1
        finally:
            self.stats.catch_up_s = clock() - started
            self._stop.set()
            self._thread.join(timeout=0.5)


@contextlib.contextmanager
def record_pods(cluster: ClusterClient, namespace: str | None, label_selector: str | None = None, *,
                timeline: PodTimeline | None = None, catch_up_s: float = 30.0) -> Iterator[PodTimeline]:
    """Watch pods in the background while the ``with`` block creates and waits for them.

    Start it *before* creating the pods: every milestone, creation included, is then the moment a watch event
    showed it (see :class:`PodTimeline`). The watch relists on 410 and reconnects when dropped. When the block
    ends, the recorder first catches up with the cluster's state as of then (up to ``catch_up_s``), so no pod
    the block saw is missing from the timeline (see :class:`_Recorder`).
    """
    source = source_for(cluster, "pods", namespace, label_selector=label_selector)
    with record_from(source, timeline=timeline, catch_up_s=catch_up_s) as tl:
        yield tl


@contextlib.contextmanager
def record_from(source: ListWatch, *, timeline: PodTimeline | None = None, catch_up_s: float = 30.0,
                watch_s: float = 5.0) -> Iterator[PodTimeline]:
    """:func:`record_pods` over any :class:`ListWatch` (tests pass a scripted one)."""
    tl = timeline or PodTimeline()
    rec = _Recorder(source, tl, watch_s)
    tl.recorder = rec.stats
    try:
        yield tl
    finally:
        rec.finish(catch_up_s)
