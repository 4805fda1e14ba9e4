"""Emulated driver binaries: gate refusal, program resolution, and the GPU plugin's prepare semantics."""
# ruff: noqa: E501  (exact upstream error texts)

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from checks.catalog import load_instance
from checks.driver.slices import publish
from checks.twin.nvidia.binaries import PROGRAMS, resolve, run_gpu_plugin
from checks.twin.nvidia.binaries.gpu_plugin import GpuPlugin
from checks.twin.nvidia.hardware import virtual_gpus
from checks.twin.nvidia.smi import SmiGpu
from kubetwin.kubelet.seam import ContainerContext, DraPlugin

API = "resource.nvidia.com/v1beta1"


class Node:
    node_name = "node-a"

    def register_dra_plugin(self, driver: str, plugin: DraPlugin, *, owner: object | None = None) -> None:
        raise AssertionError("must not register")

    def unregister_dra_plugin(self, driver: str, *, owner: object | None = None) -> None:
        pass


def ctx(argv: list[str], env: dict[str, str], tmp: Path) -> ContainerContext:
    return ContainerContext(
        pod={"metadata": {"name": "p", "namespace": "dra-driver-nvidia-gpu"}}, container={}, argv=argv, env=env,
        image="registry.k8s.io/dra-driver-nvidia/dra-driver-nvidia-gpu:v0.5.0-dev", node=Node(),
        stdout=io.StringIO(), stderr=io.StringIO(), stop=threading.Event(), killed=threading.Event(),
        work_dir=tmp, api_client=lambda: (_ for _ in ()).throw(AssertionError("no API expected")),
    )


def test_forbidden_gates_exit_1_with_real_error(tmp_path: Path) -> None:
    c = ctx(["bash", "-c", "exec gpu-kubelet-plugin -v 6"], {"FEATURE_GATES": "DynamicMIG=true,MPSSupport=true,"}, tmp_path)
    assert run_gpu_plugin(c) == 1
    assert isinstance(c.stderr, io.StringIO)
    assert c.stderr.getvalue() == (
        "Error: feature gate validation failed: feature gate DynamicMIG is currently mutually exclusive with MPSSupport\n"
    )


def test_resolver_maps_chart_commands(tmp_path: Path) -> None:
    assert resolve(ctx(["bash", "-c", "exec gpu-kubelet-plugin -v 4"], {}, tmp_path)) is run_gpu_plugin
    assert resolve(ctx(["compute-domain-controller", "-v", "4"], {}, tmp_path)) is PROGRAMS["compute-domain-controller"]
    assert resolve(ctx(["webhook", "--port=443"], {}, tmp_path)) is PROGRAMS["webhook"]
    assert resolve(ctx(["bash", "/usr/bin/kubelet-plugin-prestart.sh"], {}, tmp_path)) is PROGRAMS["kubelet-plugin-prestart.sh"]
    assert resolve(ctx(["sleep", "1"], {}, tmp_path)) is None


def claim(devices: list[str], config: list[dict[str, Any]] | None = None, node: str = "node-a") -> dict[str, Any]:
    return {"status": {"allocation": {"devices": {
        "results": [{"request": "gpu", "driver": "gpu.nvidia.com", "pool": node, "device": d} for d in devices],
        "config": config or [],
    }}}}


def plugin(claims: dict[str, dict[str, Any]], gates: dict[str, bool], instance: str = "gpu_1x_h100_sxm5") -> GpuPlugin:
    return GpuPlugin(node="node-a", gpus=virtual_gpus(load_instance(instance)), gates=gates,
                     read_claim=lambda ns, name: claims[name])


def ref(name: str) -> dict[str, str]:
    return {"namespace": "default", "name": name, "uid": f"uid-{name}"}


def test_prepare_full_gpu_is_idempotent_and_shows_uuid() -> None:
    p = plugin({"a": claim(["gpu-0"])}, {})
    first = p.prepare([ref("a")])["uid-a"]
    assert first.error == ""
    (dev,) = first.devices
    assert dev.cdi_device_ids == ("k8s.gpu.nvidia.com/claim=uid-a-gpu-0",)
    assert dev.env == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert isinstance(dev.view, SmiGpu) and dev.view.uuid == p.gpus[0].uuid and dev.view.mig is None
    assert p.prepare([ref("a")])["uid-a"] is first


def test_prepare_errors_carry_real_chains() -> None:
    ts = {"source": "FromClaim", "requests": ["gpu"], "opaque": {"driver": "gpu.nvidia.com", "parameters": {
        "apiVersion": API, "kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing"}}}}
    bad = {"source": "FromClaim", "opaque": {"driver": "gpu.nvidia.com", "parameters": {
        "apiVersion": API, "kind": "GpuConfig", "x": 1}}}
    p = plugin({"ts": claim(["gpu-0"], [ts]), "bad": claim(["gpu-0"], [bad])}, {})
    assert p.prepare([ref("ts")])["uid-ts"].error == (
        "error preparing devices for claim default/ts:uid-ts: prepare devices failed: error validating GPU config: "
        '"TimeSlicing" is selected as the GPU sharing strategy, but the "TimeSlicingSettings" feature gate is not enabled'
    )
    assert p.prepare([ref("bad")])["uid-bad"].error.endswith(
        'prepare devices failed: error getting opaque device configs: error decoding config parameters: '
        'strict decoding error: unknown field "x"'
    )
    assert plugin({"ts": claim(["gpu-0"], [ts])}, {"TimeSlicingSettings": True}).prepare([ref("ts")])["uid-ts"].error == ""


def test_dynamic_mig_overlap_is_insufficient_resources_until_unprepared() -> None:
    p = plugin({"m1": claim(["gpu-0-mig-3g40gb-9-4"]), "m2": claim(["gpu-0-mig-1g10gb-19-5"]),
                "m3": claim(["gpu-0-mig-1g10gb-19-0"])}, {"DynamicMIG": True})
    ok = p.prepare([ref("m1")])["uid-m1"]
    assert ok.error == ""
    smi = ok.devices[0].view
    assert isinstance(smi, SmiGpu) and smi.mig is not None and smi.mig.profile == "3g.40gb" and smi.mig.uuid.startswith("MIG-")
    assert p.prepare([ref("m2")])["uid-m2"].error == (
        "error preparing devices for claim default/m2:uid-m2: prepare devices failed: error creating MIG device: "
        "error creating GPU instance for 'gpu-0-mig-1g10gb-19-5': Insufficient Resources"
    )
    assert p.prepare([ref("m3")])["uid-m3"].error == ""
    assert p.unprepare([ref("m1")]) == {"uid-m1": ""}
    assert p.prepare([ref("m2")])["uid-m2"].error == ""


def test_published_device_names_are_preparable() -> None:
    gpus = virtual_gpus(load_instance("gpu_1x_h100_sxm5"))
    names = [d["name"] for d in publish("node-a", gpus, {"DynamicMIG": True}).devices()]
    p = plugin({n: claim([n]) for n in names}, {"DynamicMIG": True})
    for n in names:
        result = p.prepare([ref(n)])[f"uid-{n}"]
        assert result.error == ""
        p.unprepare([ref(n)])
