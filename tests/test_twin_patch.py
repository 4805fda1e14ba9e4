"""Patch algorithms of the twin's API: JSON patch, merge patch, strategic merge patch, server-side apply."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from kubetwin.api.patch import (
    PatchError,
    conflict_causes,
    conflict_message,
    from_fields_v1,
    json_patch,
    merge_patch,
    record_update,
    schema_for,
    server_side_apply,
    strategic_merge_patch,
    to_fields_v1,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)

# --------------------------------------------------------------------------------------------- JSON patch


DOC = {"metadata": {"name": "a", "labels": {"x/y": "1"}}, "spec": {"items": [1, 2, 3]}}


@pytest.mark.parametrize(("ops", "expected"), [
    ([{"op": "add", "path": "/spec/new", "value": {"a": 1}}], {"new": {"a": 1}, "items": [1, 2, 3]}),
    ([{"op": "add", "path": "/spec/items/-", "value": 4}], {"items": [1, 2, 3, 4]}),
    ([{"op": "add", "path": "/spec/items/0", "value": 0}], {"items": [0, 1, 2, 3]}),
    ([{"op": "remove", "path": "/spec/items/1"}], {"items": [1, 3]}),
    ([{"op": "replace", "path": "/spec/items", "value": []}], {"items": []}),
    ([{"op": "move", "from": "/spec/items", "path": "/spec/moved"}], {"moved": [1, 2, 3]}),
    ([{"op": "copy", "from": "/spec/items/2", "path": "/spec/c"}], {"items": [1, 2, 3], "c": 3}),
    ([{"op": "test", "path": "/spec/items/0", "value": 1},
      {"op": "remove", "path": "/spec/items/0"}], {"items": [2, 3]}),
])
def test_json_patch_operations(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(DOC)
    out = json_patch(DOC, ops)
    assert out["spec"] == expected
    assert before == DOC, "input must not be mutated"


def test_json_patch_escapes() -> None:
    out = json_patch(DOC, [{"op": "replace", "path": "/metadata/labels/x~1y", "value": "2"},
                           {"op": "add", "path": "/metadata/labels/t~0z", "value": "3"}])
    assert out["metadata"]["labels"] == {"x/y": "2", "t~z": "3"}


@pytest.mark.parametrize(("ops", "code", "fragment"), [
    ([{"op": "test", "path": "/spec/items/0", "value": 9}], 422, "test failed"),
    ([{"op": "test", "path": "/spec/items/0", "value": True}], 422, "test failed"),
    ([{"op": "remove", "path": "/spec/nope"}], 422, "missing"),
    ([{"op": "replace", "path": "/spec/nope", "value": 1}], 422, "missing"),
    ([{"op": "add", "path": "/nope/deeper", "value": 1}], 422, "missing"),
    ([{"op": "add", "path": "/spec/items/7", "value": 1}], 422, "out of range"),
    ([{"op": "frobnicate", "path": "/spec"}], 400, "frobnicate"),
    ([{"op": "add", "path": "/spec/x"}], 400, "missing value"),
    ({"op": "add"}, 400, "jsonpatch.Patch"),
    ([{"op": "move", "from": "/spec", "path": "/spec/inner"}], 422, "own child"),
])
def test_json_patch_errors(ops: Any, code: int, fragment: str) -> None:
    with pytest.raises(PatchError) as err:
        json_patch(DOC, ops)
    assert err.value.code == code
    assert fragment in err.value.message


def test_json_patch_is_atomic() -> None:
    with pytest.raises(PatchError):
        json_patch(DOC, [{"op": "remove", "path": "/spec/items"}, {"op": "test", "path": "/x", "value": 1}])
    assert DOC["spec"]["items"] == [1, 2, 3]


# -------------------------------------------------------------------------------------------- merge patch


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


# ------------------------------------------------------------------------------------ strategic merge patch


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "finalizers": ["a/b"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80}]},
                        {"name": "side", "image": "busybox"},
                    ],
                    "volumes": [{"name": "v", "hostPath": {"path": "/x"}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
    }


DEP_SCHEMA = schema_for("apps/v1", "Deployment")


def test_smp_kubectl_apply_shape_changes_image_and_deletes_env() -> None:
    # What kubectl apply sends after the user changed the image and removed env B from the manifest.
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}],
                            "env": [{"$patch": "delete", "name": "B"}], "image": "nginx:2", "name": "app"}],
        }}},
    }
    out = strategic_merge_patch(deployment(), patch, DEP_SCHEMA)
    app, side = out["spec"]["template"]["spec"]["containers"]
    assert app == {"name": "app", "image": "nginx:2", "env": [{"name": "A", "value": "1"}],
                   "ports": [{"containerPort": 80}]}
    assert side == {"name": "side", "image": "busybox"}
    assert out["metadata"]["annotations"] == {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert "$setElementOrder/containers" not in json.dumps(out)


def test_smp_new_item_appended_and_reordered_by_set_element_order() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "init"}, {"name": "app"}, {"name": "side"}],
        "containers": [{"name": "init", "image": "alpine"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEP_SCHEMA)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["init", "app", "side"]


def test_smp_retain_keys_switches_volume_source_and_strategy() -> None:
    patch = {"spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
        "template": {"spec": {"volumes": [{"$retainKeys": ["emptyDir", "name"], "emptyDir": {}, "name": "v"}]}},
    }}
    out = strategic_merge_patch(deployment(), patch, DEP_SCHEMA)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_smp_lists_without_strategy_are_replaced_and_null_deletes() -> None:
    patch = {"spec": {"replicas": None, "template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEP_SCHEMA)
    assert "replicas" not in out["spec"]
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_smp_primitive_set_and_delete_from_primitive_list() -> None:
    out = strategic_merge_patch(deployment(), {"metadata": {"finalizers": ["c/d", "a/b"]}}, DEP_SCHEMA)
    assert out["metadata"]["finalizers"] == ["a/b", "c/d"]
    out = strategic_merge_patch(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/b"]}}, DEP_SCHEMA)
    assert out["metadata"]["finalizers"] == ["c/d"]


def test_smp_patch_replace_directives() -> None:
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}, DEP_SCHEMA)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "x"}]
    out = strategic_merge_patch(deployment(), {"spec": {"selector": {"$patch": "replace", "matchLabels": {"z": "1"}}}},
                                DEP_SCHEMA)
    assert out["spec"]["selector"] == {"matchLabels": {"z": "1"}}
    out = strategic_merge_patch(deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, DEP_SCHEMA)
    assert "strategy" not in out["spec"]


def test_smp_merge_key_missing_is_bad_request() -> None:
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
                              DEP_SCHEMA)
    assert err.value.code == 400
    assert "merge key: name" in err.value.message


def test_smp_pod_status_conditions_merge_by_type_and_reserved_for_delete() -> None:
    pod = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
                      "containerStatuses": [{"name": "a", "ready": False}, {"name": "b", "ready": False}]}}
    out = strategic_merge_patch(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}],
                                                 "containerStatuses": [{"name": "a", "ready": True}]}},
                                schema_for("v1", "Pod"))
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                           {"type": "PodScheduled", "status": "True"}]
    # containerStatuses is atomic in core/v1 (no patchStrategy): replaced.
    assert out["status"]["containerStatuses"] == [{"name": "a", "ready": True}]
    claim = {"status": {"reservedFor": [{"resource": "pods", "name": "p", "uid": "1"},
                                        {"resource": "pods", "name": "q", "uid": "2"}]}}
    # The scheduler's unreserve patch (kubernetes-dra.md §8.7).
    out = strategic_merge_patch(claim, {"status": {"reservedFor": [{"$patch": "delete", "uid": "1"}]}},
                                schema_for("resource.k8s.io/v1", "ResourceClaim"))
    assert out["status"]["reservedFor"] == [{"resource": "pods", "name": "q", "uid": "2"}]


def test_smp_unknown_kind_is_merge_patch_semantics() -> None:
    assert schema_for("example.com/v1", "Widget") is None
    out = strategic_merge_patch({"spec": {"l": [1, 2], "m": {"a": 1}}}, {"spec": {"l": [3], "m": {"b": 2}}}, None)
    assert out == {"spec": {"l": [3], "m": {"a": 1, "b": 2}}}


# --------------------------------------------------------------------------------------- server-side apply


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["manager"], m["operation"]): m for m in obj["metadata"].get("managedFields", [])}


def test_ssa_create_records_apply_entry_in_fields_v1_format() -> None:
    obj, conflicts = server_side_apply(None, deployment(), manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    assert conflicts == []
    entry = managers(obj)[("helm", "Apply")]
    assert entry["apiVersion"] == "apps/v1"
    assert entry["time"] == "2026-03-01T12:00:00Z"
    assert entry["fieldsType"] == "FieldsV1"
    f = entry["fieldsV1"]
    assert "f:name" not in f["f:metadata"], "name is not a managed field"
    assert f["f:metadata"]["f:finalizers"] == {'v:"a/b"': {}}
    app = f["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert app["."] == {}
    assert set(app["f:env"]) == {'k:{"name":"A"}', 'k:{"name":"B"}'}
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in app["f:ports"]
    assert f["f:spec"]["f:template"]["f:spec"]["f:tolerations"] == {}, "atomic list is a leaf"
    assert obj["spec"]["replicas"] == 2
    assert from_fields_v1(to_fields_v1(from_fields_v1(f))) == from_fields_v1(f)


def test_ssa_reapply_dropping_fields_removes_them() -> None:
    first, _ = server_side_apply(None, deployment(), manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    second_cfg = deployment()
    del second_cfg["spec"]["replicas"]
    del second_cfg["metadata"]["labels"]
    second_cfg["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    second_cfg["spec"]["template"]["spec"]["containers"].pop()
    out, conflicts = server_side_apply(first, second_cfg, manager="helm", force=False, schema=DEP_SCHEMA,
                                       now=NOW + dt.timedelta(minutes=1))
    assert conflicts == []
    assert "replicas" not in out["spec"]
    assert "labels" not in out["metadata"]
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app"]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}]
    assert managers(out)[("helm", "Apply")]["time"] == "2026-03-01T12:01:00Z"


def test_ssa_dropped_field_owned_by_another_manager_stays() -> None:
    first, _ = server_side_apply(None, deployment(), manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    cfg = deployment()
    cfg["metadata"]["labels"]["team"] = "x"
    other, conflicts = server_side_apply(first, cfg, manager="other", force=False, schema=DEP_SCHEMA, now=NOW)
    assert conflicts == [], "same values are shared, not conflicts"
    cfg2 = deployment()
    del cfg2["metadata"]["labels"]
    out, _ = server_side_apply(other, cfg2, manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    assert out["metadata"]["labels"] == {"app": "web", "team": "x"}


def test_ssa_conflict_between_managers_and_force() -> None:
    first, _ = server_side_apply(None, deployment(), manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    scaled = copy.deepcopy(first)
    scaled["spec"]["replicas"] = 5
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9"
    scaled = record_update(first, scaled, manager="kubectl-client-side-apply", api_version="apps/v1", now=NOW)
    update_entry = managers(scaled)[("kubectl-client-side-apply", "Update")]
    assert update_entry["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert "f:replicas" not in managers(scaled)[("helm", "Apply")]["fieldsV1"]["f:spec"], "ownership moved"

    cfg = deployment()
    cfg["spec"]["replicas"] = 3
    cfg["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:3"
    same, conflicts = server_side_apply(scaled, cfg, manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    assert same == scaled
    assert {c.field for c in conflicts} == {".spec.replicas", '.spec.template.spec.containers[name="app"].image'}
    message = conflict_message(conflicts)
    assert message.startswith("Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" "
                              "using apps/v1:\n- ")
    assert conflict_message(conflicts[:1]) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        + conflicts[0].field)
    assert conflict_causes(conflicts)[0]["reason"] == "FieldManagerConflict"

    forced, conflicts = server_side_apply(scaled, cfg, manager="helm", force=True, schema=DEP_SCHEMA, now=NOW)
    assert conflicts == []
    assert forced["spec"]["replicas"] == 3
    assert ("kubectl-client-side-apply", "Update") not in managers(forced), "entry emptied by force is dropped"


def test_ssa_conflict_with_apply_manager_names_it_without_version() -> None:
    first, _ = server_side_apply(None, deployment(), manager="helm", force=False, schema=DEP_SCHEMA, now=NOW)
    cfg = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 7}}
    _, conflicts = server_side_apply(first, cfg, manager="kubectl", force=False, schema=DEP_SCHEMA, now=NOW)
    assert conflict_message(conflicts) == 'Apply failed with 1 conflict: conflict with "helm": .spec.replicas'


def test_ssa_ignores_status_on_main_resource_and_applies_it_on_status() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}}
    obj, _ = server_side_apply(None, pod, manager="m", force=False, schema=schema_for("v1", "Pod"), now=NOW)
    assert "status" not in obj
    status = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
              "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu-abcde"}]}}
    out, _ = server_side_apply(obj, status, manager="resourceclaim-controller", force=False,
                               schema=schema_for("v1", "Pod"), now=NOW, subresource="status")
    assert out["status"]["resourceClaimStatuses"][0]["resourceClaimName"] == "p-gpu-abcde"
    entry = managers(out)[("resourceclaim-controller", "Apply")]
    assert entry["subresource"] == "status"
    assert out["spec"] == obj["spec"]


def test_ssa_unknown_kind_lists_are_atomic() -> None:
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"l": [1, 2]}}
    obj, _ = server_side_apply(None, cr, manager="m", force=False, schema=None, now=NOW)
    assert managers(obj)[("m", "Apply")]["fieldsV1"] == {"f:spec": {"f:l": {}}}


def test_record_update_create_and_removed_fields() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}},
          "data": {"k": "v", "j": "w"}}
    created = record_update(None, cm, manager="kubectl-create", api_version="v1", now=NOW)
    fields = managers(created)[("kubectl-create", "Update")]["fieldsV1"]
    assert fields == {"f:data": {".": {}, "f:j": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}
    edited = copy.deepcopy(created)
    del edited["data"]["j"]
    edited["data"]["k"] = "changed"
    out = record_update(created, edited, manager="kubectl-edit", api_version="v1", now=NOW)
    assert managers(out)[("kubectl-edit", "Update")]["fieldsV1"] == {"f:data": {"f:k": {}}}
    assert managers(out)[("kubectl-create", "Update")]["fieldsV1"] == {
        "f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}, "the map itself stays owned"


def test_record_update_status_ownership_follows_subresource() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Pending"}}
    created = record_update(None, copy.deepcopy(pod), manager="kubectl-create", api_version="v1", now=NOW)
    assert "f:status" not in managers(created)[("kubectl-create", "Update")]["fieldsV1"]
    running = copy.deepcopy(created)
    running["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    out = record_update(created, running, manager="kubelet", api_version="v1", now=NOW, subresource="status")
    entry = managers(out)[("kubelet", "Update")]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:conditions": {'k:{"type":"Ready"}': {
        ".": {}, "f:status": {}, "f:type": {}}}, "f:phase": {}}}
