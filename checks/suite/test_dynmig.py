"""DynamicMIG: MIG devices created on demand (upstream test_gpu_dynmig.bats DM1–DM5) plus the roadmap's
TC-MIG-DYN-004 (over-capacity) and TC-MIG-DYN-005 (fragmentation), with expectations from the MIG oracle.

The oracle (:mod:`checks.mig`) is asked about the GPU model the slices report (``productName``), never about
the instance type, so the same check runs on any DynamicMIG-capable GPU. All MIG requests of a check are
pinned to one parent GPU with a CEL selector on ``parentUUID`` so the oracle's single-GPU prediction applies.

Real-driver notes: upstream checks that MIG mode is disabled again after each test through ``nvmm``, which is a
no-op stub on Lambda (upstream-e2e-tests.md §4.3) — not ported. Ampere GPUs publish partitions only when MIG
mode was on before the plugin started (nvidia-dra-driver.md §4.5); the plugin skips with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from checks.driver import names
from checks.mig import GpuGeometry, Placement, capacity_ok, fits, fragmentation_blocker, gpu, predict_sequence
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.scenarios.driverconfig import DYNAMIC_MIG, DYNAMIC_MIG_TIMESLICING
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.dynmig, pytest.mark.mig, pytest.mark.needs(dynmig=True), pytest.mark.driver(DYNAMIC_MIG)]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Parent:
    """The physical GPU a check's MIG requests are pinned to."""

    uuid: str
    """Its ``GPU-…`` UUID (the ``parentUUID`` of its MIG devices)."""
    minor: int
    """Its minor (from the MIG device names)."""
    geo: GpuGeometry
    """The oracle's geometry for its ``productName``."""


def _parent(ctx: CheckContext) -> Parent:
    migs = R.mig_devices(ctx.gpu_devices())
    assert migs, "DynamicMIG is on but no type=mig device is published"
    first = min(migs, key=lambda m: (m.node, m.minor))
    return Parent(first.parent_uuid, first.minor, gpu(first.product))


def _mig_pod(ctx: CheckContext, name: str, claim: str) -> Obj:
    return M.pod(name, ctx.labels, [M.container(claims=["mig"], image=M.MIG_IMAGE)],
                 claims={"mig": ("claim", claim)}, grace_s=5)


def _allocated_mig(ctx: CheckContext, claim: Obj) -> R.MigDevice:
    (res,) = R.allocation_results(claim)
    dev = R.find_device(ctx.gpu_devices(), res)
    assert dev is not None, f"allocated device {res} is in no slice"
    (mig,) = R.mig_devices([dev])
    return mig


def _assert_sees(ctx: CheckContext, pod: str, mig: R.MigDevice, container: str | None = None) -> str:
    """The container prints exactly the parent GPU line and one MIG line of the allocated profile."""
    log = ctx.logs(pod, container)
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert len(lines) == 2, f"{pod}/{container}: expected parent + MIG line, got {lines!r}"
    parents = R.gpu_uuids(log)
    assert parents == [mig.parent_uuid], f"{pod}: parent {parents} != slice parentUUID {mig.parent_uuid}"
    ((profile, mig_uuid),) = R.mig_lines(log)
    assert profile == mig.profile, f"{pod}: nvidia-smi shows {profile}, allocated {mig.profile} ({mig.name})"
    return mig_uuid


@pytest.mark.fastfeedback
@pytest.mark.version_specific
def test_dynmig_slices(ctx: CheckContext) -> None:
    """DM1 + DM2 (every device, not only the first): full GPUs carry the 11 GPU keys, MIG devices the 12
    DynamicMIG keys (no ``uuid``); each GPU publishes exactly one device per (profile, placement) the oracle
    knows, named ``gpu-<minor>-mig-<profile>-<id>-<start>``, each consuming counters of its parent's set."""
    devices = ctx.gpu_devices()
    problems: list[str] = []
    by_parent: dict[tuple[str, str], list[R.MigDevice]] = {}
    for d in devices:
        where = f"{d['_node']}/{d['name']}"
        typ = R.device_type(d)
        expected = names.ATTR_KEYS_GPU if typ == "gpu" else names.ATTR_KEYS_DYNAMIC_MIG
        problems += [f"{where}: {p}" for p in R.attribute_key_problems(d, expected)]
        problems += [f"{where}: {p}" for p in R.version_problems(d)]
    for m in R.mig_devices(devices):
        by_parent.setdefault((m.node, m.parent_uuid), []).append(m)
    for (node, uuid), migs in sorted(by_parent.items()):
        got = {m.name for m in migs}
        want = R.published_mig_names(gpu(migs[0].product), migs[0].minor)
        if got != want or len({m.minor for m in migs}) != 1:
            problems.append(f"{node} GPU {uuid}: missing {sorted(want - got)}, unexpected {sorted(got - want)}")
    for d in devices:
        if R.device_type(d) == "mig":
            sets = {c.get("counterSet") for c in d.get("consumesCounters") or []}
            minor = R.mig_devices([d])[0].minor
            if sets != {names.counter_set_name(minor)}:
                problems.append(f"{d['_node']}/{d['name']}: consumes {sets}, not {names.counter_set_name(minor)}")
    assert by_parent, "no DynamicMIG device published"
    assert not problems, "\n".join(problems)


def _one_mig(ctx: CheckContext, config: list[Obj] | None = None) -> None:
    parent = _parent(ctx)
    profile = R.smallest_profile(parent.geo)
    ctx.apply(M.claim("rc-mig1g", ctx.labels,
                      M.claim_spec([M.request("mig", M.MIG_CLASS, selectors=R.parent_selector(parent.uuid, profile))],
                                   config=config)),
              _mig_pod(ctx, "pod-mig1g", "rc-mig1g"))
    ctx.pod_ready("pod-mig1g")
    mig = _allocated_mig(ctx, ctx.get("resourceclaims", "rc-mig1g"))
    assert mig.parent_uuid == parent.uuid and mig.profile == profile
    ctx.record.update(device=mig.name, mig_uuid=_assert_sees(ctx, "pod-mig1g", mig))


@pytest.mark.fastfeedback
def test_one_pod_one_mig(ctx: CheckContext) -> None:
    """DM3 ``DynMIG: 1 pod, 1 MIG``: two lines, the parent's UUID == the device's ``parentUUID`` and the MIG
    line's profile == the allocated device's (upstream: both prefixes and a line count)."""
    _one_mig(ctx)


@pytest.mark.fastfeedback
def test_one_pod_two_containers_two_migs(ctx: CheckContext) -> None:
    """DM4 ``DynMIG: 1 pod, 2 containers (1 MIG each)``: two requests of different profiles on one GPU, each
    container sees only its own request's MIG device, and the MIG UUIDs differ."""
    parent = _parent(ctx)
    small = R.smallest_profile(parent.geo)
    big = R.profile_of_class(parent.geo, "3g")
    spec = M.claim_spec([M.request("mig1", M.MIG_CLASS, selectors=R.parent_selector(parent.uuid, small)),
                         M.request("mig2", M.MIG_CLASS, selectors=R.parent_selector(parent.uuid, big))])
    ctx.apply(M.claim("rc-migdevs", ctx.labels, spec),
              M.pod("pod-2mig", ctx.labels, [M.container("ctr0", claims=[("migdevs", "mig1")], image=M.MIG_IMAGE),
                                             M.container("ctr1", claims=[("migdevs", "mig2")], image=M.MIG_IMAGE)],
                    claims={"migdevs": ("claim", "rc-migdevs")}, grace_s=5))
    ctx.pod_ready("pod-2mig")
    claim = ctx.get("resourceclaims", "rc-migdevs")
    devices = ctx.gpu_devices()
    by_request = {}
    for res in R.allocation_results(claim):
        dev = R.find_device(devices, res)
        assert dev is not None
        by_request[res["request"]] = R.mig_devices([dev])[0]
    assert sorted(by_request) == ["mig1", "mig2"]
    u0 = _assert_sees(ctx, "pod-2mig", by_request["mig1"], "ctr0")
    u1 = _assert_sees(ctx, "pod-2mig", by_request["mig2"], "ctr1")
    assert u0 != u1


@pytest.mark.fastfeedback
@pytest.mark.driver(DYNAMIC_MIG_TIMESLICING)
def test_one_mig_with_timeslicing_config(ctx: CheckContext) -> None:
    """DM5 ``DynMIG: 1 pod, 1 MIG + TimeSlicing config``: a ``MigDeviceConfig`` with TimeSlicing validates and
    prepares (it has no effect on MIG, §14.3); the checks of DM3 hold."""
    cfg = M.gpu_config(["mig"], strategy="TimeSlicing", kind="MigDeviceConfig")
    _one_mig(ctx, config=[cfg])


# -- TC-MIG-DYN-004 / 005 ------------------------------------------------------------------------------------


@dataclass
class Filled:
    """MIG claims created one by one on a parent, with where the oracle said and the scheduler put them."""

    placements: dict[Placement, int]
    """Actual placement → index of the claim/pod holding it."""
    predicted: list[str]
    """Oracle device names, in request order."""
    actual: list[str]
    """Allocated device names, in request order."""


def _fill(ctx: CheckContext, parent: Parent, profile: str, count: int) -> Filled:
    """Create ``count`` claims+pods for ``profile`` on ``parent`` one at a time, each allocated before the
    next is created (so arrival order is the scheduler's order), and compare with the oracle."""
    steps = predict_sequence(parent.geo, parent.minor, [profile] * count)
    spec = M.claim_spec([M.request("mig", M.MIG_CLASS, selectors=R.parent_selector(parent.uuid, profile))])
    out = Filled({}, [s.device or "-" for s in steps], [])
    for i, step in enumerate(steps):
        assert step.placement is not None, f"oracle: request {i + 1} of {count}× {profile} does not fit"
        ctx.apply(M.claim(f"mig-{i}", ctx.labels, spec), _mig_pod(ctx, f"mig-{i}", f"mig-{i}"))
        mig = _allocated_mig(ctx, ctx.claim_allocated(f"mig-{i}"))
        out.actual.append(mig.name)
        out.placements[R.placement_of(mig.name, parent.geo)] = i
    return out


def _free(ctx: CheckContext, indexes: list[int]) -> None:
    """Delete the pods and claims ``mig-<i>`` (all deletes first, then the waits, so it is quick)."""
    for i in indexes:
        ctx.delete("pods", f"mig-{i}", wait=False)
        ctx.delete("resourceclaims", f"mig-{i}", wait=False)
    for i in indexes:
        ctx.gone("resourceclaims", f"mig-{i}")
        ctx.gone("pods", f"mig-{i}")


@pytest.mark.roadmap(6)
def test_mig_over_capacity(ctx: CheckContext) -> None:
    """TC-MIG-DYN-004: N claims of the smallest profile land exactly where the oracle predicts (device names
    in scheduler order), every pod sees its MIG device, and claim N+1 stays Pending/Unschedulable with
    ``cannot allocate all claims`` — the oracle calls it over capacity (e.g. A100-40GB: 7× 1g.5gb, 8th Pending)."""
    parent = _parent(ctx)
    profile = R.smallest_profile(parent.geo)
    n = parent.geo.profile(profile).max_instances
    extra = predict_sequence(parent.geo, parent.minor, [profile] * (n + 1))[-1]
    assert extra.placement is None and extra.result.kind == "over_capacity", extra.result
    filled = _fill(ctx, parent, profile, n)
    ctx.record.update(gpu=parent.geo.key, profile=profile, predicted=filled.predicted, actual=filled.actual,
                      extra_reason=extra.result.reason)
    assert filled.actual == filled.predicted
    for i in range(n):
        ctx.pod_ready(f"mig-{i}")
        _assert_sees(ctx, f"mig-{i}", _allocated_mig(ctx, ctx.get("resourceclaims", f"mig-{i}")))
    spec = M.claim_spec([M.request("mig", M.MIG_CLASS, selectors=R.parent_selector(parent.uuid, profile))])
    ctx.apply(M.claim("mig-extra", ctx.labels, spec), _mig_pod(ctx, "mig-extra", "mig-extra"))
    pod = ctx.pod_unschedulable("mig-extra")
    assert not R.unschedulable_problems(pod), R.unschedulable_problems(pod)
    assert not R.allocation_results(ctx.get("resourceclaims", "mig-extra"))


@pytest.mark.roadmap(6)
def test_mig_fragmentation(ctx: CheckContext) -> None:
    """TC-MIG-DYN-005: fill the GPU with the smallest profile, free all but the oracle's
    ``fragmentation_blocker`` for the 3g profile (e.g. 1g at two slices, one in each 3g window), then a 3g
    request stays Unschedulable although capacity suffices (``fits(...).kind == fragmentation``); freeing
    the blockers lets the same pending pod allocate a 3g device at a placement the oracle allows."""
    parent = _parent(ctx)
    geo = parent.geo
    small = R.smallest_profile(geo)
    big = R.profile_of_class(geo, "3g")
    blocker = fragmentation_blocker(geo, big)
    assert blocker, f"oracle: no fragmentation blocker for {big} on {geo.key}"
    verdict = fits(geo, big, blocker)
    assert verdict.kind == "fragmentation", verdict
    assert capacity_ok(geo, [pl.profile for pl in blocker] + [big]), "oracle: capacity should suffice"
    filled = _fill(ctx, parent, small, geo.profile(small).max_instances)
    missing = [pl for pl in blocker if pl not in filled.placements]
    assert not missing, f"blocker {missing} not among the filled placements {sorted(filled.placements)}"
    keep = [filled.placements[pl] for pl in blocker]
    _free(ctx, [i for i in filled.placements.values() if i not in keep])
    spec = M.claim_spec([M.request("mig", M.MIG_CLASS, selectors=R.parent_selector(parent.uuid, big))])
    ctx.apply(M.claim("mig-big", ctx.labels, spec), _mig_pod(ctx, "mig-big", "mig-big"))
    pod = ctx.pod_unschedulable("mig-big")
    assert not R.unschedulable_problems(pod), R.unschedulable_problems(pod)
    assert not R.allocation_results(ctx.get("resourceclaims", "mig-big"))
    ctx.record.update(gpu=geo.key, blocker=[str(pl) for pl in blocker], verdict=verdict.reason)
    _free(ctx, keep)
    mig = _allocated_mig(ctx, ctx.claim_allocated("mig-big"))
    landed = R.placement_of(mig.name, geo)
    assert landed in fits(geo, big, []).placements and mig.parent_uuid == parent.uuid, mig
    ctx.pod_ready("mig-big")
    _assert_sees(ctx, "mig-big", mig)
    ctx.record["big_landed"] = str(landed)
