"""The twin's controllers through the in-process Api: Deployment, DaemonSet, Job, namespace, GC."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from checks.twin.lambda_twin import Twin
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core
from tests.test_twin_kubelet import wait_for

NS = core("namespaces")
PODS = core("pods")
SLEEP = ["bash", "-c", "trap 'exit 0' TERM; sleep 9999 & wait"]


@pytest.fixture
def ns(twin: Twin) -> str:
    name = "c-" + uuid.uuid4().hex[:8]
    twin.api.create(NS, None, {"metadata": {"name": name}})
    return name


def drop_finalizer(twin: Twin, rt: Any, ns: str, name: str, fin: str) -> None:
    """Remove one finalizer with a resourceVersion-guarded patch (other writers may race us)."""
    for _ in range(10):
        cur = twin.api.get(rt, ns, name)
        fins = [f for f in cur["metadata"].get("finalizers") or [] if f != fin]
        try:
            twin.api.patch(rt, ns, name, "application/merge-patch+json", {"metadata": {
                "finalizers": fins, "resourceVersion": cur["metadata"]["resourceVersion"]}})
            return
        except ApiError as exc:
            if exc.code != 409:
                raise
    raise AssertionError(f"could not drop {fin} from {ns}/{name}")


def template(app: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "ctr", "image": "ubuntu:22.04", "command": command}], **spec}}


def test_deployment_two_replicas_ready_and_rolls(twin: Twin, ns: str) -> None:
    api = twin.api
    dep = core("deployments")
    api.create(dep, ns, {"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template("web", SLEEP)}})
    d = wait_for(api, dep, ns, "web", lambda d: (d or {}).get("status", {}).get("availableReplicas") == 2
                 and d["status"].get("readyReplicas") == 2, what="2/2 available")
    assert d is not None
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    rs_list = api.list(core("replicasets"), ns)[0]
    assert len(rs_list) == 1
    h = rs_list[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs_list[0]["metadata"]["name"] == f"web-{h}"
    pods = api.list(PODS, ns, label_selector=f"pod-template-hash={h}")[0]
    assert len(pods) == 2 and all(p["metadata"]["name"].startswith(f"web-{h}-") for p in pods)
    assert any(e["reason"] == "ScalingReplicaSet" and e["message"] == f"Scaled up replica set web-{h} from 0 to 2"
               for e in api.list(core("events"), ns)[0])
    # Rolling update: a new template → a second RS scaled to 2, the old one to 0.
    api.patch(dep, ns, "web", "application/merge-patch+json",
              {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}})

    def rolled(d: dict[str, Any] | None) -> bool:
        s = (d or {}).get("status", {})
        return bool(d and s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == 2
                    and s.get("availableReplicas") == 2 and s.get("replicas") == 2)

    wait_for(api, dep, ns, "web", rolled, what="rollout complete")
    rs_list = api.list(core("replicasets"), ns)[0]
    assert sorted(int(r["spec"]["replicas"]) for r in rs_list) == [0, 2]


def test_daemonset_one_pod_per_gpu_node_with_nvidia_affinity(twin: Twin, ns: str) -> None:
    api = twin.api
    ds = core("daemonsets")
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In",
                               "values": ["true"]}]},
        {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}}}
    api.create(ds, ns, {"metadata": {"name": "plugin"}, "spec": {
        "selector": {"matchLabels": {"app": "plugin"}},
        "template": template("plugin", SLEEP, affinity=affinity,
                             tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])}})
    d = wait_for(api, ds, ns, "plugin", lambda d: (d or {}).get("status", {}).get("numberReady") == 1,
                 what="numberReady=1")
    assert d is not None and d["status"]["desiredNumberScheduled"] == len(twin.node_names) == 1
    pods = api.list(PODS, ns)[0]
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == twin.node_names[0]
    # A selector no node satisfies → nothing scheduled.
    api.create(ds, ns, {"metadata": {"name": "none"}, "spec": {
        "selector": {"matchLabels": {"app": "none"}},
        "template": template("none", SLEEP, nodeSelector={"nvidia.com/gpu.present": "false"})}})
    d2 = wait_for(api, ds, ns, "none", lambda d: "desiredNumberScheduled" in (d or {}).get("status", {}),
                  what="status")
    assert d2 is not None and d2["status"]["desiredNumberScheduled"] == 0


def test_job_with_three_completions_completes(twin: Twin, ns: str) -> None:
    api = twin.api
    jobs = core("jobs")
    api.create(jobs, ns, {"metadata": {"name": "j"}, "spec": {
        "completions": 3, "parallelism": 2,
        "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "w", "image": "busybox", "command": ["sh", "-c", "echo done"]}]}}}})
    j = wait_for(api, jobs, ns, "j", lambda j: any(c["type"] == "Complete" and c["status"] == "True"
                                                  for c in (j or {}).get("status", {}).get("conditions") or []),
                 what="Complete")
    assert j is not None and j["status"]["succeeded"] == 3 and "completionTime" in j["status"]
    pods = api.list(PODS, ns, label_selector="job-name=j")[0]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Succeeded" for p in pods)


def test_job_backoff_limit_fails(twin: Twin, ns: str) -> None:
    api = twin.api
    jobs = core("jobs")
    api.create(jobs, ns, {"metadata": {"name": "f"}, "spec": {
        "backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "w", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]}}}})
    j = wait_for(api, jobs, ns, "f", lambda j: any(c["type"] == "Failed" and c["status"] == "True"
                                                  for c in (j or {}).get("status", {}).get("conditions") or []),
                 what="Failed")
    assert j is not None and j["status"]["failed"] == 2
    failed = next(c for c in j["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"


def test_namespace_deletion_cascades(twin: Twin) -> None:
    api = twin.api
    name = "gone-" + uuid.uuid4().hex[:6]
    api.create(NS, None, {"metadata": {"name": name}})
    wait_for(api, core("serviceaccounts"), name, "default", lambda sa: sa is not None, what="default SA")
    api.create(PODS, name, {"metadata": {"name": "p"}, "spec": template("x", SLEEP)["spec"]})
    api.create(core("configmaps"), name, {"metadata": {"name": "cm", "finalizers": ["example.com/hold"]}})
    wait_for(api, PODS, name, "p", lambda p: (p or {}).get("status", {}).get("phase") == "Running", what="Running")
    api.delete(NS, None, name)
    ns_obj = api.get(NS, None, name)
    assert ns_obj["status"]["phase"] == "Terminating"
    wait_for(api, PODS, name, "p", lambda p: p is None, what="pod deleted by namespace controller")
    cm = wait_for(api, core("configmaps"), name, "cm", lambda c: bool(c and c["metadata"].get("deletionTimestamp")),
                  what="configmap marked")
    assert api.try_get(NS, None, name) is not None  # the finalizer holds the namespace
    assert cm is not None
    drop_finalizer(twin, core("configmaps"), name, "cm", "example.com/hold")
    wait_for(api, NS, None, name, lambda n: n is None, what="namespace gone")  # type: ignore[arg-type]


def test_gc_foreground_waits_for_dependents(twin: Twin, ns: str) -> None:
    api = twin.api
    cms = core("configmaps")
    owner = api.create(cms, ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
           "blockOwnerDeletion": True}
    api.create(cms, ns, {"metadata": {"name": "dep", "ownerReferences": [ref], "finalizers": ["example.com/x"]}})
    api.create(cms, ns, {"metadata": {"name": "orphan-me", "ownerReferences": [dict(ref, blockOwnerDeletion=False)]}})
    api.delete(cms, ns, "owner", propagation_policy="Foreground")
    dep = wait_for(api, cms, ns, "dep", lambda d: bool(d and d["metadata"].get("deletionTimestamp")),
                   what="dependent deleting")
    wait_for(api, cms, ns, "orphan-me", lambda d: d is None, what="non-blocking dependent deleted")
    o = api.get(cms, ns, "owner")
    assert "foregroundDeletion" in o["metadata"]["finalizers"]  # blocked by dep's finalizer
    assert dep is not None
    drop_finalizer(twin, cms, ns, "dep", "example.com/x")
    wait_for(api, cms, ns, "owner", lambda d: d is None, what="owner removed after dependents")


def test_gc_background_and_orphan(twin: Twin, ns: str) -> None:
    api = twin.api
    cms = core("configmaps")
    for owner_name, policy in (("bg", "Background"), ("orph", "Orphan")):
        owner = api.create(cms, ns, {"metadata": {"name": owner_name}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner_name, "uid": owner["metadata"]["uid"]}
        api.create(cms, ns, {"metadata": {"name": f"{owner_name}-child", "ownerReferences": [ref]}})
        api.delete(cms, ns, owner_name, propagation_policy=policy)
    wait_for(api, cms, ns, "bg-child", lambda d: d is None, what="background dependent deleted")
    child = wait_for(api, cms, ns, "orph-child", lambda d: bool(d and not d["metadata"].get("ownerReferences")),
                     what="orphaned dependent")
    assert child is not None
    wait_for(api, cms, ns, "orph", lambda d: d is None, what="orphaning owner removed")
