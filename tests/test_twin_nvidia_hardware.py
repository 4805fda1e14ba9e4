"""Virtual GPUs from the catalog, fed through the slice model and nvidia-smi output (reference §4, §6.3)."""

from __future__ import annotations

from checks.catalog import load_instance
from checks.driver import names, smi
from checks.driver.slices import publish
from checks.twin.nvidia.hardware import mig_uuid, virtual_gpus


def test_h100_twin_matches_observed_hardware() -> None:
    (g,) = virtual_gpus(load_instance("gpu_1x_h100_sxm5"))
    assert g.product_name == "NVIDIA H100 80GB HBM3"
    assert g.pci_bus_id == "0000:00:06.0"
    assert g.memory_bytes == 81559 * 2**20
    (dev,) = publish("node-a", [g]).devices()
    assert dev["attributes"]["driverVersion"] == {"version": "580.159.4"}
    assert dev["attributes"]["cudaDriverVersion"] == {"version": "13.0.0"}
    assert dev["capacity"]["memory"] == {"value": "81559Mi"}
    # A cloud VM's sysfs gives the GPU no NUMA node (-1): exactly the upstream 11-key set, no numaNode.
    assert g.numa_node == -1
    assert set(dev["attributes"]) == names.ATTR_KEYS_GPU


def test_numa_node_is_a_per_instance_fact() -> None:
    inst = load_instance("gpu_1x_h100_sxm5")
    numa = inst.model_copy(update={"host": inst.host.model_copy(update={"gpu_numa_node": 0})})
    (g,) = virtual_gpus(numa)
    (dev,) = publish("node-a", [g]).devices()
    assert dev["attributes"][names.NUMA_NODE_ATTR] == {"int": 0}
    assert set(dev["attributes"]) == names.ATTR_KEYS_GPU | {names.NUMA_NODE_ATTR}


def test_uuids_are_deterministic_and_distinct() -> None:
    a = virtual_gpus(load_instance("gpu_8x_a100"))
    b = virtual_gpus(load_instance("gpu_8x_a100"))
    assert [g.uuid for g in a] == [g.uuid for g in b]
    assert len({g.uuid for g in a}) == 8
    assert all(g.uuid.startswith("GPU-") for g in a)
    other = virtual_gpus(load_instance("gpu_8x_h100_sxm5"))
    assert not {g.uuid for g in a} & {g.uuid for g in other}


def test_non_mig_gpu_has_no_geometry() -> None:
    (g,) = virtual_gpus(load_instance("gpu_1x_a10"), mig_enabled=True)
    assert g.mig is None and not g.mig_enabled


def test_static_mig_devices_and_smi_listing() -> None:
    (g,) = virtual_gpus(load_instance("gpu_1x_h100_sxm5"), static_mig=[[("1g.10gb", 0), ("3g.40gb", 4)]])
    assert g.mig_enabled
    devs = publish("n", [g]).devices()
    assert [d["name"] for d in devs] == ["gpu-0-mig-1g10gb-19-0", "gpu-0-mig-3g40gb-9-4"]
    assert devs[0]["attributes"]["uuid"] == {"string": mig_uuid(g.uuid, "gpu-0-mig-1g10gb-19-0")}
    lines = smi.list_lines([smi.VisibleGpu(g.product_name, g.uuid, g.pci_bus_id, (("1g.10gb", g.static_mig[0].uuid),))])
    assert lines == [
        f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {g.uuid})",
        f"  MIG 1g.10gb     Device  0: (UUID: {g.static_mig[0].uuid})",
    ]


def test_smi_full_gpus_renumbered_in_pci_order() -> None:
    gpus = virtual_gpus(load_instance("gpu_8x_h100_sxm5"))
    seen = [smi.VisibleGpu(g.product_name, g.uuid, g.pci_bus_id) for g in (gpus[5], gpus[2])]
    out = smi.list_output(seen)
    assert out == (
        f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {gpus[2].uuid})\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: {gpus[5].uuid})\n"
    )
    assert smi.version_output("580.159.04", "13.0").splitlines()[1] == "NVML version        : 580.159"
