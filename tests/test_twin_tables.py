"""Server-side Table printing: kubectl's columns and cell values (pod STATUS, claim STATE, ages)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubetwin.api.tables import claim_state, human_duration, pod_status, to_table

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
T0 = "2026-03-01T11:55:00Z"


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (4 * 3600, "4h"), (4 * 3600 + 60 * 7, "4h7m"),
    (8 * 3600 + 60 * 7, "8h"), (47 * 3600, "47h"), (2 * 86400, "2d"), (2 * 86400 + 3 * 3600, "2d3h"),
    (30 * 86400, "30d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def pod(phase: str = "Pending", containers: list[dict[str, Any]] | None = None,
        init: list[dict[str, Any]] | None = None, n_init: int = 0, deleting: bool = False,
        conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "d", "creationTimestamp": T0}
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T11:59:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": meta,
            "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": f"i{n}"} for n in range(n_init)]},
            "status": status}


RUNNING = {"name": "c", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": T0}}}
CREATING = {"name": "c", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
DONE = {"name": "c", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
ERROR = {"name": "c", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
CRASH = {"name": "c", "ready": False, "restartCount": 4,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-03-01T11:58:00Z"}}}
INIT_WAIT = {"name": "i0", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
INIT_OK = {"name": "i0", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}
INIT_FAIL = {"name": "i0", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}


@pytest.mark.parametrize(("obj", "status", "ready"), [
    (pod("Pending"), "Pending", 0),
    (pod("Pending", [CREATING]), "ContainerCreating", 0),
    (pod("Running", [RUNNING]), "Running", 1),
    (pod("Succeeded", [DONE]), "Completed", 0),
    (pod("Failed", [ERROR]), "Error", 0),
    (pod("Running", [CRASH]), "CrashLoopBackOff", 0),
    (pod("Running", [RUNNING], deleting=True), "Terminating", 1),
    (pod("Succeeded", [DONE], deleting=True), "Completed", 0),
    (pod("Pending", [CREATING], [INIT_WAIT], n_init=1), "Init:0/1", 0),
    (pod("Pending", [CREATING], [INIT_OK, {**INIT_WAIT, "name": "i1"}], n_init=2), "Init:1/2", 0),
    (pod("Pending", [CREATING], [INIT_FAIL], n_init=1), "Init:ExitCode:3", 0),
    (pod("Pending", [CREATING], [{**INIT_WAIT, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}], n_init=1),
     "Init:CrashLoopBackOff", 0),
    (pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     "SchedulingGated", 0),
])
def test_pod_status_column(obj: dict[str, Any], status: str, ready: int) -> None:
    reason, n_ready, _, _ = pod_status(obj)
    assert (reason, n_ready) == (status, ready)


def test_pod_table_columns_and_restarts_ago() -> None:
    obj = pod("Running", [CRASH])
    obj["spec"]["nodeName"] = "node-a"
    obj["status"]["podIPs"] = [{"ip": "10.0.0.7"}]
    table = to_table("Pod", [obj], now=NOW, resource_version="42")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42"}
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                     "Readiness Gates"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert table["rows"][0]["cells"] == ["p", "0/1", "CrashLoopBackOff", "4 (2m ago)", "5m", "10.0.0.7", "node-a",
                                         "<none>", "<none>"]
    row_obj = table["rows"][0]["object"]
    assert row_obj["kind"] == "PartialObjectMetadata" and row_obj["metadata"]["namespace"] == "d"
    narrow = to_table("Pod", [obj], now=NOW, wide=False, include_object="None")
    assert narrow["rows"][0] == {"cells": ["p", "0/1", "CrashLoopBackOff", "4 (2m ago)", "5m"]}


def claim(allocated: bool, reserved: bool, deleted: bool) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if allocated:
        status["allocation"] = {"devices": {"results": []}}
    if reserved:
        status["reservedFor"] = [{"resource": "pods", "name": "p", "uid": "u"}]
    meta: dict[str, Any] = {"name": "c", "creationTimestamp": T0}
    if deleted:
        meta["deletionTimestamp"] = T0
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize(("allocated", "reserved", "deleted", "state"), [
    (False, False, False, "pending"),
    (True, False, False, "allocated"),
    (True, True, False, "allocated,reserved"),
    (True, True, True, "deleted,allocated,reserved"),
    (False, False, True, "deleted"),
])
def test_claim_state(allocated: bool, reserved: bool, deleted: bool, state: str) -> None:
    assert claim_state(claim(allocated, reserved, deleted)) == state
    table = to_table("ResourceClaim", [claim(allocated, reserved, deleted)], now=NOW)
    assert table["rows"][0]["cells"] == ["c", state, "5m"]


def test_resource_slice_deployment_node_and_generic_rows() -> None:
    rs = {"metadata": {"name": "00000-gpu.nvidia.com-n-abcde", "creationTimestamp": T0},
          "spec": {"driver": "gpu.nvidia.com", "nodeName": "n", "pool": {"name": "n", "generation": 1}}}
    t = to_table("ResourceSlice", [rs], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Node", "Driver", "Pool", "Age"]
    assert t["rows"][0]["cells"] == ["00000-gpu.nvidia.com-n-abcde", "n", "gpu.nvidia.com", "n", "5m"]

    dep = {"metadata": {"name": "web", "creationTimestamp": T0},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}},
           "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}}
    assert to_table("Deployment", [dep], now=NOW)["rows"][0]["cells"] == [
        "web", "1/2", 2, 1, "5m", "a", "nginx", "app=web"]

    node = {"metadata": {"name": "n", "creationTimestamp": T0, "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.36.0"},
                       "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}}
    assert to_table("Node", [node], now=NOW, wide=False)["rows"][0]["cells"] == [
        "n", "Ready,SchedulingDisabled", "worker", "5m", "v1.36.0"]

    widget = {"metadata": {"name": "w", "creationTimestamp": "2026-02-27T12:00:00Z"}}
    t = to_table("Widget", [widget], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Age"]
    assert t["rows"][0]["cells"] == ["w", "2d"]


def test_job_and_event_rows() -> None:
    job = {"metadata": {"name": "j", "creationTimestamp": T0}, "spec": {"completions": 3, "parallelism": 1},
           "status": {"succeeded": 3, "startTime": T0, "completionTime": "2026-03-01T11:55:40Z",
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    assert to_table("Job", [job], now=NOW, wide=False)["rows"][0]["cells"] == ["j", "Complete", "3/3", "40s", "5m"]
    event = {"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Pod", "name": "p"}, "type": "Warning",
             "reason": "FailedScheduling", "message": "0/1 nodes are available", "lastTimestamp": T0,
             "firstTimestamp": T0, "count": 1}
    assert to_table("Event", [event], now=NOW, wide=False)["rows"][0]["cells"] == [
        "5m", "Warning", "FailedScheduling", "pod/p", "0/1 nodes are available"]
