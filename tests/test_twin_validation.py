"""Validation causes with the apiserver's fields, reasons and wording; and server-side defaulting."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetwin.api.defaults import apply_defaults, image_pull_policy
from kubetwin.api.validation import invalid_message, validate

RC = ("resource.k8s.io/v1", "ResourceClaim")


def claim(requests: list[dict[str, Any]], **devices: Any) -> dict[str, Any]:
    return {"apiVersion": RC[0], "kind": RC[1], "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"devices": {"requests": requests, **devices}}}


GPU = {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}


def messages(api_version: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [f"{c.field}: {c.message}" for c in validate(api_version, kind, obj, old)]


@pytest.mark.parametrize(("requests", "devices", "expected"), [
    ([GPU], {}, []),
    ([{"name": "gpu", "exactly": {}}], {}, ["spec.devices.requests[0].exactly.deviceClassName: Required value"]),
    ([{"name": "gpu"}], {},
     ["spec.devices.requests[0]: Required value: exactly one of `exactly` or `firstAvailable` is required"]),
    ([{**GPU, "firstAvailable": [{"name": "a", "deviceClassName": "x"}]}], {},
     ["spec.devices.requests[0]: Invalid value: null: exactly one of `exactly` or `firstAvailable` is required, "
      "but multiple fields are set"]),
    ([GPU, GPU], {}, ['spec.devices.requests[1].name: Duplicate value: "gpu"']),
    ([{**GPU, "name": "GPU_1"}], {}, ['spec.devices.requests[0].name: Invalid value: "GPU_1": a lowercase RFC 1123 '
                                      "label must consist of lower case alphanumeric characters or '-', and must "
                                      "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                                      "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
    ([{"name": "gpu", "exactly": {"deviceClassName": "c", "allocationMode": "Some"}}], {},
     ['spec.devices.requests[0].exactly.allocationMode: Unsupported value: "Some": supported values: "All", '
      '"ExactCount"']),
    ([{"name": "gpu", "exactly": {"deviceClassName": "c", "count": 0, "allocationMode": "ExactCount"}}], {},
     ["spec.devices.requests[0].exactly.count: Invalid value: 0: must be greater than zero"]),
    ([{"name": "gpu", "exactly": {"deviceClassName": "c", "count": 2, "allocationMode": "All"}}], {},
     ["spec.devices.requests[0].exactly.count: Invalid value: 2: must not be specified when allocationMode is "
      "'All'"]),
    ([{"name": "gpu", "exactly": {"deviceClassName": "c", "selectors": [{"cel": {"expression": ""}}]}}], {},
     ["spec.devices.requests[0].exactly.selectors[0].cel.expression: Required value"]),
    ([GPU], {"constraints": [{"requests": ["gpu", "nic"], "matchAttribute": "resource.kubernetes.io/pcieRoot"}]},
     ['spec.devices.constraints[0].requests[1]: Invalid value: "nic": must be the name of a request in the claim '
      "or the name of a request and a subrequest separated by '/'"]),
    ([{"name": "mig", "firstAvailable": [{"name": "big", "deviceClassName": "mig.nvidia.com"}]}],
     {"constraints": [{"requests": ["mig/big"], "matchAttribute": "gpu.nvidia.com/parentUUID"}],
      "config": [{"requests": ["mig"], "opaque": {"driver": "gpu.nvidia.com", "parameters": {"kind": "X"}}}]}, []),
    ([GPU], {"config": [{"opaque": {"driver": "gpu.nvidia.com"}}]},
     ["spec.devices.config[0].opaque.parameters: Required value"]),
])
def test_resource_claim_spec(requests: list[dict[str, Any]], devices: dict[str, Any], expected: list[str]) -> None:
    assert messages(*RC, claim(requests, **devices)) == expected


def test_resource_claim_spec_is_immutable_and_status_rules() -> None:
    old = claim([GPU])
    new = copy.deepcopy(old)
    new["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "other"
    assert [c.message.endswith("field is immutable") and c.field for c in validate(*RC, new, old)] == ["spec"]
    reserved = copy.deepcopy(old)
    reserved["status"] = {"reservedFor": [{"resource": "pods", "name": "p", "uid": "1"}]}
    assert messages(*RC, reserved, old) == [
        "status.reservedFor: Forbidden: may not be specified when `allocated` is not set"]
    old["status"] = {"allocation": {"devices": {"results": [{"device": "gpu-0"}]}}}
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    adding = copy.deepcopy(old)
    adding["status"]["reservedFor"] = [{"resource": "pods", "name": "p", "uid": "1"}]
    assert messages(*RC, adding, old) == [
        "status.reservedFor: Forbidden: new entries may not be added while `deallocationRequested` or "
        "`deletionTimestamp` are set"]


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Always"}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}, "spec": base}


@pytest.mark.parametrize(("obj", "expected"), [
    (pod(), []),
    (pod(containers=[]), ["spec.containers: Required value"]),
    (pod(containers=[{"name": "c"}]), ["spec.containers[0].image: Required value"]),
    (pod(containers=[{"name": "c", "image": "a"}, {"name": "c", "image": "b"}]),
     ['spec.containers[1].name: Duplicate value: "c"']),
    (pod(restartPolicy="Sometimes"),
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    (pod(resourceClaims=[{"name": "gpu"}]),
     ['spec.resourceClaims[0]: Invalid value: "gpu": at least one of `resourceClaimName` or '
      "`resourceClaimTemplateName` must be set"]),
    (pod(resourceClaims=[{"name": "gpu", "resourceClaimName": "a", "resourceClaimTemplateName": "b"}]),
     ['spec.resourceClaims[0]: Invalid value: "gpu": at most one of `resourceClaimName` or '
      "`resourceClaimTemplateName` may be set"]),
    (pod(resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "t"}],
         containers=[{"name": "c", "image": "i", "resources": {"claims": [{"name": "gpu"}, {"name": "nic"}]}}]),
     ['spec.containers[0].resources.claims[1]: Not found: "nic": must be one of the names in '
      "pod.spec.resourceClaims: gpu"]),
])
def test_pod_validation(obj: dict[str, Any], expected: list[str]) -> None:
    assert messages("v1", "Pod", obj) == expected


def test_pod_update_allows_image_and_toleration_additions_only() -> None:
    old = pod(tolerations=[{"key": "a", "operator": "Exists"}])
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "busybox:2"
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    assert validate("v1", "Pod", new, old) == []
    new["spec"]["restartPolicy"] = "Never"
    causes = validate("v1", "Pod", new, old)
    assert [c.field for c in causes] == ["spec"]
    assert causes[0].reason == "FieldValueForbidden"
    assert causes[0].message.startswith("Forbidden: pod updates may not change fields other than "
                                        "`spec.containers[*].image`")


@pytest.mark.parametrize(("meta", "kind", "expected"), [
    ({"namespace": "d"}, "ConfigMap", ["metadata.name: Required value: name or generateName is required"]),
    ({"generateName": "x-", "namespace": "d"}, "ConfigMap", []),
    ({"name": "x"}, "ConfigMap", ["metadata.namespace: Required value"]),
    ({"name": "x", "namespace": "d"}, "DeviceClass", ["metadata.namespace: Forbidden: not allowed on this type"]),
    ({"name": "a.b"}, "Namespace", ['metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label must consist '
                                    "of lower case alphanumeric characters or '-', and must start and end with an "
                                    "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                                    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
    ({"name": "x", "namespace": "d", "labels": {"app": "bad value"}}, "ConfigMap",
     ['metadata.labels: Invalid value: "bad value": a valid label must be an empty string or consist of '
      "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
      "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
      "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]),
    ({"name": "x", "namespace": "d", "labels": {"Example.com/app": "v"}}, "ConfigMap",
     ['metadata.labels: Invalid value: "Example.com/app": prefix part a lowercase RFC 1123 subdomain must consist '
      "of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
      "(e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]"
      "([-a-z0-9]*[a-z0-9])?)*')"]),
    ({"name": "w"}, "Widget", []),
])
def test_metadata(meta: dict[str, Any], kind: str, expected: list[str]) -> None:
    assert messages("v1", kind, {"metadata": meta}) == expected


def rslice(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"driver": "gpu.nvidia.com", "pool": {"name": "n", "generation": 1, "resourceSliceCount": 1},
                            "nodeName": "n", "devices": [{"name": "gpu-0", "attributes": {"index": {"int": 0}}}]}
    base.update(spec)
    return {"metadata": {"name": "s"}, "spec": {k: v for k, v in base.items() if v is not None}}


@pytest.mark.parametrize(("obj", "expected"), [
    (rslice(), []),
    (rslice(nodeName=None), ["spec: Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
                             "`perDeviceNodeSelection` is required"]),
    (rslice(allNodes=True), ["spec: Invalid value: null: exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
                             "`perDeviceNodeSelection` is required, but multiple fields are set"]),
    (rslice(devices=[{"name": "gpu-0"}, {"name": "gpu-0"}]), ['spec.devices[1].name: Duplicate value: "gpu-0"']),
    (rslice(devices=[{"name": "g", "attributes": {"x": {"int": 1, "string": "a"}}}]),
     ['spec.devices[0].attributes[x]: Invalid value: {"int":1,"string":"a"}: exactly one value must be specified']),
    (rslice(devices=[{"name": "g", "attributes": {"driverVersion": {"version": "1.2"}}}]),
     ['spec.devices[0].attributes[driverVersion].version: Invalid value: "1.2": must be a string compatible with '
      "semver.org spec 2.0.0"]),
    (rslice(pool={"name": "n", "resourceSliceCount": 0}),
     ["spec.pool.resourceSliceCount: Invalid value: 0: must be greater than zero"]),
    (rslice(sharedCounters=[{"name": "gpu-0-counter-set", "counters": {"memory": {"value": "80Gi"}}}]),
     ["spec: Invalid value: null: only one of `sharedCounters` or `devices` is allowed"]),
])
def test_resource_slice(obj: dict[str, Any], expected: list[str]) -> None:
    assert messages("resource.k8s.io/v1", "ResourceSlice", obj) == expected


def test_resource_slice_immutable_driver() -> None:
    old = rslice()
    new = rslice(driver="other.example.com")
    assert messages("resource.k8s.io/v1", "ResourceSlice", new, old) == [
        'spec.driver: Invalid value: "other.example.com": field is immutable']


def test_workload_selector_must_match_template() -> None:
    dep = {"metadata": {"name": "d", "namespace": "n"},
           "spec": {"selector": {"matchLabels": {"app": "a"}},
                    "template": {"metadata": {"labels": {"app": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Always"}}}}
    assert messages("apps/v1", "Deployment", dep) == [
        'spec.template.metadata.labels: Invalid value: {"app":"b"}: `selector` does not match template `labels`']
    job = {"metadata": {"name": "j", "namespace": "n"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Always"}}}}
    assert messages("batch/v1", "Job", job) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']


def test_invalid_message() -> None:
    causes = validate(*RC, claim([{"name": "gpu", "exactly": {}}, {"name": "x"}]))
    assert invalid_message("ResourceClaim", "resource.k8s.io", "c", causes[:1]) == (
        'ResourceClaim.resource.k8s.io "c" is invalid: spec.devices.requests[0].exactly.deviceClassName: '
        "Required value")
    text = invalid_message("Pod", "", "p", causes)
    assert text.startswith('Pod "p" is invalid: [spec.devices.requests[0].exactly.deviceClassName: Required value, ')
    assert text.endswith("]")


# ------------------------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(("image", "policy"), [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/img", "Always"), ("localhost:5000/img:v1", "IfNotPresent"),
    ("nginx@sha256:abc", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_pod_defaults_and_kept_values() -> None:
    obj = pod(restartPolicy="Never")
    obj["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    apply_defaults("v1", "Pod", obj)
    spec = obj["spec"]
    assert spec["restartPolicy"] == "Never", "client values win"
    assert (spec["terminationGracePeriodSeconds"], spec["dnsPolicy"], spec["schedulerName"]) == (
        30, "ClusterFirst", "default-scheduler")
    assert (spec["serviceAccountName"], spec["enableServiceLinks"], spec["priority"], spec["securityContext"]) == (
        "default", True, 0, {})
    c = spec["containers"][0]
    assert (c["imagePullPolicy"], c["terminationMessagePath"], c["terminationMessagePolicy"]) == (
        "Always", "/dev/termination-log", "File")
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert [t["key"] for t in spec["tolerations"]] == ["node.kubernetes.io/not-ready",
                                                        "node.kubernetes.io/unreachable"]
    assert all(t["tolerationSeconds"] == 300 and t["effect"] == "NoExecute" for t in spec["tolerations"])
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    again = copy.deepcopy(obj)
    apply_defaults("v1", "Pod", again)
    assert again == obj, "defaulting is idempotent"
    assert validate("v1", "Pod", obj) == []


def test_workload_claim_namespace_defaults() -> None:
    dep: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}
    apply_defaults("apps/v1", "Deployment", dep)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (dep["spec"]["revisionHistoryLimit"], dep["spec"]["progressDeadlineSeconds"]) == (10, 600)
    tmpl = dep["spec"]["template"]["spec"]
    assert tmpl["restartPolicy"] == "Always" and "serviceAccountName" not in tmpl, "admission only on pods"
    ds: dict[str, Any] = {"spec": {"template": {"spec": {"containers": []}}}}
    apply_defaults("apps/v1", "DaemonSet", ds)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1,
                                                                                        "maxSurge": 0}}
    job: dict[str, Any] = {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}
    apply_defaults("batch/v1", "Job", job)
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["backoffLimit"],
            job["spec"]["completionMode"]) == (1, 1, 6, "NonIndexed")
    rc = claim([{"name": "a", "exactly": {"deviceClassName": "x"}},
                {"name": "b", "exactly": {"deviceClassName": "x", "allocationMode": "All"}},
                {"name": "c", "firstAvailable": [{"name": "s", "deviceClassName": "x", "count": 0}]}])
    apply_defaults(*RC, rc)
    reqs = rc["spec"]["devices"]["requests"]
    assert reqs[0]["exactly"] == {"deviceClassName": "x", "allocationMode": "ExactCount", "count": 1}
    assert reqs[1]["exactly"] == {"deviceClassName": "x", "allocationMode": "All"}
    assert reqs[2]["firstAvailable"][0]["count"] == 1
    ns: dict[str, Any] = {"metadata": {"name": "team"}}
    apply_defaults("v1", "Namespace", ns)
    assert ns == {"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}},
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    svc: dict[str, Any] = {"spec": {"ports": [{"port": 80}]}}
    apply_defaults("v1", "Service", svc)
    assert (svc["spec"]["type"], svc["spec"]["sessionAffinity"]) == ("ClusterIP", "None")
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
