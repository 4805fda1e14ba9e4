"""wait_until / wait_for and PodTimeline on a scripted list-watch source and fake time.

The source is a stand-in for the API server's LIST and WATCH (our own seam, not the kubernetes client):
each watch is a script of events, each event advancing the fake clock, and a script may end early (a dropped
stream) or raise WatchExpired (410). Against a real server the same loop runs via ApiListWatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checks.kube.retry import RetryPolicy
from checks.kube.wait import (
    PodTimeline,
    WaitOptions,
    WaitTimeout,
    WatchExpired,
    WatchStreamEvent,
    describe_pod,
    wait_for,
    wait_until,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, rv: int, *, phase: str = "Pending", ready: bool = False, node: str | None = None,
        **extra: Any) -> dict[str, Any]:
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                                        "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "c"}], **({"nodeName": node} if node else {})},
            "status": {"phase": phase, "conditions": conds, **extra}}


Script = list[tuple[float, WatchStreamEvent] | str]


class ScriptedSource:
    """lists[i] answers the i-th LIST; watches[i] the i-th WATCH ('410' raises WatchExpired)."""

    description = "pods in namespace ns"

    def __init__(self, clock: FakeClock, lists: list[tuple[list[dict[str, Any]], str]],
                 watches: list[Script]) -> None:
        self.clock, self.lists, self.watches = clock, lists, watches
        self.watch_rvs: list[str] = []
        self.watch_timeouts: list[float] = []

    def list(self) -> tuple[list[dict[str, Any]], str]:
        return self.lists.pop(0)

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[WatchStreamEvent]:
        self.watch_rvs.append(resource_version)
        self.watch_timeouts.append(timeout_s)
        script = self.watches.pop(0) if self.watches else []
        for step in script:
            if step == "410":
                raise WatchExpired("too old resource version")
            assert not isinstance(step, str)
            dt, ev = step
            self.clock.now += dt
            yield ev
        # end of script: the stream closes (drop / server timeout); time runs out if nothing else comes
        if not script:
            self.clock.now += timeout_s


def ready_named(name: str) -> Any:
    return lambda p: p["metadata"]["name"] == name and p["status"]["phase"] == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])


def opts(clock: FakeClock, **kw: Any) -> WaitOptions:
    return WaitOptions(clock=clock, backoff=RetryPolicy(sleep=lambda s: setattr(clock, "now", clock.now + s)),
                       **kw)


def test_condition_true_at_list_returns_without_watching() -> None:
    clock = FakeClock()
    src = ScriptedSource(clock, [([pod("a", 5, phase="Running", ready=True)], "5")], [])
    o = opts(clock)
    got = wait_for(src, ready_named("a"), timeout=10, what="pod a Ready", options=o)
    assert got["metadata"]["name"] == "a"
    assert o.stats.lists == 1 and o.stats.watches == 0


def test_watch_starts_at_list_resource_version_and_applies_events() -> None:
    clock = FakeClock()
    src = ScriptedSource(clock, [([pod("a", 5)], "7")], [[
        (1.0, WatchStreamEvent("MODIFIED", pod("a", 8, phase="Running", node="n1"))),
        (1.0, WatchStreamEvent("BOOKMARK", {"metadata": {"resourceVersion": "9"}})),
        (1.0, WatchStreamEvent("MODIFIED", pod("a", 10, phase="Running", ready=True, node="n1"))),
    ]])
    o = opts(clock)
    got = wait_for(src, ready_named("a"), timeout=10, what="pod a Ready", options=o)
    assert got["metadata"]["resourceVersion"] == "10"
    assert src.watch_rvs == ["7"]
    assert src.watch_timeouts == [10]
    assert o.stats.events == 2  # bookmarks are not object events


def test_dropped_watch_relists_and_sees_what_happened_meanwhile() -> None:
    clock = FakeClock()
    # First watch delivers one event then the stream drops; the pod turned Ready while nobody watched:
    # only the relist can see it.
    src = ScriptedSource(clock, [([pod("a", 5)], "5"), ([pod("a", 12, phase="Running", ready=True)], "12")], [[
        (1.0, WatchStreamEvent("MODIFIED", pod("a", 6, phase="Running"))),
    ]])
    o = opts(clock)
    got = wait_for(src, ready_named("a"), timeout=30, what="pod a Ready", options=o)
    assert got["metadata"]["resourceVersion"] == "12"
    assert o.stats.lists == 2 and o.stats.expired == 0


def test_410_expired_relists_and_rewatches_from_the_new_version() -> None:
    clock = FakeClock()
    src = ScriptedSource(clock, [([pod("a", 5)], "5"), ([pod("a", 40)], "40")], [
        ["410"],
        [(2.0, WatchStreamEvent("MODIFIED", pod("a", 41, phase="Running", ready=True)))],
    ])
    o = opts(clock)
    wait_for(src, ready_named("a"), timeout=30, what="pod a Ready", options=o)
    assert src.watch_rvs == ["5", "40"]
    assert o.stats.expired == 1 and o.stats.lists == 2


def test_deleted_events_remove_objects_so_deletion_waits_finish() -> None:
    clock = FakeClock()
    src = ScriptedSource(clock, [([pod("a", 5), pod("b", 6)], "6")], [[
        (0.5, WatchStreamEvent("DELETED", pod("a", 7))),
        (0.5, WatchStreamEvent("MODIFIED", pod("b", 8))),
        (0.5, WatchStreamEvent("DELETED", pod("b", 9))),
    ]])
    state = wait_until(src, lambda s: not s, timeout=5, what="pods gone", options=opts(clock))
    assert state == {}
    assert clock.now == pytest.approx(1.5)


def test_timeout_message_says_what_how_long_and_last_seen() -> None:
    clock = FakeClock()
    stuck = pod("a", 9)
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": "0/1 nodes are available: 1 cannot allocate all claims."}]
    src = ScriptedSource(clock, [([pod("a", 5)], "5")], [[(3.0, WatchStreamEvent("MODIFIED", stuck))], []] + [[]] * 5)
    src.lists += [([stuck], "9")] * 6
    o = opts(clock, on_timeout=lambda state: "last event: FailedScheduling: no devices")
    with pytest.raises(WaitTimeout) as info:
        wait_for(src, ready_named("a"), timeout=20, what="pod ns/a Ready", options=o)
    msg = str(info.value)
    assert msg.startswith("timed out after 20s waiting for pod ns/a Ready; last seen: pod ns/a phase Pending")
    assert "PodScheduled=False(Unschedulable: 0/1 nodes are available: 1 cannot allocate all claims.)" in msg
    assert "not bound to a node" in msg
    assert msg.endswith("last event: FailedScheduling: no devices")
    assert clock.now >= 20


def test_failing_enrichment_does_not_hide_the_timeout() -> None:
    clock = FakeClock()
    src = ScriptedSource(clock, [([], "1")] * 5, [])

    def boom(state: Any) -> str:
        raise RuntimeError("events API down")

    with pytest.raises(WaitTimeout, match=r"last seen: no matching objects$"):
        wait_until(src, lambda s: bool(s), timeout=3, what="anything", options=opts(clock, on_timeout=boom))


def test_watches_that_close_at_once_back_off_instead_of_spinning() -> None:
    clock = FakeClock()
    slept: list[float] = []

    class Closing(ScriptedSource):
        def watch(self, resource_version: str, timeout_s: float) -> Iterator[WatchStreamEvent]:
            self.watch_rvs.append(resource_version)
            return iter(())  # closes immediately, no time passes

    src = Closing(clock, [([], "1")] * 100, [])

    def fake_sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    o = WaitOptions(clock=clock, backoff=RetryPolicy(sleep=fake_sleep, rng=lambda: 0.0, max_delay_s=2.0))
    with pytest.raises(WaitTimeout):
        wait_until(src, lambda s: bool(s), timeout=10, what="x", options=o)
    assert slept and sum(slept) == pytest.approx(10.0)
    assert len(src.watch_rvs) < 20


def test_describe_pod_shows_container_states() -> None:
    p = pod("a", 1, node="n1", containerStatuses=[
        {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}},
        {"name": "d", "state": {"terminated": {"reason": "Error", "exitCode": 127}}},
    ])
    text = describe_pod(p)
    assert "container c waiting CrashLoopBackOff: back-off 10s" in text
    assert "container d terminated Error exit 127" in text
    assert "not bound" not in text


def test_pod_timeline_server_mode_prefers_server_timestamps_and_falls_back_to_observation() -> None:
    t0 = datetime(2026, 11, 26, 17, 58, tzinfo=UTC)
    seen = [t0 + timedelta(seconds=30)]
    tl = PodTimeline(now=lambda: seen[0], source="server")
    p = pod("a", 1)
    p["metadata"]["creationTimestamp"] = "2026-11-26T17:58:00Z"
    tl.observe(p, "ADDED")
    p2 = pod("a", 2, node="n1")  # bound, but no PodScheduled condition: observation time counts
    p2["metadata"]["creationTimestamp"] = "2026-11-26T17:58:00Z"
    seen[0] = t0 + timedelta(seconds=2)
    tl.observe(p2, "MODIFIED")
    p3 = pod("a", 3, phase="Running", ready=True, node="n1", containerStatuses=[
        {"name": "c", "state": {"running": {"startedAt": "2026-11-26T17:58:04Z"}}}])
    p3["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T17:58:05Z"}]
    seen[0] = t0 + timedelta(seconds=9)
    tl.observe(p3, "MODIFIED")
    tl.observe(p3, "DELETED")
    (s,) = tl.samples()
    assert (s.to_scheduled_s, s.to_running_s, s.to_ready_s) == (2.0, 4.0, 5.0)


def test_pod_timeline_feeds_from_a_wait_one_sample_per_pod() -> None:
    clock = FakeClock()
    pods = [pod(n, i) for i, n in enumerate(["a", "b", "c"], start=1)]
    src = ScriptedSource(clock, [(pods, "3")], [[
        (0.1, WatchStreamEvent("MODIFIED", pod(n, 10 + i, phase="Running", ready=True, node="n1")))
        for i, n in enumerate(["a", "b", "c"])
    ]])
    tl = PodTimeline()
    wait_until(src, lambda s: all(p["status"]["phase"] == "Running" for p in s.values()), timeout=5,
               what="all running", options=opts(clock, observe=tl.observe))
    samples = tl.samples()
    assert [s.name for s in sorted(samples, key=lambda s: s.name)] == ["a", "b", "c"]
    assert all(s.ready is not None and s.scheduled is not None for s in samples)


def test_pod_timeline_observed_mode_uses_one_clock_with_subsecond_resolution() -> None:
    t0 = datetime(2026, 11, 26, 17, 58, tzinfo=UTC)
    seen = [t0]
    tl = PodTimeline(now=lambda: seen[0])
    p = pod("a", 1)
    p["metadata"]["creationTimestamp"] = "2026-11-26T17:57:00Z"  # another clock, whole seconds: ignored
    tl.observe(p, "ADDED")
    seen[0] = t0 + timedelta(milliseconds=120)
    p2 = pod("a", 2, node="n1")
    p2["status"]["conditions"] = [{"type": "PodScheduled", "status": "True",
                                   "lastTransitionTime": "2026-11-26T17:59:00Z"}]
    tl.observe(p2, "MODIFIED")
    seen[0] = t0 + timedelta(milliseconds=450)
    p3 = pod("a", 3, phase="Running", ready=True, node="n1")
    p3["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T18:00:00Z"}]
    tl.observe(p3, "MODIFIED")
    (s,) = tl.samples()
    assert (s.to_scheduled_s, s.to_running_s, s.to_ready_s) == (0.12, 0.45, 0.45)


class LaggingSource:
    """A list-watch whose watch stream delivers nothing until the recorder's final LIST has been taken.

    That is the order a loaded machine produces (issue 14: ``18 samples, expected 20``): the caller's own wait
    already saw every pod Ready while the recorder's stream had not delivered their events yet.
    """

    description = "pods in namespace ns"

    def __init__(self, names: list[str], *, deliver: bool = True) -> None:
        import threading

        self.names, self.deliver = names, deliver
        self.lists = 0
        self.final_list_taken = threading.Event()
        self.history = [WatchStreamEvent("ADDED", pod(n, 10 + i)) for i, n in enumerate(names)]
        self.history += [WatchStreamEvent("MODIFIED", pod(n, 20 + i, node="n1")) for i, n in enumerate(names)]
        self.history += [WatchStreamEvent("MODIFIED", pod(n, 30 + i, phase="Running", ready=True, node="n1"))
                         for i, n in enumerate(names)]

    def list(self) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        if self.lists == 1:
            return [], "1"  # the recorder's first LIST: nothing created yet
        self.final_list_taken.set()
        return [pod(n, 30 + i, phase="Running", ready=True, node="n1") for i, n in enumerate(self.names)], "40"

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[WatchStreamEvent]:
        self.final_list_taken.wait(timeout=30)
        if self.deliver:
            yield from (ev for ev in self.history
                        if int(ev.object["metadata"]["resourceVersion"]) > int(resource_version))
        else:
            self.final_list_taken.wait(timeout=30)  # a stream that never delivers: must not block the end


def test_recorder_catches_up_before_it_stops_so_no_sample_is_lost() -> None:
    from checks.kube.wait import record_from

    src = LaggingSource([f"stress-{i}" for i in range(20)])
    with record_from(src) as tl:
        pass  # the pods were created and seen Ready elsewhere; nothing reached the recorder yet
    samples = tl.samples()
    assert len(samples) == 20
    assert all(None not in (s.created, s.scheduled, s.running, s.ready) for s in samples)
    assert tl.recorder is not None and tl.recorder.folded_late == 0


def test_recorder_whose_stream_never_delivers_still_has_every_pod_from_the_final_list() -> None:
    from checks.kube.wait import record_from

    src = LaggingSource(["a", "b"], deliver=False)
    with record_from(src, catch_up_s=0) as tl:
        pass
    assert sorted(s.name for s in tl.samples()) == ["a", "b"]
    assert tl.recorder is not None and tl.recorder.folded_late == 2
