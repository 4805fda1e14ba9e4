"""ResourceSlice model of the GPU plugin against reference nvidia-dra-driver.md §4 (esp. the §4.6 example)."""

from __future__ import annotations

from typing import Any

import pytest

from checks import mig
from checks.driver import names
from checks.driver.slices import (
    GpuFacts,
    StaticMigDevice,
    binary_si,
    publish,
    semver,
    uses_split_slices,
)


def h100(minor: int = 0, bus: str = "0000:1b:00.0", **kw: Any) -> GpuFacts:
    return GpuFacts(
        minor=minor,
        index=minor,
        uuid=f"GPU-5e7a1c2d-0b1f-4c7e-9a3d-2f6b8c1d0e4{minor}",
        product_name="NVIDIA H100 80GB HBM3",
        brand="Nvidia",
        architecture="Hopper",
        cuda_compute_capability="9.0",
        driver_version="570.158.01",
        cuda_driver_version="12.8",
        pci_bus_id=bus,
        pcie_root="pci0000:15",
        numa_node=0,
        memory_bytes=81559 * 2**20,
        mig=mig.gpu("NVIDIA H100 80GB HBM3"),
        **kw,
    )


def a100(minor: int, bus: str, **kw: Any) -> GpuFacts:
    return GpuFacts(
        minor=minor,
        index=minor,
        uuid=f"GPU-a100-{minor}",
        product_name="NVIDIA A100-SXM4-40GB",
        brand="Nvidia",
        architecture="Ampere",
        cuda_compute_capability="8.0",
        driver_version="580.159.04",
        cuda_driver_version="13.0",
        pci_bus_id=bus,
        pcie_root="pci0000:00",
        numa_node=-1,
        memory_bytes=40960 * 2**20,
        addressing_mode="HMM",
        mig=mig.gpu("A100-SXM4-40GB"),
        **kw,
    )


def value(q: dict[str, Any]) -> str:
    return str(q["value"])


def test_value_normalisation() -> None:
    assert semver("570.158.01") == "570.158.1"
    assert semver("9.0") == "9.0.0"
    assert semver("13.0") == "13.0.0"
    assert binary_si(81559 * 2**20) == "81559Mi"
    assert binary_si(80 * 2**30) == "80Gi"
    assert binary_si(1000) == "1000"


def test_default_mode_single_slice_matches_4_6_a() -> None:
    pub = publish("node-a", [h100()], {}, 36)
    assert pub.layout == "single"
    assert len(pub.specs) == 1
    spec = pub.specs[0]
    assert spec["driver"] == "gpu.nvidia.com" and spec["nodeName"] == "node-a"
    assert spec["pool"] == {"name": "node-a", "generation": 1, "resourceSliceCount": 1}
    assert "sharedCounters" not in spec
    (dev,) = spec["devices"]
    assert dev["name"] == "gpu-0"
    assert dev["attributes"]["driverVersion"] == {"version": "570.158.1"}
    assert dev["attributes"]["cudaComputeCapability"] == {"version": "9.0.0"}
    assert dev["attributes"]["cudaDriverVersion"] == {"version": "12.8.0"}
    assert dev["attributes"]["resource.kubernetes.io/numaNode"] == {"int": 0}
    assert dev["capacity"] == {"memory": {"value": "81559Mi"}}
    assert set(dev["attributes"]) == (names.ATTR_KEYS_GPU - {"addressingMode"}) | {names.NUMA_NODE_ATTR}


def test_dynamic_mig_split_layout_h100() -> None:
    pub = publish("node-a", [h100()], {"DynamicMIG": True}, 36)
    assert pub.layout == "split"
    counters_spec, devices_spec = pub.specs
    assert "devices" not in counters_spec
    assert counters_spec["pool"]["resourceSliceCount"] == 2
    (cs,) = counters_spec["sharedCounters"]
    assert cs["name"] == "gpu-0-counter-set"
    expected_counters = {
        "copy-engines": "8", "decoders": "7", "encoders": "0", "jpeg-engines": "7", "memory": "81152Mi",
        "multiprocessors": "132", "ofa-engines": "1",
        **{f"memory-slice-{i}": "1" for i in range(8)},
    }
    assert {k: value(v) for k, v in cs["counters"].items()} == expected_counters

    devs = devices_spec["devices"]
    devnames = [d["name"] for d in devs]
    assert len(devs) == 26
    assert devnames == sorted(devnames)
    expected_names = (
        ["gpu-0"]
        + [f"gpu-0-mig-1g10gb-19-{i}" for i in range(7)]
        + [f"gpu-0-mig-1g10gb-me-20-{i}" for i in range(7)]
        + [f"gpu-0-mig-1g20gb-15-{i}" for i in (0, 2, 4, 6)]
        + [f"gpu-0-mig-2g20gb-14-{i}" for i in (0, 2, 4)]
        + ["gpu-0-mig-3g40gb-9-0", "gpu-0-mig-3g40gb-9-4", "gpu-0-mig-4g40gb-5-0", "gpu-0-mig-7g80gb-0-0"]
    )
    assert set(devnames) == set(expected_names)

    by = {d["name"]: d for d in devs}
    full = by["gpu-0"]
    assert {k: value(v) for k, v in full["capacity"].items()} == {
        "copyEngines": "8", "decoders": "7", "encoders": "0", "jpegEngines": "7", "memory": "81152Mi",
        "multiprocessors": "132", "ofaEngines": "1",
    }
    (consumed,) = full["consumesCounters"]
    assert consumed["counterSet"] == "gpu-0-counter-set"
    assert {k: value(v) for k, v in consumed["counters"].items()} == expected_counters

    one = by["gpu-0-mig-1g10gb-19-3"]
    assert "uuid" not in one["attributes"]
    assert set(one["attributes"]) == (names.ATTR_KEYS_DYNAMIC_MIG - {"addressingMode"}) | {names.NUMA_NODE_ATTR}
    assert one["attributes"]["parentUUID"] == {"string": h100().uuid}
    assert one["attributes"]["profile"] == {"string": "1g.10gb"}
    assert {k: value(v) for k, v in one["consumesCounters"][0]["counters"].items()} == {
        "copy-engines": "1", "decoders": "1", "encoders": "0", "jpeg-engines": "1", "memory": "9984Mi",
        "memory-slice-3": "1", "multiprocessors": "16", "ofa-engines": "0",
    }
    three = by["gpu-0-mig-3g40gb-9-4"]
    slices_used = sorted(k for k in three["consumesCounters"][0]["counters"] if k.startswith("memory-slice-"))
    assert slices_used == [f"memory-slice-{i}" for i in (4, 5, 6, 7)]
    assert value(three["capacity"]["memory"]) == "40448Mi"
    seven = by["gpu-0-mig-7g80gb-0-0"]
    assert len([k for k in seven["consumesCounters"][0]["counters"] if k.startswith("memory-slice-")]) == 8


def test_combined_layout_below_1_35_and_prerelease() -> None:
    pub = publish("n", [h100(0, "0000:1b:00.0"), h100(1, "0000:2b:00.0")], {"DynamicMIG": True}, "v1.34.2")
    assert pub.layout == "combined"
    assert len(pub.specs) == 2
    for i, s in enumerate(pub.specs):
        assert s["sharedCounters"][0]["name"] == f"gpu-{i}-counter-set"
        assert s["pool"]["resourceSliceCount"] == 2
        assert all(d["name"].startswith(f"gpu-{i}") for d in s["devices"])
    assert not uses_split_slices("1.35.0-alpha.3")
    assert uses_split_slices("v1.35.0") and uses_split_slices(36) and not uses_split_slices(34)


def test_gpus_ordered_by_pci_bus_id_in_split_layout() -> None:
    pub = publish("n", [h100(0, "0000:9b:00.0"), h100(1, "0000:1b:00.0")], {"DynamicMIG": True}, 36)
    assert [c["name"] for c in pub.specs[0]["sharedCounters"]] == ["gpu-1-counter-set", "gpu-0-counter-set"]
    assert pub.specs[1]["devices"][0]["name"] == "gpu-1"


def test_ampere_dynamic_mig_needs_mig_enabled_and_hides_full_gpu() -> None:
    off = publish("n", [a100(0, "0000:07:00.0")], {"DynamicMIG": True}, 36)
    # No partitionable GPU: legacy full-GPU fallback, no counters.
    assert off.layout == "fallback"
    assert [d["name"] for d in off.devices()] == ["gpu-0"]
    assert "consumesCounters" not in off.devices()[0]

    on = publish("n", [a100(0, "0000:07:00.0", mig_enabled=True)], {"DynamicMIG": True}, 36)
    assert on.layout == "split"
    assert on.specs[0]["sharedCounters"][0]["name"] == "gpu-0-counter-set"
    devnames = [d["name"] for d in on.devices()]
    assert "gpu-0" not in devnames
    assert "gpu-0-mig-1g5gb-19-0" in devnames and "gpu-0-mig-7g40gb-0-0" in devnames
    assert all(d["attributes"]["type"] == {"string": "mig"} for d in on.devices())
    assert set(on.devices()[0]["attributes"]) == names.ATTR_KEYS_DYNAMIC_MIG


def test_static_mig_replaces_full_gpu_and_carries_memory_slices() -> None:
    g = h100(mig_enabled=True, static_mig=(StaticMigDevice("1g.10gb", 0, "MIG-aaaa"),))
    pub = publish("n", [g], {}, 36)
    (dev,) = pub.devices()
    assert dev["name"] == "gpu-0-mig-1g10gb-19-0"
    assert dev["attributes"]["uuid"] == {"string": "MIG-aaaa"}
    assert dev["capacity"]["memorySlice0"] == {"value": "1"}
    assert "consumesCounters" not in dev
    assert set(dev["attributes"]) == (names.ATTR_KEYS_STATIC_MIG - {"addressingMode"}) | {names.NUMA_NODE_ATTR}

    empty = publish("n", [h100(mig_enabled=True)], {}, 36)
    assert empty.devices() == []
    assert empty.warnings == ["Physical GPU gpu-0 has MIG mode enabled but no configured MIG devices"]


def test_list_type_numa_and_unresolvable_fields_omitted() -> None:
    g = GpuFacts(
        minor=3, index=0, uuid="GPU-x", product_name="NVIDIA A10", brand="Nvidia", architecture="Ampere",
        cuda_compute_capability="8.6", driver_version="580.1.2", cuda_driver_version="13.0",
        pci_bus_id="0000:00:05.0", pcie_root=None, numa_node=2, memory_bytes=None,
    )
    (dev,) = publish("n", [g], {"DRAListTypeAttributes": True}, 36).devices()
    assert dev["name"] == "gpu-3"
    assert dev["attributes"][names.NUMA_NODE_ATTR] == {"ints": [2]}
    assert names.PCIE_ROOT_ATTR not in dev["attributes"]
    assert "capacity" not in dev


@pytest.mark.parametrize("key", ["A100-SXM4-40GB", "H100-SXM5-80GB"])
def test_every_mig_device_name_round_trips_through_the_oracle(key: str) -> None:
    geo = mig.gpu(key)
    g = GpuFacts(
        minor=0, index=0, uuid="GPU-x", product_name=geo.names[0], brand="Nvidia", architecture=geo.architecture,
        cuda_compute_capability=geo.compute_capability, driver_version="580.1.2", cuda_driver_version="13.0",
        pci_bus_id="0000:00:05.0", pcie_root="pci0000:00", numa_node=0, memory_bytes=1, mig=geo, mig_enabled=True,
    )
    devs = [d for d in publish("n", [g], {"DynamicMIG": True}, 36).devices() if d["name"] != "gpu-0"]
    assert len(devs) == sum(len(p.starts) for p in geo.profiles)
    for d in devs:
        parsed = mig.parse_device_name(d["name"])
        assert parsed.profile(geo).name == d["attributes"]["profile"]["string"]


def _fits_counters(counter_set: dict[str, Any], devices: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Counters that the devices together over-consume: name → (consumed, available)."""
    def qty(text: str) -> int:
        for suffix, base in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if text.endswith(suffix):
                return int(text[: -len(suffix)]) * base
        return int(text)

    used: dict[str, int] = {}
    for d in devices:
        for c in d["consumesCounters"][0]["counters"].items():
            used[c[0]] = used.get(c[0], 0) + qty(c[1]["value"])
    avail = {k: qty(v["value"]) for k, v in counter_set["counters"].items()}
    return {k: (v, avail.get(k, 0)) for k, v in used.items() if v > avail.get(k, 0)}


@pytest.mark.parametrize("key", sorted(g.key for g in mig.known_gpus()))
def test_seven_1g_devices_fit_the_counters_on_every_mig_gpu(key: str) -> None:
    """The oracle packs 7×1g on every MIG GPU, so the published counters must allow it — including B200,
    whose 3g/4g/7g engine counts are not captured (``engines_known=False``) and would otherwise cap JPEG at 2."""
    geo = mig.gpu(key)
    g = GpuFacts(minor=0, index=0, uuid="GPU-x", product_name=geo.names[0], brand="Nvidia",
                 architecture=geo.architecture, cuda_compute_capability=geo.compute_capability,
                 driver_version="580.159.04", cuda_driver_version="13.0", pci_bus_id="0000:00:06.0",
                 pcie_root=None, numa_node=0, memory_bytes=None, mig=geo, mig_enabled=True)
    pub = publish("n", [g], {"DynamicMIG": True}, 36)
    one_g = min(geo.profiles, key=lambda p: (p.compute_slices, p.memory_slices, p.media_extension))
    prefix = f"gpu-0-mig-{mig.profile_slug(one_g.name)}-{one_g.nvml_id}-"
    sevens = [d for d in pub.devices() if str(d["name"]).startswith(prefix)]
    assert len(sevens) == len(one_g.starts) == 7
    assert _fits_counters(pub.specs[0]["sharedCounters"][0], sevens) == {}
    # And the full GPU still consumes everything: one more 1g never fits beside it.
    full = [d for d in pub.devices() if d["name"] == "gpu-0"]
    if full:
        assert _fits_counters(pub.specs[0]["sharedCounters"][0], full) == {}
        assert _fits_counters(pub.specs[0]["sharedCounters"][0], full + sevens[:1]) != {}


def test_engine_totals_use_the_7g_values_where_captured_and_packing_where_not() -> None:
    from checks.driver.slices import max_dimensions, profile_dimensions

    h = mig.gpu("NVIDIA H100 80GB HBM3")
    seven_g = next(p for p in h.profiles if p.compute_slices == 7)
    assert max_dimensions(h)["jpegEngines"] == profile_dimensions(seven_g)["jpegEngines"]
    b = mig.gpu("NVIDIA B200")
    assert not all(p.engines_known for p in b.profiles)
    one_g = b.profile("1g.23gb")
    dims = max_dimensions(b)
    assert dims["jpegEngines"] == one_g.engines.jpeg * one_g.max_instances == 7
    assert dims["copyEngines"] == one_g.engines.ce * one_g.max_instances
