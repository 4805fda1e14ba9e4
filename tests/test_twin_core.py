"""The twin's API semantics, in-process (no HTTP): what every writer of the twin relies on."""

from __future__ import annotations

import pytest

from kubetwin.api.core import Api
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core

NS, PODS, CMS = core("namespaces"), core("pods"), core("configmaps")


def _pod(name: str = "", **spec: object) -> dict[str, object]:
    meta = {"name": name} if name else {"generateName": "p-"}
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


@pytest.fixture
def api() -> Api:
    a = Api()
    a.create(NS, None, {"metadata": {"name": "ns1"}})
    return a


def test_generate_name_uid_and_rv_are_assigned(api: Api) -> None:
    a = api.create(PODS, "ns1", _pod())
    b = api.create(PODS, "ns1", _pod())
    assert a["metadata"]["name"].startswith("p-") and len(a["metadata"]["name"]) == 7
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    assert a["status"]["phase"] == "Pending"


def test_create_conflicts_and_missing_namespace(api: Api) -> None:
    api.create(CMS, "ns1", {"metadata": {"name": "x"}})
    with pytest.raises(ApiError) as exc:
        api.create(CMS, "ns1", {"metadata": {"name": "x"}})
    assert (exc.value.code, exc.value.reason) == (409, "AlreadyExists")
    assert exc.value.message == 'configmaps "x" already exists'
    with pytest.raises(ApiError) as exc:
        api.create(CMS, "nope", {"metadata": {"name": "x"}})
    assert exc.value.code == 404 and exc.value.message == 'namespaces "nope" not found'


def test_stale_update_is_409_and_noop_update_keeps_rv(api: Api) -> None:
    cm = api.create(CMS, "ns1", {"metadata": {"name": "x"}, "data": {"a": "1"}})
    same = api.update(CMS, "ns1", "x", cm)
    assert same["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    cm2 = dict(cm, data={"a": "2"})
    newer = api.update(CMS, "ns1", "x", cm2)
    assert newer["metadata"]["resourceVersion"] != cm["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as exc:
        api.update(CMS, "ns1", "x", dict(cm, data={"a": "3"}))
    assert exc.value.code == 409 and exc.value.reason == "Conflict"


def test_finalizers_delay_deletion_until_removed(api: Api) -> None:
    api.create(CMS, "ns1", {"metadata": {"name": "f", "finalizers": ["example.com/x"]}})
    w = api.watch(CMS, "ns1", resource_version=str(api.store.current_rv()))
    marked = api.delete(CMS, "ns1", "f")
    assert marked["metadata"]["deletionTimestamp"]
    ev = w.next(1.0)
    assert ev is not None and ev.type == "MODIFIED"
    with pytest.raises(ApiError) as exc:
        api.update(CMS, "ns1", "f", dict(marked, metadata={**marked["metadata"],
                                                            "finalizers": ["example.com/x", "new/one"]}))
    assert exc.value.code == 422
    api.update(CMS, "ns1", "f", dict(marked, metadata={**marked["metadata"], "finalizers": []}))
    ev = w.next(1.0)
    assert ev is not None and ev.type == "DELETED"
    assert api.try_get(CMS, "ns1", "f") is None


def test_bound_pod_deletion_is_graceful_unbound_is_immediate(api: Api) -> None:
    api.create(PODS, "ns1", _pod("unbound"))
    api.delete(PODS, "ns1", "unbound")
    assert api.try_get(PODS, "ns1", "unbound") is None
    api.create(PODS, "ns1", _pod("bound", nodeName="n1", terminationGracePeriodSeconds=7))
    p = api.delete(PODS, "ns1", "bound")
    assert p["metadata"]["deletionGracePeriodSeconds"] == 7
    assert api.try_get(PODS, "ns1", "bound") is not None
    api.delete(PODS, "ns1", "bound", grace_period_seconds=0)
    assert api.try_get(PODS, "ns1", "bound") is None


def test_watch_selector_transitions_and_too_old(api: Api) -> None:
    api.create(CMS, "ns1", {"metadata": {"name": "s", "labels": {"app": "a"}}})
    w = api.watch(CMS, "ns1", label_selector="app=a")
    first = w.next(1.0)
    assert first is not None and first.type == "ADDED"
    cm = api.get(CMS, "ns1", "s")
    cm["metadata"]["labels"] = {"app": "b"}
    api.update(CMS, "ns1", "s", cm)
    gone = w.next(1.0)
    assert gone is not None and gone.type == "DELETED"  # stopped matching
    small = Api(store=__import__("kubetwin.api.store", fromlist=["Store"]).Store(history=3))
    small.create(NS, None, {"metadata": {"name": "n"}})
    for i in range(6):
        small.create(CMS, "n", {"metadata": {"name": f"c{i}"}})
    with pytest.raises(ApiError) as exc:
        small.watch(CMS, "n", resource_version="1")
    assert exc.value.code == 410 and exc.value.reason == "Expired"


def test_terminating_namespace_rejects_creates(api: Api) -> None:
    api.delete(NS, None, "ns1")
    assert api.get(NS, None, "ns1")["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as exc:
        api.create(CMS, "ns1", {"metadata": {"name": "late"}})
    assert exc.value.code == 403
    assert "because it is being terminated" in exc.value.message


def test_field_and_label_selectors(api: Api) -> None:
    api.create(PODS, "ns1", _pod("on-n1", nodeName="n1"))
    api.create(PODS, "ns1", _pod("on-n2", nodeName="n2"))
    items, _ = api.list(PODS, "ns1", field_selector="spec.nodeName=n1")
    assert [p["metadata"]["name"] for p in items] == ["on-n1"]
    items, _ = api.list(PODS, "ns1", field_selector="spec.nodeName!=n1,status.phase=Pending")
    assert [p["metadata"]["name"] for p in items] == ["on-n2"]
    with pytest.raises(ApiError) as exc:
        api.list(PODS, "ns1", field_selector="spec.bogus=1")
    assert exc.value.code == 400
