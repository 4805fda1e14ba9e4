"""checks.scenarios.readers: the pure pieces every check's assertion rests on, against slices the driver model
builds."""

from __future__ import annotations

from typing import Any

import pytest

from checks.driver import names
from checks.driver import slices as driver_slices
from checks.mig import Placement, fits, fragmentation_blocker, gpu, predict_sequence
from checks.scenarios import readers as R

Obj = dict[str, Any]


def _dev(attrs: dict[str, Obj], name: str = "gpu-0", pool: str = "node-a") -> Obj:
    return {"name": name, "attributes": attrs, "_pool": pool, "_node": pool}


GOOD = {k: {"string": "x"} for k in names.ATTR_KEYS_GPU} | {
    "driverVersion": {"version": "570.158.1"}, "cudaDriverVersion": {"version": "12.8.0"},
    "cudaComputeCapability": {"version": "9.0.0"}, "type": {"string": "gpu"},
    "uuid": {"string": "GPU-1"}}


@pytest.mark.parametrize("text,ok", [
    ("570.158.1", True), ("12.8.0", True), ("1.0.0-rc.1+build.5", True),
    ("570.158.01", False), ("12.8", False), ("v1.2.3", False), ("1.2.3.4", False), ("", False)])
def test_semver(text: str, ok: bool) -> None:
    assert R.is_semver(text) is ok


def test_attribute_keys_exact_with_optional_numa() -> None:
    assert R.attribute_key_problems(_dev(GOOD), names.ATTR_KEYS_GPU) == []
    numa = _dev(GOOD | {names.NUMA_NODE_ATTR: {"int": 0}})
    assert R.attribute_key_problems(numa, names.ATTR_KEYS_GPU) == []
    broken = {k: v for k, v in GOOD.items() if k != "brand"} | {"index": {"int": 0}}
    assert R.attribute_key_problems(_dev(broken), names.ATTR_KEYS_GPU) == ["missing brand", "unexpected index"]


def test_version_problems() -> None:
    assert R.version_problems(_dev(GOOD)) == []
    bad = GOOD | {"driverVersion": {"version": "570.158.01"}, "cudaDriverVersion": {"string": "12.8.0"}}
    assert R.version_problems(_dev(bad)) == ["driverVersion='570.158.01' is not valid semver",
                                             "cudaDriverVersion is a string, not a version"]


def _h100(minor: int) -> driver_slices.GpuFacts:
    return driver_slices.GpuFacts(minor=minor, index=minor, uuid=f"GPU-0000000{minor}-1111-2222-3333-444444444444",
                      product_name="NVIDIA H100 80GB HBM3", brand="Nvidia", architecture="Hopper",
                      cuda_compute_capability="9.0", driver_version="570.158.01", cuda_driver_version="12.8",
                      pci_bus_id=f"0000:1{minor}:00.0", pcie_root="pci0000:15", numa_node=0,
                      memory_bytes=81559 * 2**20, addressing_mode="HMM", mig=gpu("NVIDIA H100 80GB HBM3"))


def _objects(pub: driver_slices.Publication, node: str = "node-a") -> list[Obj]:
    return [{"metadata": {"name": f"{i:05x}-{node}"}, "spec": spec} for i, spec in enumerate(pub.specs)]


@pytest.mark.parametrize("gates", [{}, {"DynamicMIG": True}])
def test_driver_model_slices_pass_the_checks(gates: dict[str, bool]) -> None:
    """Slices the driver model publishes (what the twin serves) satisfy every rule the slice checks apply, so
    the suite's rules and the driver facts agree; tampered copies fail them."""
    slices = _objects(driver_slices.publish("node-a", [_h100(0), _h100(1)], gates, 36))
    assert R.pool_layout_problems(slices) == []
    devices = R.slice_devices(slices)
    for d in devices:
        want = names.ATTR_KEYS_GPU if R.device_type(d) == "gpu" else names.ATTR_KEYS_DYNAMIC_MIG
        assert R.attribute_key_problems(d, want) == [], d["name"]
        assert R.version_problems(d) == [], d["name"]
    migs = R.mig_devices(devices)
    if gates:
        for minor in (0, 1):
            names_here = {m.name for m in migs if m.minor == minor}
            assert names_here == R.published_mig_names(gpu("H100-SXM5-80GB"), minor)
    else:
        assert migs == []
    slices[-1]["spec"]["pool"]["generation"] = 7
    assert any("disagree on generation" in p for p in R.pool_layout_problems(slices)) == (len(slices) > 1)
    slices[0]["spec"]["pool"]["resourceSliceCount"] = 9
    assert any("resourceSliceCount" in p for p in R.pool_layout_problems(slices))


def _slice(name: str, pool: str, node: str | None, devices: list[Obj], *, gen: int = 1, count: int = 1) -> Obj:
    spec: Obj = {"driver": names.GPU_DRIVER, "pool": {"name": pool, "generation": gen, "resourceSliceCount": count},
                 "devices": devices}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


def test_pool_layout_problems() -> None:
    ok = [_slice("s1", "node-a", "node-a", [{"name": "gpu-0"}]),
          _slice("s2", "node-b", "node-b", [{"name": "gpu-0"}])]
    assert R.pool_layout_problems(ok) == []
    bad = [_slice("s1", "pool-x", "node-a", [{"name": "gpu-0"}, {"name": "gpu-0"}], count=2),
           _slice("s2", "pool-x", "node-a", [], gen=2, count=2),
           _slice("s3", "node-c", None, [])]
    problems = R.pool_layout_problems(bad)
    assert "slice s1: pool 'pool-x' is not named after node 'node-a'" in problems
    assert "pool pool-x: slices disagree on generation ['1', '2']" in problems
    assert "pool pool-x: device gpu-0 published twice" in problems
    assert "slice s3: no spec.nodeName (node-local devices)" in problems
    other = [{"metadata": {"name": "cd"}, "spec": {"driver": names.CD_DRIVER, "pool": {"name": "p"}}}]
    assert R.pool_layout_problems(other) == []


def test_slice_devices_and_find_device() -> None:
    slices = [_slice("b", "node-a", "node-a", [{"name": "gpu-1"}]),
              _slice("a", "node-a", "node-a", [{"name": "gpu-0"}]),
              {"metadata": {"name": "c"}, "spec": {"driver": names.CD_DRIVER, "devices": [{"name": "channel-0"}]}}]
    devs = R.slice_devices(slices)
    assert [d["name"] for d in devs] == ["gpu-0", "gpu-1"]
    assert R.find_device(devs, {"pool": "node-a", "device": "gpu-1"}) is devs[1]
    assert R.find_device(devs, {"pool": "node-b", "device": "gpu-1"}) is None


@pytest.mark.parametrize("version,ok", [("v1.35.0", True), ("v1.36.2", True), ("v1.35.0-rc.1", True),
                                        ("v1.34.9", False), ("v2.0.0", True), ("garbage", False)])
def test_version_at_least(version: str, ok: bool) -> None:
    assert R.version_at_least(version, 1, 35) is ok


def _pod(phase: str, cond: Obj | None, node: str | None = None) -> Obj:
    return {"spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": [cond] if cond else []}}


def test_unschedulable_problems() -> None:
    msg = ("0/1 nodes are available: 1 cannot allocate all claims. still not schedulable, preemption: 0/1 nodes "
           "are available: 1 Preemption is not helpful for scheduling.")
    good = _pod("Pending", {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg})
    assert R.unschedulable_problems(good) == []
    sched_err = _pod("Pending", {"type": "PodScheduled", "status": "False", "reason": "SchedulerError",
                                 "message": "running \"DynamicResources\" filter plugin: CEL runtime error"})
    assert len(R.unschedulable_problems(sched_err)) == 2
    assert R.unschedulable_problems(_pod("Running", None, "node-a")) == [
        "phase is 'Running', not Pending", "bound to node node-a", "no PodScheduled condition"]


def test_mig_lines_and_devices() -> None:
    text = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)\n"
            "  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb-cccc)\n")
    assert R.mig_lines(text) == [("1g.10gb", "MIG-bbbb-cccc")]
    dev = _dev({"type": {"string": "mig"}, "profile": {"string": "1g.10gb"}, "parentUUID": {"string": "GPU-aaaa"},
                "productName": {"string": "NVIDIA H100 80GB HBM3"}}, name="gpu-3-mig-1g10gb-19-5")
    (m,) = R.mig_devices([dev, _dev(GOOD)])
    assert (m.minor, m.profile, m.start, m.parent_uuid) == (3, "1g.10gb", 5, "GPU-aaaa")
    assert R.placement_of(m.name, gpu(m.product)) == Placement("1g.10gb", 5)


def test_oracle_choices_for_the_mig_checks() -> None:
    """The profiles and sequences TC-MIG-DYN-004/005 rely on: 7× 1g fill the GPU in name order and the 8th
    is over capacity; the 3g blocker is a subset of those 7 placements and is fragmentation, not capacity."""
    for key in ("H100-SXM5-80GB", "A100-SXM4-40GB"):
        geo = gpu(key)
        small = R.smallest_profile(geo)
        assert geo.profile(small).profile_class == "1g"
        n = geo.profile(small).max_instances
        steps = predict_sequence(geo, 0, [small] * (n + 1))
        assert [s.placement.start for s in steps[:n] if s.placement] == list(range(n))
        assert steps[n].placement is None and steps[n].result.kind == "over_capacity"
        big = R.profile_of_class(geo, "3g")
        blocker = fragmentation_blocker(geo, big)
        assert blocker and {pl.profile for pl in blocker} == {small}
        assert {pl.start for pl in blocker} <= set(range(n))
        assert fits(geo, big, blocker).kind == "fragmentation"
    assert R.smallest_profile(gpu("A100-SXM4-40GB")) == "1g.5gb"
    with pytest.raises(LookupError):
        R.profile_of_class(gpu("H100-SXM5-80GB"), "5g")


def test_published_mig_names_match_the_driver_model() -> None:
    """What test_dynmig_slices expects per GPU equals the DynamicMIG devices the driver model publishes."""
    geo = gpu("H100-SXM5-80GB")
    want = R.published_mig_names(geo, 0)
    assert "gpu-0-mig-1g10gb-19-0" in want and "gpu-0-mig-7g80gb-0-0" in want
    assert "gpu-0-mig-1g10gb-me-20-6" in want
    assert len(want) == sum(len(p.starts) for p in geo.profiles)


def test_same_uuid_and_parent_selector() -> None:
    assert R.same_uuid([["GPU-1"], ["GPU-1"]])
    assert not R.same_uuid([["GPU-1"], ["GPU-2"]])
    assert not R.same_uuid([["GPU-1", "GPU-2"], ["GPU-1", "GPU-2"]])
    assert not R.same_uuid([])
    sel = R.parent_selector("GPU-1", "1g.10gb")
    assert sel == ["device.attributes['gpu.nvidia.com'].parentUUID == 'GPU-1'",
                   "device.attributes['gpu.nvidia.com'].profile == '1g.10gb'"]
