"""The twin's kubelet: real processes, statuses, logs, graceful deletion, crash loops, DRA seam."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from checks.twin.lambda_twin import Twin
from checks.twin.nvidia.smi import SmiGpu, SmiMig, render_smi_list
from kubetwin.api.core import Api
from kubetwin.api.resources import core
from kubetwin.kubelet.sandbox import namespaces_available
from kubetwin.kubelet.seam import (
    ContainerContext,
    PreparedDevice,
    PrepareResult,
    register_emulated_image,
    unregister_emulated_image,
)

PODS = core("pods")
NS = core("namespaces")


def wait_for(api: Api, rt: Any, ns: str, name: str, pred: Callable[[dict[str, Any] | None], bool],
             timeout: float = 15.0, what: str = "") -> dict[str, Any] | None:
    """Watch ``ns/name`` until ``pred(obj)`` (obj None = deleted); fails with what it waited for."""
    w = api.watch(rt, ns, field_selector=f"metadata.name={name}")
    try:
        cur = api.try_get(rt, ns, name)
        if pred(cur):
            return cur
        deadline = api.monotonic() + timeout
        while api.monotonic() < deadline:
            ev = w.next(timeout=max(0.0, deadline - api.monotonic()))
            if ev is None:
                continue
            obj = None if ev.type == "DELETED" else ev.object
            if pred(obj):
                return obj
        last = api.try_get(rt, ns, name)
        raise AssertionError(f"timed out waiting for {what or 'condition'} on {ns}/{name}; last: "
                             f"{(last or {}).get('status')}")
    finally:
        w.stop()


@pytest.fixture
def ns(twin: Twin) -> str:
    name = "t-" + uuid.uuid4().hex[:8]
    twin.api.create(NS, None, {"metadata": {"name": name}})
    return name


def pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "ctr", "image": "ubuntu:22.04", "command": command}], **spec}}


def cstatus(p: dict[str, Any] | None) -> dict[str, Any]:
    return ((p or {}).get("status", {}).get("containerStatuses") or [{}])[0]


def test_shell_pod_runs_logs_and_ends_through_term(twin: Twin, ns: str) -> None:
    api = twin.api
    api.create(PODS, ns, pod("sh", ["bash", "-c", "trap 'exit 0' TERM; echo hi; sleep 9999 & wait"]))
    running = wait_for(api, PODS, ns, "sh", lambda p: bool(p and p["status"].get("phase") == "Running"
                                                            and cstatus(p).get("ready")), what="Running+ready")
    assert running is not None
    conds = {c["type"]: c["status"] for c in running["status"]["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}
    kubelet = twin.kubelets[running["spec"]["nodeName"]]
    assert kubelet.read(ns, "sh", "ctr", previous=False) is not None
    assert wait_log(kubelet, ns, "sh", "hi\n")
    seen: list[dict[str, Any]] = []
    api.delete(PODS, ns, "sh")

    def gone(p: dict[str, Any] | None) -> bool:
        if p is not None:
            seen.append(p)
        return p is None

    wait_for(api, PODS, ns, "sh", gone, what="deletion")
    terminated = [cstatus(p)["state"]["terminated"] for p in seen if "terminated" in cstatus(p).get("state", {})]
    assert terminated, "the kubelet never reported the container as terminated"
    assert terminated[-1]["exitCode"] == 0 and terminated[-1]["reason"] == "Completed"
    reasons = [e["reason"] for e in api.list(core("events"), ns)[0]
               if e["involvedObject"].get("name") == "sh"]
    assert {"Pulled", "Created", "Started", "Killing"} <= set(reasons)


def wait_log(kubelet: Any, ns: str, name: str, text: str, timeout: float = 5.0) -> bool:
    ev = threading.Event()
    for chunk in kubelet.follow(ns, name, "ctr", offset=0):
        if text.encode() in b"".join(line.split(b" ", 1)[1] for line in chunk.splitlines(keepends=True)):
            return True
        if ev.wait(0.05) or kubelet.read(ns, name, "ctr", previous=False) is None:
            break
    return text.encode() in (kubelet.read(ns, name, "ctr", previous=False) or b"")


def test_missing_command_in_shell_exits_127_and_crash_loops(twin: Twin, ns: str) -> None:
    api = twin.api
    api.create(PODS, ns, pod("bad", ["bash", "-c", "no-such-binary-xyz"]))
    p = wait_for(api, PODS, ns, "bad", lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason")
                 == "CrashLoopBackOff", what="CrashLoopBackOff")
    cs = cstatus(p)
    assert cs["lastState"]["terminated"]["exitCode"] == 127
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] >= 1
    assert cs["state"]["waiting"]["message"].startswith("back-off ")
    assert p is not None and p["status"]["phase"] == "Running"
    msgs = [e["message"] for e in api.list(core("events"), ns)[0] if e["reason"] == "BackOff"]
    assert msgs and msgs[0].startswith("Back-off restarting failed container ctr in pod bad_")
    log = twin.kubelets[p["spec"]["nodeName"]].read(ns, "bad", "ctr", previous=True) or b""
    assert b"no-such-binary-xyz: command not found" in log


def test_exec_of_missing_binary_is_start_error_128(twin: Twin, ns: str) -> None:
    api = twin.api
    api.create(PODS, ns, pod("nobin", ["no-such-binary-xyz"], restartPolicy="Never"))
    p = wait_for(api, PODS, ns, "nobin", lambda p: bool(p and p["status"].get("phase") == "Failed"),
                 what="Failed")
    term = cstatus(p)["state"]["terminated"]
    assert term["exitCode"] == 128 and term["reason"] == "StartError"
    assert 'exec: "no-such-binary-xyz": executable file not found in $PATH' in term["message"]


def test_env_field_refs_and_init_containers(twin: Twin, ns: str) -> None:
    api = twin.api
    api.create(core("configmaps"), ns, {"metadata": {"name": "cm"}, "data": {"k": "from-cm"}})
    spec = {"restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "echo init-ran"]}],
            "containers": [{"name": "ctr", "image": "busybox", "command": ["sh", "-c",
                            "echo $MY_POD $MY_NS $MY_NODE $CM $(MY_POD) $(NOT_SET) $HOSTNAME; "
                            "nvidia-smi -L; echo rc=$?"],
                            "env": [{"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                    {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                    {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}]}
    api.create(PODS, ns, {"metadata": {"name": "envp"}, "spec": spec})
    p = wait_for(api, PODS, ns, "envp", lambda p: bool(p and p["status"].get("phase") == "Succeeded"),
                 what="Succeeded")
    assert p is not None
    node = p["spec"]["nodeName"]
    k = twin.kubelets[node]
    out = (k.read(ns, "envp", "ctr", previous=False) or b"").decode()
    # The kubelet expands $(MY_POD); $(NOT_SET) is left for the shell, which runs it as a command.
    assert f"envp {ns} {node} from-cm envp envp" in out
    assert "NOT_SET: not found" in out
    assert "rc=127" in out  # no DRA devices → no nvidia-smi in the container
    assert b"init-ran" in (k.read(ns, "envp", "init", previous=False) or b"")
    assert p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    ready = {c["type"]: c for c in p["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


def test_smi_list_renders_real_format() -> None:
    g0 = SmiGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-aaaa", pci_bus_id="00000000:07:00.0",
                mig=SmiMig("1g.5gb", "MIG-1111"))
    g0b = SmiGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-aaaa", pci_bus_id="00000000:07:00.0",
                 mig=SmiMig("3g.20gb", "MIG-2222"))
    g1 = SmiGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-bbbb", pci_bus_id="00000000:0B:00.0")
    assert render_smi_list([g1, g0, g0b]) == (
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)\n"
        "  MIG 1g.5gb      Device  0: (UUID: MIG-1111)\n"
        "  MIG 3g.20gb     Device  1: (UUID: MIG-2222)\n"
        "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)\n")


class _Plugin:
    """A DRA plugin in the test: fails the first prepare, then prepares one GPU per claim."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_first = True

    def prepare(self, claims: list[dict[str, str]]) -> dict[str, PrepareResult]:
        self.calls.append("prepare")
        if self.fail_first:
            self.fail_first = False
            return {c["uid"]: PrepareResult(error="boom from plugin") for c in claims}
        return {c["uid"]: PrepareResult(devices=(PreparedDevice(
            request_names=("gpu",), pool_name="n", device_name="gpu-0", cdi_device_ids=(f"x/claim={c['uid']}",),
            env={"NVIDIA_VISIBLE_DEVICES": "void"},
            view=SmiGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-1234")),)) for c in claims}

    def unprepare(self, claims: list[dict[str, str]]) -> dict[str, str]:
        self.calls.append("unprepare")
        return {c["uid"]: "" for c in claims}


def test_emulated_image_registers_dra_plugin_and_prepared_gpu_is_visible(twin: Twin, ns: str) -> None:
    api = twin.api
    plugin = _Plugin()
    started = threading.Event()

    def program(ctx: ContainerContext) -> int:
        ctx.register_dra_plugin("test.example.com", plugin)
        print(f"plugin up on {ctx.node_name} args={ctx.argv}", file=ctx.stdout)
        started.set()
        ctx.stop.wait()
        print("bye", file=ctx.stdout)
        return 0

    register_emulated_image("example.com/test-driver", lambda ctx: program if ctx.argv[:1] == ["plugin"] else None)
    try:
        api.create(PODS, ns, {"metadata": {"name": "drv"}, "spec": {"containers": [
            {"name": "ctr", "image": "example.com/test-driver:v1", "command": ["plugin"], "args": ["-v", "4"]}]}})
        assert started.wait(10)
        # A claim allocated and reserved as the scheduler would; the pod references it by name.
        claims = core("resourceclaims")
        node = twin.node_names[0]
        api.create(claims, ns, {"metadata": {"name": "c1"}, "spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "x"}}]}}})
        # a login shell resets PATH from /etc/profile: CDI tools must be in the image's standard dirs
        login_c = "-lc" if namespaces_available() else "-c"
        api.create(PODS, ns, {"metadata": {"name": "user"}, "spec": {
            "nodeName": node, "restartPolicy": "Never",
            "resourceClaims": [{"name": "g", "resourceClaimName": "c1"}],
            "containers": [{"name": "ctr", "image": "ubuntu", "command": ["bash", login_c,
                                                             "nvidia-smi -L; echo $NVIDIA_VISIBLE_DEVICES"],
                            "resources": {"claims": [{"name": "g"}]}}]}})
        user = api.get(PODS, ns, "user")
        c = api.get(claims, ns, "c1")
        c["status"] = {"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "test.example.com", "pool": node, "device": "gpu-0"}]}},
            "reservedFor": [{"resource": "pods", "name": "user", "uid": user["metadata"]["uid"]}]}
        api.update(claims, ns, "c1", c, subresource="status")
        p = wait_for(api, PODS, ns, "user", lambda p: bool(p and p["status"].get("phase") == "Succeeded"),
                     what="Succeeded")
        assert p is not None
        k = twin.kubelets[node]
        assert (k.read(ns, "user", "ctr", previous=False) or b"").decode().splitlines() and \
            [ln.split(" ", 1)[1] for ln in (k.read(ns, "user", "ctr", previous=False) or b"").decode().splitlines()] \
            == ["GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)", "void"]
        failed = [e["message"] for e in api.list(core("events"), ns)[0]
                  if e["reason"] == "FailedPrepareDynamicResources"]
        boom = ("Failed to prepare dynamic resources: prepare dynamic resources: NodePrepareResources failed for "
                "ResourceClaim c1: boom from plugin")
        assert boom in failed
        # The pod was bound before the test reserved the claim, so the kubelet may first have refused it.
        not_reserved = (f"Failed to prepare dynamic resources: prepare dynamic resources: pod user "
                        f"({user['metadata']['uid']}) is not allowed to use ResourceClaim c1 ({c['metadata']['uid']})")
        assert set(failed) <= {boom, not_reserved}
        wait_for(api, PODS, ns, "user", lambda p: "unprepare" in plugin.calls, what="unprepare")
        api.delete(PODS, ns, "drv")
        wait_for(api, PODS, ns, "drv", lambda p: p is None, what="driver pod deletion")
        assert k.dra_plugin("test.example.com") is None  # registration ended with the container
        log = (k.read(ns, "drv", "ctr", previous=False) or b"")
        assert log == b"" or b"bye" in log
    finally:
        unregister_emulated_image("example.com/test-driver")


def test_args_only_replace_the_image_cmd_like_kubectl_run(twin: Twin, ns: str) -> None:
    """``kubectl run t --image=busybox -- sh -c ...`` sets only ``args``: they replace the image's CMD."""
    api = twin.api
    api.create(PODS, ns, {"metadata": {"name": "args"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "ctr", "image": "busybox", "args": ["sh", "-c", "echo from-args"]}]}})
    p = wait_for(api, PODS, ns, "args", lambda p: (p or {}).get("status", {}).get("phase") in ("Succeeded", "Failed"),
                 what="finished")
    assert p is not None and p["status"]["phase"] == "Succeeded"
    assert b"from-args" in (twin.kubelets[p["spec"]["nodeName"]].read(ns, "args", "ctr", previous=False) or b"")
