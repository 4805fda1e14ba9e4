"""The twin's structured-parameters allocator against kubernetes-dra.md §3 and nvidia-dra-driver.md §4.5."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from checks.mig.geometry import gpu
from kubetwin.scheduler.dra.allocator import (
    CANNOT_ALLOCATE,
    AllocatedState,
    AllocationOutcome,
    Features,
    allocate,
)
from tests.twin_dynmig import GPU_CLASS, MIG_CLASS, claim, dynmig_slices, exactly, node, profile_is

A100 = gpu("A100-SXM4-40GB")
H100 = gpu("H100-SXM5-80GB")
NODE = node("node-a")


def run(claims: list[dict[str, Any]], slices: list[dict[str, Any]], state: AllocatedState | None = None,
        classes: list[dict[str, Any]] | None = None, features: Features | None = None,
        the_node: dict[str, Any] | None = None) -> AllocationOutcome:
    return allocate(the_node or NODE, claims, slices=slices, classes=classes or [MIG_CLASS, GPU_CLASS],
                    allocated_state=state or AllocatedState(), features=features)


def devices_of(outcome: AllocationOutcome, i: int = 0) -> list[str]:
    assert outcome.allocations is not None, outcome
    return [r["device"] for r in outcome.allocations[i]["devices"]["results"]]


def full_gpu_slices(roots: list[str], node_name: str = "node-a", **device_extra: Any) -> list[dict[str, Any]]:
    """Default-mode slice (DynamicMIG off): one slice, one full GPU per entry of ``roots``."""
    devs = []
    for i, root in enumerate(roots):
        d = {"name": f"gpu-{i}", "attributes": {"type": {"string": "gpu"}, "uuid": {"string": f"GPU-{i}"},
                                                 "resource.kubernetes.io/pcieRoot": {"string": root}},
             "capacity": {"memory": {"value": "81559Mi"}}}
        d.update(copy.deepcopy(device_extra.get(f"gpu-{i}", {})))
        devs.append(d)
    return [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
             "metadata": {"name": f"00000-gpu.nvidia.com-{node_name}-abcde"},
             "spec": {"driver": "gpu.nvidia.com", "nodeName": node_name,
                      "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1}, "devices": devs}}]


# ---------------------------------------------------------------------------------------------
# A100-40GB DynamicMIG (issue acceptance)


def test_a100_1g5gb_claims_fill_placements_0_to_6_then_unschedulable() -> None:
    slices = dynmig_slices(A100, "node-a")
    assert not any(d["name"] == "gpu-0" for d in slices[1]["spec"]["devices"]), "Ampere hides the full GPU"
    state = AllocatedState()
    got: list[str | None] = []
    for i in range(8):
        out = run([claim(f"c{i}", [exactly("mig", "mig.nvidia.com", profile_is("1g.5gb"))])], slices, state)
        if out.ok:
            assert out.allocations is not None
            state.add_allocation(out.allocations[0])
            got.append(devices_of(out)[0])
        else:
            assert out.unschedulable == CANNOT_ALLOCATE and out.error is None
            got.append(None)
    assert got == [f"gpu-0-mig-1g5gb-19-{s}" for s in range(7)] + [None]

    from checks.mig.placement import predict_sequence

    steps = predict_sequence(A100, 0, ["1g.5gb"] * 8)
    assert [s.device for s in steps] == got


def test_a100_3g_blocked_by_1g_at_1_and_5_although_5_compute_slices_free() -> None:
    slices = dynmig_slices(A100, "node-a")
    state = AllocatedState(devices={("gpu.nvidia.com", "node-a", "gpu-0-mig-1g5gb-19-1"),
                                    ("gpu.nvidia.com", "node-a", "gpu-0-mig-1g5gb-19-5")})
    out = run([claim("big", [exactly("mig", "mig.nvidia.com", profile_is("3g.20gb"))])], slices, state)
    assert out.unschedulable == CANNOT_ALLOCATE

    from checks.mig.placement import Placement, fits

    oracle = fits(A100, "3g.20gb", [Placement("1g.5gb", 1), Placement("1g.5gb", 5)])
    assert oracle.kind == "fragmentation"
    # Freeing placement 5 makes the upper 3g placement (slices 4-7) available, as the oracle predicts.
    state.devices.discard(("gpu.nvidia.com", "node-a", "gpu-0-mig-1g5gb-19-5"))
    out = run([claim("big", [exactly("mig", "mig.nvidia.com", profile_is("3g.20gb"))])], slices, state)
    assert devices_of(out) == ["gpu-0-mig-3g20gb-9-4"]
    assert fits(A100, "3g.20gb", [Placement("1g.5gb", 1)]).placements[0].start == 4


def test_counters_of_allocated_devices_missing_from_slices_consume_nothing() -> None:
    slices = dynmig_slices(A100, "node-a")
    state = AllocatedState(devices={("gpu.nvidia.com", "node-a", "gpu-0-mig-7g40gb-0-0-gone")})
    out = run([claim("c", [exactly("mig", "mig.nvidia.com", profile_is("7g.40gb"))])], slices, state)
    assert devices_of(out) == ["gpu-0-mig-7g40gb-0-0"]


def test_h100_full_gpu_blocks_partitions_and_partition_blocks_full_gpu() -> None:
    slices = dynmig_slices(H100, "node-a")
    full = run([claim("full", [exactly("gpu", "gpu.nvidia.com")])], slices)
    assert devices_of(full) == ["gpu-0"]
    assert full.allocations is not None
    st = AllocatedState()
    st.add_allocation(full.allocations[0])
    blocked = run([claim("m", [exactly("mig", "mig.nvidia.com", profile_is("1g.10gb"))])], slices, st)
    assert blocked.unschedulable == CANNOT_ALLOCATE

    st2 = AllocatedState(devices={("gpu.nvidia.com", "node-a", "gpu-0-mig-1g10gb-19-6")})
    out = run([claim("full", [exactly("gpu", "gpu.nvidia.com")])], slices, st2)
    assert out.unschedulable == CANNOT_ALLOCATE


def test_backtracking_within_one_claim_reference_example() -> None:
    """§3.13: requests [a: 1-slice, b: 2-slice ×3] on an empty GPU end with a at the last 1g placement."""
    slices = dynmig_slices(A100, "node-a")
    c = claim("c", [exactly("a", "mig.nvidia.com", profile_is("1g.5gb")),
                    exactly("b", "mig.nvidia.com", profile_is("2g.10gb"), count=3)])
    out = run([c], slices)
    assert devices_of(out) == ["gpu-0-mig-1g5gb-19-6", "gpu-0-mig-2g10gb-14-0", "gpu-0-mig-2g10gb-14-2",
                               "gpu-0-mig-2g10gb-14-4"]


def test_no_backtracking_across_pods_but_across_claims_of_one_pod() -> None:
    slices = dynmig_slices(A100, "node-a")
    one = claim("one", [exactly("a", "mig.nvidia.com", profile_is("1g.5gb"))])
    three = claim("three", [exactly("b", "mig.nvidia.com", profile_is("2g.10gb"), count=3)])
    out = run([one, three], slices)  # same pod: claim one is moved to placement 6
    assert devices_of(out, 0) == ["gpu-0-mig-1g5gb-19-6"]
    first = run([one], slices)  # separate pods: first-fit, never re-placed
    assert first.allocations is not None
    st = AllocatedState()
    st.add_allocation(first.allocations[0])
    assert run([three], slices, st).unschedulable == CANNOT_ALLOCATE


# ---------------------------------------------------------------------------------------------
# Generic allocator semantics


def test_result_shape_node_selector_and_class_config() -> None:
    cls = copy.deepcopy(GPU_CLASS)
    cls["spec"]["config"] = [{"opaque": {"driver": "gpu.nvidia.com", "parameters": {"kind": "GpuConfig"}}}]
    c = claim("c", [exactly("gpu", "gpu.nvidia.com")],
              config=[{"requests": ["gpu"], "opaque": {"driver": "gpu.nvidia.com", "parameters": {"x": 1}}}])
    out = run([c], full_gpu_slices(["pci0000:00"]), classes=[cls])
    assert out.allocations == [{
        "devices": {
            "results": [{"request": "gpu", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-0"}],
            "config": [
                {"source": "FromClass", "requests": ["gpu"],
                 "opaque": {"driver": "gpu.nvidia.com", "parameters": {"kind": "GpuConfig"}}},
                {"source": "FromClaim", "requests": ["gpu"],
                 "opaque": {"driver": "gpu.nvidia.com", "parameters": {"x": 1}}},
            ],
        },
        "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]},
    }]
    # 1.37 omits `requests` on configs that cover every request.
    out37 = run([c], full_gpu_slices(["pci0000:00"]), classes=[cls], features=Features.for_version(37))
    assert out37.allocations is not None
    assert all("requests" not in e for e in out37.allocations[0]["devices"]["config"])


def test_cel_match_and_no_match() -> None:
    slices = full_gpu_slices(["pci0000:00", "pci0000:01"])
    sel = "device.attributes['resource.kubernetes.io'].pcieRoot == 'pci0000:01'"
    assert devices_of(run([claim("c", [exactly("g", "gpu.nvidia.com", sel)])], slices)) == ["gpu-1"]
    mem = "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('100Gi')) >= 0"
    assert run([claim("c", [exactly("g", "gpu.nvidia.com", mem)])], slices).unschedulable == CANNOT_ALLOCATE


def test_cel_runtime_error_is_fatal_with_kubernetes_text() -> None:
    slices = full_gpu_slices(["pci0000:00"])
    c = claim("c", [exactly("g", "gpu.nvidia.com", "device.attributes['gpu.nvidia.com'].model == 'x'")],
              namespace="ns1")
    out = run([c], slices)
    assert out.error == (
        "claim ns1/c: selector #0 on device gpu.nvidia.com/node-a/gpu-0: CEL runtime error: no such key: model. "
        "consider using CEL optional chaining (.? followed by orValue()) or guarding the check with has() for "
        "optional fields")
    out35 = run([c], slices, features=Features.for_version(35))
    assert out35.error == "claim ns1/c: selector #0: CEL runtime error: no such key: model"


def test_first_available_falls_back_and_names_subrequest() -> None:
    slices = dynmig_slices(A100, "node-a")
    req = {"name": "mig", "firstAvailable": [
        {"name": "big", "deviceClassName": "mig.nvidia.com", "allocationMode": "ExactCount", "count": 1,
         "selectors": [{"cel": {"expression": profile_is("7g.40gb")}}]},
        {"name": "small", "deviceClassName": "mig.nvidia.com", "allocationMode": "ExactCount", "count": 1,
         "selectors": [{"cel": {"expression": profile_is("1g.5gb")}}]},
    ]}
    c = claim("c", [req], config=[{"requests": ["mig/small"], "opaque": {"driver": "gpu.nvidia.com",
                                                                           "parameters": {}}}])
    empty = run([c], slices)
    assert empty.allocations is not None
    assert empty.allocations[0]["devices"]["results"][0]["request"] == "mig/big"
    assert "config" not in empty.allocations[0]["devices"]  # config for mig/small does not apply
    st = AllocatedState(devices={("gpu.nvidia.com", "node-a", "gpu-0-mig-1g5gb-19-0")})
    out = run([c], slices, st)
    assert out.allocations is not None
    res = out.allocations[0]["devices"]
    assert res["results"][0]["request"] == "mig/small" and res["results"][0]["device"] == "gpu-0-mig-1g5gb-19-1"
    assert res["config"][0]["requests"] == ["mig/small"]


def test_match_attribute_skips_to_devices_sharing_the_attribute() -> None:
    slices = full_gpu_slices(["pci0000:00", "pci0000:01", "pci0000:02", "pci0000:01"])
    c = claim("c", [exactly("g", "gpu.nvidia.com", count=2)],
              constraints=[{"matchAttribute": "resource.kubernetes.io/pcieRoot"}])
    assert devices_of(run([c], slices)) == ["gpu-1", "gpu-3"]
    none = claim("c", [exactly("g", "gpu.nvidia.com", count=2)],
                 constraints=[{"matchAttribute": "gpu.nvidia.com/uuid"}])
    assert run([none], slices).unschedulable == CANNOT_ALLOCATE


def test_admin_access_reuses_allocated_device_and_is_recorded() -> None:
    slices = full_gpu_slices(["pci0000:00"])
    st = AllocatedState(devices={("gpu.nvidia.com", "node-a", "gpu-0")})
    plain = run([claim("c", [exactly("g", "gpu.nvidia.com")])], slices, st)
    assert plain.unschedulable == CANNOT_ALLOCATE
    admin = run([claim("c", [exactly("g", "gpu.nvidia.com", adminAccess=True)])], slices, st)
    assert admin.allocations is not None
    assert admin.allocations[0]["devices"]["results"][0]["adminAccess"] is True
    # Admin results do not make the device "in use" for others.
    st2 = AllocatedState()
    st2.add_allocation(admin.allocations[0])
    assert run([claim("d", [exactly("g", "gpu.nvidia.com")])], slices, st2).ok


def test_all_mode_takes_every_matching_device_or_fails() -> None:
    slices = full_gpu_slices(["pci0000:00", "pci0000:01", "pci0000:02"])
    c = claim("c", [exactly("g", "gpu.nvidia.com", allocationMode="All")])
    assert devices_of(run([c], slices)) == ["gpu-0", "gpu-1", "gpu-2"]
    st = AllocatedState(devices={("gpu.nvidia.com", "node-a", "gpu-1")})
    assert run([c], slices, st).unschedulable == CANNOT_ALLOCATE


def test_untolerated_taint_skips_device_and_toleration_is_copied() -> None:
    taint = {"taints": [{"key": "gpu.nvidia.com/unhealthy", "value": "xid", "effect": "NoSchedule"}]}
    slices = full_gpu_slices(["pci0000:00", "pci0000:01"], **{"gpu-0": taint})
    assert devices_of(run([claim("c", [exactly("g", "gpu.nvidia.com")])], slices)) == ["gpu-1"]
    tol = [{"key": "gpu.nvidia.com/unhealthy", "operator": "Exists", "effect": "NoSchedule"}]
    out = run([claim("c", [exactly("g", "gpu.nvidia.com", tolerations=tol)])], slices)
    assert out.allocations is not None
    assert out.allocations[0]["devices"]["results"][0] == {
        "request": "g", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-0", "tolerations": tol}
    # With the DRADeviceTaints gate off (1.35 default) taints are ignored.
    assert devices_of(run([claim("c", [exactly("g", "gpu.nvidia.com")])], slices,
                          features=Features.for_version(35))) == ["gpu-0"]


def test_incomplete_pool_is_not_used_and_newer_generation_wins() -> None:
    slices = dynmig_slices(A100, "node-a")
    c = claim("c", [exactly("mig", "mig.nvidia.com", profile_is("1g.5gb"))])
    assert run([c], slices[1:]).unschedulable == CANNOT_ALLOCATE  # counters slice missing
    newer = dynmig_slices(A100, "node-a", generation=2)
    for s in newer:
        s["metadata"]["name"] += "-g2"
    assert devices_of(run([c], slices + newer)) == ["gpu-0-mig-1g5gb-19-0"]


def test_partitionable_gate_off_never_allocates_counter_consumers() -> None:
    slices = dynmig_slices(H100, "node-a")
    c = claim("c", [exactly("mig", "mig.nvidia.com", profile_is("1g.10gb"))])
    assert run([c], slices, features=Features.for_version(35)).unschedulable == CANNOT_ALLOCATE


def test_pools_ordered_by_driver_then_name_and_other_nodes_ignored() -> None:
    a = full_gpu_slices(["r"], node_name="node-a")
    other = full_gpu_slices(["r"], node_name="node-b")
    shared = full_gpu_slices(["r"], node_name="aaa")
    shared[0]["spec"].pop("nodeName")
    shared[0]["spec"]["allNodes"] = True
    out = run([claim("c", [exactly("g", "gpu.nvidia.com")])], other + a + shared)
    assert out.allocations is not None
    assert out.allocations[0]["devices"]["results"][0]["pool"] == "aaa"
    assert "nodeSelector" not in out.allocations[0]  # allNodes devices need no node selector


def test_more_than_32_devices_is_fatal() -> None:
    out = run([claim("c", [exactly("g", "gpu.nvidia.com", count=33)])], full_gpu_slices(["r"]))
    assert out.error == "claim default/c: number of requested devices 33 exceeds the claim limit of 32"


@pytest.mark.parametrize("expr, want", [
    ("device.attributes['gpu.nvidia.com'].type.upperAscii() == 'GPU'", True),
    ("device.capacity['gpu.nvidia.com'].memory.isGreaterThan(quantity('80Gi'))", False),
    ("'gpu.nvidia.com' in device.attributes && device.driver.startsWith('gpu.')", True),
    ("device.attributes['other.example.com'].size() == 0", True),
])
def test_cel_environment(expr: str, want: bool) -> None:
    out = run([claim("c", [exactly("g", "gpu.nvidia.com", expr)])], full_gpu_slices(["r"]))
    assert out.ok is want and out.error is None
