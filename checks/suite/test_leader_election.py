"""Controller leader election (roadmap item 4; upstream test_cd_leader_election.bats LE1–LE2), on every GPU type.

The roadmap enables compute domains precisely to get the controller, so this runs on any GPU (a single node is
enough): ``controller.replicas=2``, ``controller.leaderElection.enabled=true``, compute domains on. On nodes
without IMEX the CD kubelet-plugin container still runs (it falls back to "no clique", reference §11.5).

Stronger than upstream: LE1 only checked that *some* holder exists; here the Lease holder must be exactly the
one controller pod that logged ``Successfully acquired lease`` (the other must log that it is not the leader and
hold nothing), the holder identity must be ``<pod>-<uuid>``, and LE2's failover is timed from the leader's
deletion to a *different* holder (results.json ``timings.failover_s``), with the new leader's own
``Successfully acquired lease`` line.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from checks.driver import names
from checks.kube import objects as K
from checks.kube import wait as W
from checks.suite import driverio as D
from checks.suite.context import CheckContext
from checks.suite.test_basics import COMPUTE_DOMAINS

pytestmark = [pytest.mark.fastfeedback, pytest.mark.leader_election, pytest.mark.driver(COMPUTE_DOMAINS),
              pytest.mark.roadmap(4)]

ACQUIRED = "Successfully acquired lease"
HOLDER = re.compile(r"^(?P<pod>.+)-(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
"""Holder identity ``<POD_NAME>-<random UUID>`` (§8)."""
Obj = dict[str, Any]


def _controllers(ctx: CheckContext, count: int = 2) -> list[Obj]:
    return W.wait_pods_ready(ctx.cluster, names.NAMESPACE, D.CONTROLLER_SELECTOR, count=count,
                             timeout=ctx.timeout(60))


def _holder(ctx: CheckContext, differs_from: str = "", timeout: float = 60) -> str:
    """Wait for a non-empty holder (different from ``differs_from``) that maps to a controller pod."""
    source = W.source_for(ctx.cluster, "leases", names.NAMESPACE, field_selector=f"metadata.name={names.LEASE_NAME}")
    lease = W.wait_for(source, lambda o: bool((o.get("spec") or {}).get("holderIdentity"))
                       and (o.get("spec") or {}).get("holderIdentity") != differs_from,
                       timeout=ctx.timeout(timeout), what=f"Lease {names.LEASE_NAME} held"
                       + (f" by someone other than {differs_from}" if differs_from else ""))
    return str(lease["spec"]["holderIdentity"])


def _pod_of(holder: str) -> str:
    m = HOLDER.match(holder)
    assert m, f"holder identity {holder!r} is not <pod>-<uuid>"
    return m.group("pod")


def test_exactly_one_leader(ctx: CheckContext) -> None:
    """LE1: both replicas Ready; the Lease holder is ``<pod>-<uuid>`` of a Running controller pod; exactly that
    pod logged ``Successfully acquired lease`` for ``<ns>/<lease>``; the other did not."""
    pods = _controllers(ctx)
    holder = _holder(ctx)
    leader = _pod_of(holder)
    names_ = {p["metadata"]["name"] for p in pods}
    assert leader in names_, f"holder {holder} is none of {sorted(names_)}"
    K.log_until(ctx.cluster, names.NAMESPACE, leader, names.CONTAINER_CONTROLLER, lambda t: ACQUIRED in t,
                timeout=ctx.timeout(30))
    lock = f'lock="{names.NAMESPACE}/{names.LEASE_NAME}"'
    for name in names_:
        log = K.pod_log(ctx.cluster, names.NAMESPACE, name, names.CONTAINER_CONTROLLER)
        acquired = [ln for ln in log.splitlines() if ACQUIRED in ln]
        if name == leader:
            assert acquired and lock in acquired[-1], acquired
        else:
            assert not acquired, f"standby {name} also logged {ACQUIRED!r}: {acquired}"
    lease = K.get(ctx.cluster, "leases", names.LEASE_NAME, names.NAMESPACE)
    assert int(lease["spec"].get("leaseDurationSeconds") or 0) == 15, lease["spec"]
    ctx.record["leader"] = leader


def test_failover_after_leader_deleted(ctx: CheckContext) -> None:
    """LE2: force-delete the leader; a *different* pod becomes holder (timed), logs ``Successfully acquired
    lease``, and the Deployment is back to two Ready replicas."""
    _controllers(ctx)
    holder = _holder(ctx)
    leader = _pod_of(holder)
    started = time.monotonic()
    K.delete(ctx.cluster, "pods", leader, names.NAMESPACE, grace_period_s=0)
    new_holder = _holder(ctx, differs_from=holder, timeout=60)
    failover = time.monotonic() - started
    new_leader = _pod_of(new_holder)
    assert new_leader != leader, (holder, new_holder)
    K.log_until(ctx.cluster, names.NAMESPACE, new_leader, names.CONTAINER_CONTROLLER, lambda t: ACQUIRED in t,
                timeout=ctx.timeout(30))
    pods = _controllers(ctx)
    assert leader not in {p["metadata"]["name"] for p in pods}
    ctx.record["timings"] = {"leader_failover_s": round(failover, 2)}
    ctx.record.update({"old_leader": leader, "new_leader": new_leader})
