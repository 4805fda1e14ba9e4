"""The run lock's staleness rules on fake time (the API side is in test_reliability.py against a twin)."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from checks.kube.client import ClusterClient
from checks.kube.lease import HOLDER_PROCESS_ANNOTATION, LeaseSettings, RunLock, _Seen, process_gone, this_process

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def lease(holder: str, renew: datetime, process: str = "elsewhere:1") -> dict[str, Any]:
    return {"metadata": {"annotations": {HOLDER_PROCESS_ANNOTATION: process}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30,
                     "renewTime": renew.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


def lock(clock: Clock, now: datetime) -> RunLock:
    return RunLock(cast(ClusterClient, None), "r20261203-120000-aaaa", LeaseSettings(clock=clock, wall=lambda: now))


def test_no_holder_or_expired_renewal_is_stale() -> None:
    clock = Clock()
    assert lock(clock, T0).is_stale(lease("", T0))
    assert not lock(clock, T0 + timedelta(seconds=29)).is_stale(lease("r-other", T0))
    assert lock(clock, T0 + timedelta(seconds=31)).is_stale(lease("r-other", T0))


def test_unchanged_while_watched_for_a_duration_is_stale_whatever_the_clocks_say() -> None:
    clock = Clock()
    lk = lock(clock, T0)  # its wall clock says the renewal is fresh (another machine's clock may run ahead)
    held = lease("r-other", T0)
    seen = _Seen("r-other", held["spec"]["renewTime"], clock())
    clock.t += 29
    assert not lk.is_stale(held, seen)
    clock.t += 2
    assert lk.is_stale(held, seen)
    renewed = lease("r-other", T0 + timedelta(seconds=10))
    assert not lk.is_stale(renewed, seen)  # a renewal since: alive


def test_a_holder_process_gone_on_this_host_is_stale_at_once() -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = f"{socket.gethostname()}:{proc.stdout.strip()}"
    assert process_gone(dead) and not process_gone(this_process()) and not process_gone("other-host:1")
    assert lock(Clock(), T0).is_stale(lease("r-killed", T0, process=dead))
    assert not lock(Clock(), T0).is_stale(lease("r-alive", T0, process=this_process()))
