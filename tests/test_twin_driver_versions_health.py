"""Emulated driver pieces behind the roadmap checks of issue 12: checkpoint file, health taints, controller
HTTP endpoint, release-specific gates, the last-stable chart copy, the SIGUSR2 dump."""

from __future__ import annotations

import io
import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.catalog import load_instance
from checks.driver import gates as G
from checks.driver import logs, names
from checks.twin.nvidia import LAST_STABLE_VERSION, chart_at_version
from checks.twin.nvidia.binaries import release_of, run_gpu_plugin
from checks.twin.nvidia.binaries.checkpoint import CheckpointFile, CorruptCheckpoint, marshal, verify
from checks.twin.nvidia.binaries.controller_metrics import ControllerMetrics, pprof_response
from checks.twin.nvidia.binaries.gpu_plugin import GpuPlugin
from checks.twin.nvidia.binaries.health import HealthMonitor, apply_taints, ignored_xids
from checks.twin.nvidia.binaries.host import goroutine_dump, install_dump_handler
from checks.twin.nvidia.hardware import virtual_gpus
from kubetwin.kubelet.seam import ContainerContext, DraPlugin


class Node:
    node_name = "node-a"

    def register_dra_plugin(self, driver: str, plugin: DraPlugin, *, owner: object | None = None) -> None:
        raise AssertionError("must not register")

    def unregister_dra_plugin(self, driver: str, *, owner: object | None = None) -> None:
        pass


def _ctx(tmp: Path, image_tag: str = "v0.5.0-dev", env: dict[str, str] | None = None) -> ContainerContext:
    return ContainerContext(
        pod={"metadata": {"name": "p", "namespace": "ns"}}, container={}, argv=["gpu-kubelet-plugin"],
        env=env or {}, image=f"{names.IMAGE_REPOSITORY}:{image_tag}", node=Node(), stdout=io.StringIO(),
        stderr=io.StringIO(), stop=threading.Event(), killed=threading.Event(), work_dir=tmp,
        api_client=lambda: (_ for _ in ()).throw(AssertionError("no API expected")))


def _claim(device: str) -> dict[str, Any]:
    return {"metadata": {"uid": "u1"}, "status": {"allocation": {"devices": {"results": [
        {"request": "gpu", "driver": names.GPU_DRIVER, "pool": "node-a", "device": device}]}}}}


def test_checkpoint_survives_a_plugin_restart_and_unprepare_clears_it(tmp_path: Path) -> None:
    lines: list[logs.LogLine] = []
    gpus = virtual_gpus(load_instance("gpu_1x_a10"))
    path = tmp_path / "checkpoint.json"

    def plugin() -> GpuPlugin:
        return GpuPlugin(node="node-a", gpus=gpus, gates={}, read_claim=lambda ns, n: _claim("gpu-0"),
                         log=lines.append, checkpoint=CheckpointFile(path, lines.append), boot_id="boot-1")

    first = plugin()
    first.restore()
    assert [ln.text for ln in lines] == ["Create empty checkpoint"]
    assert first.prepare([{"namespace": "d", "name": "c", "uid": "u1"}])["u1"].error == ""
    doc = json.loads(path.read_text())
    assert verify(doc) and doc["v2"]["nodeBootID"] == "boot-1"
    assert doc["v2"]["preparedClaims"]["u1"]["checkpointState"] == "PrepareCompleted"
    assert list(doc["v1"]["preparedClaims"]) == ["u1"]  # older binaries read v1
    second = plugin()  # an upgraded/restarted plugin on the same node
    second.restore()
    assert [d.device_name for d in second.prepared["u1"].devices] == ["gpu-0"]
    assert second.unprepare([{"namespace": "d", "name": "c", "uid": "u1"}]) == {"u1": ""}
    assert "u1" not in json.loads(path.read_text())["v2"].get("preparedClaims", {})


def test_checkpoint_of_another_boot_is_invalidated(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    path.write_bytes(marshal({"preparedClaims": {"u": {"checkpointState": "PrepareCompleted"}},
                              "nodeBootID": "old"}))
    lines: list[logs.LogLine] = []
    cp = CheckpointFile(path, lines.append).open("new")
    assert cp == {"preparedClaims": {}, "nodeBootID": "new"}
    assert lines[0].text == 'Invalidating checkpoint: checkpoint nodeBootID "old" != current "new"'


def test_corrupted_checkpoint_logs_diff_and_the_plugin_exits(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    doc = json.loads(marshal({"preparedClaims": {}, "nodeBootID": "b"}))
    doc["v2"]["checksum"] = 0
    doc["v2"]["dummy"] = "this-should-show-in-diff"
    path.write_text(json.dumps(doc))
    lines: list[logs.LogLine] = []
    with pytest.raises(CorruptCheckpoint):
        CheckpointFile(path, lines.append).read()
    (line,) = lines
    assert line.severity == "E" and line.text.startswith(logs.CHECKSUM_DIFF)
    assert "dummy" in line.text and "--- on-disk" in line.text


def test_health_taints_follow_section_7() -> None:
    gpus = virtual_gpus(load_instance("gpu_2x_h100_sxm5"))
    published: list[dict[str, list[dict[str, Any]]]] = []
    lines: list[logs.LogLine] = []
    mon = HealthMonitor(gpus=gpus, ignored=ignored_xids("94, x,"), republish=published.append, log=lines.append)
    assert 94 in mon.ignored and set(names.IGNORED_XIDS) <= mon.ignored
    mon.handle({"seq": 1, "event": "xid", "uuid": gpus[1].uuid, "xid": 43})
    assert published[-1] == {"gpu-1": [{"key": names.TAINT_XID, "effect": "None", "value": "43"}]}
    mon.handle({"seq": 1, "event": "xid", "uuid": gpus[1].uuid, "xid": 79})  # same seq: already handled
    assert len(published) == 1
    mon.handle({"seq": 2, "event": "xid", "uuid": gpus[1].uuid, "xid": 79})
    assert published[-1]["gpu-1"] == [{"key": names.TAINT_XID, "effect": "NoSchedule", "value": "79"}]
    mon.handle({"seq": 3, "event": "gpu-lost"})
    assert {d: [t["key"] for t in ts] for d, ts in published[-1].items()} == {
        "gpu-0": [names.TAINT_GPU_LOST], "gpu-1": [names.TAINT_XID, names.TAINT_GPU_LOST]}
    texts = [ln.text for ln in lines]
    assert f"Received xid health event for device {gpus[1].uuid}" in texts
    assert 'Republishing ResourceSlice: 1 device(s) tainted with gpu.nvidia.com/xid="79" (effect=NoSchedule)' in texts
    bodies = apply_taints([{"spec": {"devices": [{"name": "gpu-0"}, {"name": "gpu-1"}]}}], published[-1])
    assert [len(d["taints"]) for d in bodies[0]["spec"]["devices"]] == [1, 2]


def test_release_gates_differ_where_the_releases_do(tmp_path: Path) -> None:
    assert "ConsumableShares" in G.gates_of_release("0.5.0-dev")
    assert "ConsumableShares" not in G.gates_of_release("v0.4.0")
    assert release_of(_ctx(tmp_path, "v0.4.0")) == "0.4.0"
    old = _ctx(tmp_path, "v0.4.0", {"FEATURE_GATES": "ConsumableShares=true,"})
    assert run_gpu_plugin(old) == 1
    assert isinstance(old.stderr, io.StringIO)
    assert "unrecognized feature gate: ConsumableShares" in old.stderr.getvalue()


def test_last_stable_chart_is_our_chart_at_that_version(tmp_path: Path) -> None:
    path = chart_at_version(tmp_path)
    meta = yaml.safe_load((path / "Chart.yaml").read_text())
    assert meta["version"] == meta["appVersion"] == LAST_STABLE_VERSION
    assert (path / "templates" / "kubeletplugin.yaml").is_file()


def test_controller_info_gauge_is_lazy_and_pprof_answers() -> None:
    m = ControllerMetrics("v0.5.0-dev")
    m.observe_rest("GET", "https://10.0.0.1:443/apis/x", 200, 0.01)
    text = m.render().decode()
    assert 'rest_client_requests_total{code="200",host="10.0.0.1:443",method="GET"} 1.0' in text
    assert names.METRIC_CD_INFO not in text
    m.set_status_counts({"Ready": 0, "NotReady": 0})
    assert names.METRIC_CD_INFO not in m.render().decode()
    m.set_status_counts({"Ready": 1, "NotReady": 1})
    text = m.render().decode()
    assert f'{names.METRIC_CD_INFO}{{status="Ready"}} 1.0' in text
    assert f'{names.METRIC_CD_INFO}{{status="NotReady"}} 1.0' in text
    assert pprof_response("", "/debug/pprof/", []) is None
    code, _, body = pprof_response("/debug/pprof", "/debug/pprof/", []) or (0, "", b"")
    assert code == 200 and b"Types of profiles available" in body
    assert (pprof_response("/debug/pprof", "/debug/pprof/cmdline", ["a", "b"]) or (0, "", b""))[2] == b"a\x00b"


def test_sigusr2_dump_is_written_where_the_container_sees_tmp(tmp_path: Path) -> None:
    handlers: dict[int, Any] = {}
    c = _ctx(tmp_path)
    c.on_signal = lambda signum, handler: handlers.__setitem__(signum, handler)  # type: ignore[attr-defined]
    c.host_path = lambda p: tmp_path / "root" / p.lstrip("/")  # type: ignore[attr-defined]
    said: list[str] = []
    assert install_dump_handler(c, names.BIN_GPU_PLUGIN, said.append)
    handlers[signal.SIGUSR2]()
    dump = (tmp_path / "root" / names.GOROUTINE_DUMP.lstrip("/")).read_text()
    assert names.GOROUTINE_DUMP_MARKER in dump and dump == goroutine_dump(names.BIN_GPU_PLUGIN)
    assert said == [f"Wrote: {names.GOROUTINE_DUMP}"]
