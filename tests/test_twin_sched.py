"""The twin's scheduler and resourceclaim controller, in-process through ``Api`` (kubernetes-dra.md §4, §5, §7)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from checks.mig.geometry import gpu
from kubetwin.api.core import Api
from kubetwin.api.resources import core
from kubetwin.controllers.resourceclaim import POD_CLAIM_ANNOTATION, ResourceClaimController
from kubetwin.scheduler.scheduler import DELETE_PROTECTION, Scheduler
from tests.twin_dynmig import GPU_CLASS, MIG_CLASS, dynmig_slices, profile_is

PODS, NODES, CLAIMS = core("pods"), core("nodes"), core("resourceclaims")
SLICES, CLASSES, TEMPLATES = core("resourceslices"), core("deviceclasses"), core("resourceclaimtemplates")
EVENTS, NAMESPACES = core("events"), core("namespaces")
H100 = gpu("H100-SXM5-80GB")
A100 = gpu("A100-SXM4-40GB")


def make_node(name: str, ready: bool = True, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": spec,
            "status": {"allocatable": {"cpu": "8", "memory": "64Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.fixture()
def api() -> Api:
    a = Api()
    a.create(NAMESPACES, None, {"metadata": {"name": "default"}})
    for c in (GPU_CLASS, MIG_CLASS):
        a.create(CLASSES, None, copy.deepcopy(c))
    return a


def add_node(api: Api, name: str, geo: Any = H100, gpus: int = 1, **kw: Any) -> None:
    api.create(NODES, None, make_node(name, **kw))
    for s in dynmig_slices(geo, name, gpus):
        api.create(SLICES, None, s)


def pod(name: str, claims: list[dict[str, Any]] | None = None, limits: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if claims:
        container["resources"] = {"claims": [{"name": c["name"]} for c in claims]}
    if limits:
        container.setdefault("resources", {})["limits"] = limits
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                            "spec": {"containers": [container], **spec}}
    if claims:
        body["spec"]["resourceClaims"] = claims
    return body


def template(name: str, expr: str, cls: str = "mig.nvidia.com") -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"metadata": {"labels": {"app": "x"}},
                     "spec": {"devices": {"requests": [{"name": "mig", "exactly": {
                         "deviceClassName": cls, "allocationMode": "ExactCount", "count": 1,
                         "selectors": [{"cel": {"expression": expr}}]}}]}}}}


def settle(api: Api, ctl: ResourceClaimController, sched: Scheduler, rounds: int = 3) -> None:
    for _ in range(rounds):
        ctl.sync_all()
        sched.schedule_pending()


def condition(p: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled")


def events(api: Api, name: str, reason: str) -> list[dict[str, Any]]:
    items, _ = api.list(EVENTS, "default")
    return [e for e in items if e["involvedObject"].get("name") == name and e["reason"] == reason]


def test_template_claim_generated_allocated_reserved_and_pod_bound(api: Api) -> None:
    add_node(api, "node-a")
    api.create(TEMPLATES, "default", template("one-mig", profile_is("1g.10gb")))
    api.create(PODS, "default", pod("trainer", [{"name": "gpu", "resourceClaimTemplateName": "one-mig"}]))
    ctl, sched = ResourceClaimController(api), Scheduler(api)
    settle(api, ctl, sched)

    p = api.get(PODS, "default", "trainer")
    assert p["spec"]["nodeName"] == "node-a"
    assert condition(p)["status"] == "True"
    (st,) = p["status"]["resourceClaimStatuses"]
    assert st["name"] == "gpu" and st["resourceClaimName"].startswith("trainer-gpu-")
    assert len(st["resourceClaimName"]) == len("trainer-gpu-") + 5
    c = api.get(CLAIMS, "default", st["resourceClaimName"])
    assert c["metadata"]["annotations"][POD_CLAIM_ANNOTATION] == "gpu"
    assert c["metadata"]["labels"] == {"app": "x"}
    assert c["metadata"]["ownerReferences"][0]["uid"] == p["metadata"]["uid"]
    assert c["metadata"]["finalizers"] == [DELETE_PROTECTION]
    assert c["status"]["allocation"]["devices"]["results"][0]["device"] == "gpu-0-mig-1g10gb-19-0"
    assert c["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-a"]
    assert c["status"]["reservedFor"] == [{"resource": "pods", "name": "trainer", "uid": p["metadata"]["uid"]}]
    assert [e["message"] for e in events(api, "trainer", "Scheduled")] == [
        "Successfully assigned default/trainer to node-a"]

    # Pod finishes -> reservation dropped, allocation cleared, finalizer removed, generated claim deleted.
    p["status"]["phase"] = "Succeeded"
    api.update(PODS, "default", "trainer", p, subresource="status")
    ctl.sync_all()
    assert api.try_get(CLAIMS, "default", st["resourceClaimName"]) is None


def test_unschedulable_condition_event_and_retry_when_devices_free(api: Api) -> None:
    add_node(api, "node-a", geo=A100)
    api.create(TEMPLATES, "default", template("g1", profile_is("1g.5gb")))
    api.create(TEMPLATES, "default", template("g3", profile_is("3g.20gb")))
    ctl, sched = ResourceClaimController(api), Scheduler(api)
    for i in range(8):
        api.create(PODS, "default", pod(f"small-{i}", [{"name": "gpu", "resourceClaimTemplateName": "g1"}]))
        settle(api, ctl, sched, rounds=2)
    placed = {}
    for i in range(8):
        p = api.get(PODS, "default", f"small-{i}")
        if p["spec"].get("nodeName"):
            claim = api.get(CLAIMS, "default", p["status"]["resourceClaimStatuses"][0]["resourceClaimName"])
            placed[i] = claim["status"]["allocation"]["devices"]["results"][0]["device"]
    assert sorted(placed.values()) == [f"gpu-0-mig-1g5gb-19-{s}" for s in range(7)]
    pending = api.get(PODS, "default", "small-7")
    msg = ("0/1 nodes are available: 1 cannot allocate all claims. still not schedulable, preemption: 0/1 nodes "
           "are available: 1 Preemption is not helpful for scheduling.")
    assert condition(pending) | {"lastTransitionTime": None} == {
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
        "lastProbeTime": None, "lastTransitionTime": None}
    assert [e["type"] for e in events(api, "small-7", "FailedScheduling")] == ["Warning"]

    # Free every 1g except placements 1 and 5: a 3g.20gb still does not fit (fragmentation) ...
    for i, dev in placed.items():
        if not dev.endswith(("-1", "-5")):
            api.delete(PODS, "default", f"small-{i}", grace_period_seconds=0)
    api.create(PODS, "default", pod("big", [{"name": "gpu", "resourceClaimTemplateName": "g3"}]))
    settle(api, ctl, sched)
    assert not api.get(PODS, "default", "big")["spec"].get("nodeName")
    assert api.get(PODS, "default", "small-7")["spec"]["nodeName"] == "node-a"  # retried, took a freed 1g
    # ... until the blocking 1g at placement 5 goes away.
    blocker = next(i for i, d in placed.items() if d.endswith("-5"))
    api.delete(PODS, "default", f"small-{blocker}", grace_period_seconds=0)
    seven = api.get(PODS, "default", "small-7")
    seven_claim = api.get(CLAIMS, "default", seven["status"]["resourceClaimStatuses"][0]["resourceClaimName"])
    if int(seven_claim["status"]["allocation"]["devices"]["results"][0]["device"][-1]) >= 4:
        api.delete(PODS, "default", "small-7", grace_period_seconds=0)
    settle(api, ctl, sched)
    big = api.get(PODS, "default", "big")
    claim = api.get(CLAIMS, "default", big["status"]["resourceClaimStatuses"][0]["resourceClaimName"])
    assert claim["status"]["allocation"]["devices"]["results"][0]["device"] == "gpu-0-mig-3g20gb-9-4"


def test_cel_runtime_error_gives_scheduler_error(api: Api) -> None:
    add_node(api, "node-a")
    api.create(TEMPLATES, "default", template("bad", "device.attributes['gpu.nvidia.com'].model == 'x'"))
    api.create(PODS, "default", pod("p", [{"name": "gpu", "resourceClaimTemplateName": "bad"}]))
    settle(api, ResourceClaimController(api), Scheduler(api), rounds=1)
    cond = condition(api.get(PODS, "default", "p"))
    assert cond["reason"] == "SchedulerError"
    assert cond["message"].startswith(
        'running "DynamicResources" filter plugin: claim default/p-gpu-')
    want = ": selector #0 on device gpu.nvidia.com/node-a/gpu-0-mig-1g10gb-19-0: CEL runtime error: no such key: model."
    assert want in cond["message"]


def test_missing_class_and_node_filters_in_fit_error(api: Api) -> None:
    add_node(api, "node-a")
    api.create(NODES, None, make_node("node-b", ready=False))
    api.create(TEMPLATES, "default", template("nocls", "true", cls="nope.example.com"))
    api.create(PODS, "default", pod("p", [{"name": "gpu", "resourceClaimTemplateName": "nocls"}]))
    api.create(PODS, "default", pod("q", nodeSelector={"zone": "x"}))
    settle(api, ResourceClaimController(api), Scheduler(api), rounds=1)
    assert condition(api.get(PODS, "default", "p"))["message"] == (
        "0/2 nodes are available: request mig: device class nope.example.com does not exist. still not "
        "schedulable, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    assert condition(api.get(PODS, "default", "q"))["message"] == (
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated "
        "taint {node.kubernetes.io/not-ready: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful "
        "for scheduling.")


def test_pod_waits_for_template_claim_without_condition(api: Api) -> None:
    add_node(api, "node-a")
    api.create(PODS, "default", pod("p", [{"name": "gpu", "resourceClaimTemplateName": "later"}]))
    ctl, sched = ResourceClaimController(api), Scheduler(api)
    settle(api, ctl, sched, rounds=1)
    p = api.get(PODS, "default", "p")
    assert not p["spec"].get("nodeName") and not p["status"].get("conditions")
    assert events(api, "p", "FailedResourceClaimCreation")[0]["message"] == (
        'PodResourceClaim gpu: resource claim template "later": resourceclaimtemplate.resource.k8s.io "later" '
        "not found")
    api.create(TEMPLATES, "default", template("later", profile_is("1g.10gb")))
    settle(api, ctl, sched)
    assert api.get(PODS, "default", "p")["spec"]["nodeName"] == "node-a"


def test_shared_claim_reserved_by_two_pods_and_deallocated_after_both(api: Api) -> None:
    add_node(api, "node-a")
    api.create(CLAIMS, "default", {"metadata": {"name": "shared"}, "spec": {"devices": {"requests": [
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount",
                                    "count": 1}}]}}})
    ctl, sched = ResourceClaimController(api), Scheduler(api)
    for n in ("a", "b"):
        api.create(PODS, "default", pod(n, [{"name": "gpu", "resourceClaimName": "shared"}]))
    settle(api, ctl, sched)
    c = api.get(CLAIMS, "default", "shared")
    assert sorted(r["name"] for r in c["status"]["reservedFor"]) == ["a", "b"]
    assert c["status"]["allocation"]["devices"]["results"][0]["device"] == "gpu-0"
    api.delete(PODS, "default", "a", grace_period_seconds=0)
    ctl.sync_all()
    c = api.get(CLAIMS, "default", "shared")
    assert [r["name"] for r in c["status"]["reservedFor"]] == ["b"] and c["status"]["allocation"]
    api.delete(PODS, "default", "b", grace_period_seconds=0)
    ctl.sync_all()
    c = api.get(CLAIMS, "default", "shared")
    assert "allocation" not in c.get("status", {}) and not c["metadata"].get("finalizers")


def test_extended_resource_gets_special_claim(api: Api) -> None:
    add_node(api, "node-a")
    api.create(PODS, "default", pod("ext", limits={"nvidia.com/gpu": "1"}))
    settle(api, ResourceClaimController(api), Scheduler(api))
    p = api.get(PODS, "default", "ext")
    assert p["spec"]["nodeName"] == "node-a"
    ers = p["status"]["extendedResourceClaimStatus"]
    assert ers["requestMappings"] == [{"containerName": "main", "resourceName": "nvidia.com/gpu",
                                       "requestName": "container-0-request-0"}]
    assert ers["resourceClaimName"].startswith("ext-extended-resources-")
    c = api.get(CLAIMS, "default", ers["resourceClaimName"])
    assert c["metadata"]["annotations"]["resource.kubernetes.io/extended-resource-claim"] == "true"
    assert c["status"]["allocation"]["devices"]["results"] == [{
        "request": "container-0-request-0", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-0"}]
    assert c["status"]["reservedFor"][0]["uid"] == p["metadata"]["uid"]


def test_background_threads_schedule_on_events(api: Api) -> None:
    import threading

    add_node(api, "node-a")
    ctl, sched = ResourceClaimController(api), Scheduler(api)
    ctl.start()
    sched.start()
    try:
        done = threading.Event()
        w = api.watch(PODS, "default")
        api.create(TEMPLATES, "default", template("t", profile_is("1g.10gb")))
        api.create(PODS, "default", pod("bg", [{"name": "gpu", "resourceClaimTemplateName": "t"}]))
        while not done.is_set():
            ev = w.next(10)
            assert ev is not None, "pod was not scheduled within 10 s"
            if ev.object["spec"].get("nodeName"):
                done.set()
        w.stop()
    finally:
        sched.stop()
        ctl.stop()


def test_postfilter_deallocates_claim_pinned_to_unusable_node(api: Api) -> None:
    from kubetwin.scheduler.scheduler import SchedulerSettings

    add_node(api, "node-a")
    add_node(api, "node-b")
    api.create(CLAIMS, "default", {"metadata": {"name": "c"}, "spec": {"devices": {"requests": [
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount",
                                    "count": 1}}]}}})
    sched = Scheduler(api, SchedulerSettings())
    api.create(PODS, "default", pod("first", [{"name": "gpu", "resourceClaimName": "c"}]))
    sched.schedule_pending()
    assert api.get(PODS, "default", "first")["spec"]["nodeName"] == "node-a"  # first feasible by name
    api.delete(PODS, "default", "first", grace_period_seconds=0)
    c = api.get(CLAIMS, "default", "c")
    c["status"].pop("reservedFor")
    api.update(CLAIMS, "default", "c", c, subresource="status")  # allocated, unreserved
    node_a = api.get(NODES, None, "node-a")
    node_a["spec"]["unschedulable"] = True
    api.update(NODES, None, "node-a", node_a)
    api.create(PODS, "default", pod("second", [{"name": "gpu", "resourceClaimName": "c"}]))
    sched.schedule_pending()
    msg = condition(api.get(PODS, "default", "second"))["message"]
    assert msg == ("0/2 nodes are available: 1 node(s) were unschedulable, 1 resourceclaim not available on the "
                   "node. deallocation of ResourceClaim completed, preemption: 0/2 nodes are available: 2 "
                   "Preemption is not helpful for scheduling.")
    assert "allocation" not in api.get(CLAIMS, "default", "c")["status"]
    sched.schedule_pending()
    assert api.get(PODS, "default", "second")["spec"]["nodeName"] == "node-b"


def test_device_taint_rule_applies_on_1_37(api: Api) -> None:
    from kubetwin.scheduler.dra.allocator import Features
    from kubetwin.scheduler.scheduler import TAINT_RULES, SchedulerSettings

    add_node(api, "node-a")
    api.create(TAINT_RULES, None, {"metadata": {"name": "drain"}, "spec": {
        "deviceSelector": {"driver": "gpu.nvidia.com", "device": "gpu-0"},
        "taint": {"key": "example.com/maintenance", "value": "", "effect": "NoSchedule"}}})
    claim_body = {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": 1}}]}}}
    api.create(CLAIMS, "default", {"metadata": {"name": "c36"}, **copy.deepcopy(claim_body)})
    api.create(CLAIMS, "default", {"metadata": {"name": "c37"}, **copy.deepcopy(claim_body)})
    api.create(PODS, "default", pod("p37", [{"name": "gpu", "resourceClaimName": "c37"}]))
    Scheduler(api, SchedulerSettings(features=Features.for_version(37))).schedule_pending()
    assert condition(api.get(PODS, "default", "p37"))["reason"] == "Unschedulable"
    api.delete(PODS, "default", "p37", grace_period_seconds=0)
    api.create(PODS, "default", pod("p36", [{"name": "gpu", "resourceClaimName": "c36"}]))
    Scheduler(api).schedule_pending()  # 1.36: DeviceTaintRule API not served by default -> rule ignored
    assert api.get(PODS, "default", "p36")["spec"]["nodeName"] == "node-a"
