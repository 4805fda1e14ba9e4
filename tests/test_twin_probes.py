"""Container probes: threshold/timing semantics on a fake clock, readiness gating Ready and liveness restarts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from checks.twin.lambda_twin import Twin
from kubetwin.api.resources import core
from kubetwin.kubelet.probes import ProbeSpec, ProbeState
from kubetwin.kubelet.sandbox import namespaces_available
from tests.test_twin_kubelet import NS, PODS, wait_for

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def test_probe_state_initial_delay_period_and_thresholds() -> None:
    st = ProbeState(ProbeSpec.of("liveness", {"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2,
                                              "successThreshold": 1, "exec": {"command": ["true"]}}), T0)
    assert not st.due(_at(4.9)) and st.due(_at(5))
    assert st.record(False, _at(5)) is None and st.result is None  # one failure is below the threshold
    assert not st.due(_at(6.9)) and st.due(_at(7))
    assert st.record(False, _at(7)) is False and st.result is False
    ready = ProbeState(ProbeSpec.of("readiness", {"successThreshold": 2, "failureThreshold": 1}), T0)
    assert ready.record(True, _at(0)) is None and ready.result is None  # not ready until 2 successes
    assert ready.record(True, _at(10)) is True
    assert ready.record(False, _at(20)) is False
    spec = ProbeSpec.of("startup", {})
    assert (spec.period_s, spec.timeout_s, spec.success_threshold, spec.failure_threshold) == (10, 1, 1, 3)


@pytest.fixture
def ns(twin: Twin) -> str:
    name = "p-" + uuid.uuid4().hex[:8]
    twin.api.create(NS, None, {"metadata": {"name": name}})
    return name


def _ready(p: dict[str, Any] | None) -> bool:
    conds = {c["type"]: c["status"] for c in ((p or {}).get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True"


def _events(twin: Twin, ns: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in twin.api.list(core("events"), ns)[0]]


def _wait_event(twin: Twin, ns: str, reason: str, message: str, timeout: float = 15.0) -> None:
    """Watch the namespace's events until one has ``reason`` and ``message``."""
    api = twin.api
    w = api.watch(core("events"), ns)
    try:
        deadline = api.monotonic() + timeout
        while (reason, message) not in _events(twin, ns):
            if api.monotonic() > deadline:
                raise AssertionError(f"no event {reason}: {message!r}; got {_events(twin, ns)}")
            w.next(timeout=max(0.0, deadline - api.monotonic()))
    finally:
        w.stop()


@pytest.mark.skipif(not namespaces_available(), reason="needs the container's private /tmp (mount namespaces)")
def test_readiness_gates_ready_and_liveness_restarts(twin: Twin, ns: str) -> None:
    api = twin.api
    probe = {"periodSeconds": 1, "failureThreshold": 1}
    api.create(PODS, ns, {"metadata": {"name": "web"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [
        {"name": "app", "image": "ubuntu:24.04",
         "command": ["bash", "-c", "touch /tmp/alive; trap 'exit 0' TERM; sleep infinity & wait"],
         "ports": [{"name": "http", "containerPort": 8080}],
         "readinessProbe": {**probe, "exec": {"command": ["cat", "/tmp/ready"]}},
         "livenessProbe": {**probe, "exec": {"command": ["test", "-f", "/tmp/alive"]}}}]}})
    p = wait_for(api, PODS, ns, "web", lambda p: bool(p and (p["status"].get("containerStatuses") or [{}])[0]
                                                      .get("started")), what="container started")
    assert not _ready(p)
    _wait_event(twin, ns, "Unhealthy", "Readiness probe failed: cat: /tmp/ready: No such file or directory")
    k = twin.kubelets[twin.node_names[0]]
    spec = k.exec_spec(ns, "web", "app")
    assert spec is not None and spec.sandbox is not None
    spec.sandbox.host_path("/tmp/ready").write_text("ok\n")  # what `kubectl exec web -- touch /tmp/ready` does
    wait_for(api, PODS, ns, "web", _ready, what="Ready")
    spec.sandbox.host_path("/tmp/alive").unlink()
    p = wait_for(api, PODS, ns, "web", lambda p: bool(p and (p["status"].get("containerStatuses") or [{}])[0]
                                                      .get("restartCount", 0) >= 1), what="liveness restart")
    _wait_event(twin, ns, "Killing", "Container app failed liveness probe, will be restarted")
    assert ("Unhealthy", "Liveness probe failed: ") in _events(twin, ns)
