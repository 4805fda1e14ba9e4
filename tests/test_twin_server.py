"""The twin's HTTPS API server driven by the official Python client and raw HTTPS (no mocks)."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kubetwin.api.core import Api
from kubetwin.api.server import ApiServer
from kubetwin.api.store import Store
from kubetwin.api.tls import make_serving_cert
from kubetwin.api.webhooks import MutatingWebhookAdmission, WebhookAdmission


class MemoryLogs:
    """A LogSource holding timestamped lines in memory (the kubelet's files, minus the files)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str, str], bytearray] = {}
        self.cond = threading.Condition()
        self.done: set[tuple[str, str, str]] = set()

    def write(self, key: tuple[str, str, str], line: str, when: dt.datetime) -> None:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
        with self.cond:
            self.data.setdefault(key, bytearray()).extend(f"{stamp} {line}\n".encode())
            self.cond.notify_all()

    def end(self, key: tuple[str, str, str]) -> None:
        with self.cond:
            self.done.add(key)
            self.cond.notify_all()

    def read(self, namespace: str, pod: str, container: str, *, previous: bool) -> bytes | None:
        buf = self.data.get((namespace, pod, container))
        return None if buf is None else bytes(buf)

    def follow(self, namespace: str, pod: str, container: str, *, offset: int) -> Iterator[bytes]:
        key = (namespace, pod, container)
        while True:
            with self.cond:
                buf = self.data.get(key, bytearray())
                if len(buf) <= offset and key not in self.done:
                    self.cond.wait(0.5)
                buf = self.data.get(key, bytearray())
                chunk, finished = bytes(buf[offset:]), key in self.done
            offset += len(chunk)
            yield chunk
            if finished and not chunk:
                return


def _ns(api: Api, name: str) -> None:
    api.create(api.rt("v1", "Namespace"), None, {"metadata": {"name": name}})


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, Path, MemoryLogs]]:
    api = Api()
    _ns(api, "default")
    logs = MemoryLogs()
    srv = ApiServer(api, log_source=logs).start()
    kc = tmp_path_factory.mktemp("kc") / "config"
    srv.write_kubeconfig(kc)
    yield srv, kc, logs
    srv.stop()


@pytest.fixture(scope="module")
def k8s(twin: tuple[ApiServer, Path, MemoryLogs]) -> client.ApiClient:
    return config.new_client_from_config(str(twin[1]))


def _raw(srv: ApiServer, method: str, path: str, body: Any = None, *, token: str | None = "",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cadata=srv.ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token or srv.token}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, out


def test_token_required_and_kubeconfig_private(twin: tuple[ApiServer, Path, MemoryLogs]) -> None:
    srv, kc, _ = twin
    status, _, body = _raw(srv, "GET", "/api/v1/namespaces", token=None)
    assert status == 401
    assert json.loads(body)["reason"] == "Unauthorized"
    status, _, _ = _raw(srv, "GET", "/api/v1/namespaces", token="wrong")
    assert status == 401
    assert _raw(srv, "GET", "/readyz", token=None)[0] == 200
    assert kc.stat().st_mode & 0o077 == 0
    assert srv.token not in Path(srv.url).as_posix()


def test_version_discovery_openapi(twin: tuple[ApiServer, Path, MemoryLogs], k8s: client.ApiClient) -> None:
    srv = twin[0]
    v = client.VersionApi(k8s).get_code()
    assert (v.major, v.minor, v.git_version) == ("1", "36", "v1.36.0")
    agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, headers, body = _raw(srv, "GET", "/apis", headers={"Accept": agg})
    assert status == 200
    assert headers["content-type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {i["metadata"]["name"]: i for i in json.loads(body)["items"]}
    claims = [r for r in groups["resource.k8s.io"]["versions"][0]["resources"] if r["resource"] == "resourceclaims"]
    assert claims[0]["scope"] == "Namespaced" and claims[0]["subresources"][0]["subresource"] == "status"
    core = json.loads(_raw(srv, "GET", "/api/v1")[2])
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods/log"]["kind"] == "Pod" and by_name["pods/log"]["verbs"] == ["get"]
    assert by_name["pods/binding"]["verbs"] == ["create"]
    assert "po" in by_name["pods"]["shortNames"]
    root = json.loads(_raw(srv, "GET", "/openapi/v3")[2])
    url = root["paths"]["apis/resource.k8s.io/v1"]["serverRelativeURL"]
    doc = json.loads(_raw(srv, "GET", url)[2])
    ops = [p["patch"] for p in doc["paths"].values() if "patch" in p]
    rc = [o for o in ops if o["x-kubernetes-group-version-kind"]["kind"] == "ResourceClaim"]
    assert any(prm["name"] == "fieldValidation" and prm["in"] == "query" for prm in rc[0]["parameters"])
    assert _raw(srv, "GET", "/openapi/v2")[0] == 404


def test_crud_conflicts_and_errors(k8s: client.ApiClient) -> None:
    v1 = client.CoreV1Api(k8s)
    cm = v1.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}, "data": {"a": "1"}})
    assert cm.metadata.name.startswith("gen-") and len(cm.metadata.name) == 9
    assert cm.metadata.uid and int(cm.metadata.resource_version) > 0
    assert cm.metadata.managed_fields[0].manager == "OpenAPI-Generator"
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("default", {"metadata": {"name": cm.metadata.name}})
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    stale = v1.read_namespaced_config_map(cm.metadata.name, "default")
    cm.data = {"a": "2"}
    v1.replace_namespaced_config_map(cm.metadata.name, "default", cm)
    stale.data = {"a": "3"}
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_config_map(cm.metadata.name, "default", stale)
    assert exc.value.status == 409 and "the object has been modified" in json.loads(exc.value.body)["message"]
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("default", {"metadata": {}})
    body = json.loads(exc.value.body)
    assert exc.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_config_map("nope", "default")
    assert exc.value.status == 404 and json.loads(exc.value.body)["message"] == 'configmaps "nope" not found'
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("missing-ns", {"metadata": {"name": "x"}})
    assert exc.value.status == 404
    st = v1.delete_namespaced_config_map(cm.metadata.name, "default")
    assert st["status"] == "Success" and st["details"]["kind"] == "configmaps"


def test_strict_field_validation(twin: tuple[ApiServer, Path, MemoryLogs]) -> None:
    srv = twin[0]
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict", "bogus": 1}, "spec": {}}
    status, _, out = _raw(srv, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", body)
    assert status == 400
    assert json.loads(out)["message"] == ('strict decoding error: unknown field "spec", '
                                          'unknown field "metadata.bogus"')
    status, headers, _ = _raw(srv, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", body)
    assert status == 201 and "unknown field" in headers["warning"]
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"
    status, _, out = _raw(srv, "POST", "/api/v1/namespaces/default/configmaps", yaml_body,
                          headers={"Content-Type": "application/yaml"})
    assert status == 201 and json.loads(out)["data"] == {"k": "v"}


def test_patch_types(twin: tuple[ApiServer, Path, MemoryLogs], k8s: client.ApiClient) -> None:
    srv = twin[0]
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "p", "labels": {"a": "1"}}, "data": {"x": "1"}})
    v1.patch_namespaced_config_map("p", "default", [{"op": "add", "path": "/data/y", "value": "2"}])
    v1.patch_namespaced_config_map("p", "default", {"metadata": {"labels": {"b": "2"}}})  # strategic merge
    v1.patch_namespaced_config_map("p", "default", {"data": {"x": None}},
                                   _content_type="application/merge-patch+json")
    got = v1.read_namespaced_config_map("p", "default")
    assert got.data == {"y": "2"} and got.metadata.labels == {"a": "1", "b": "2"}
    apply = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "v"}}
    status, _, out = _raw(srv, "PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=tester", apply,
                          headers={"Content-Type": "application/apply-patch+yaml"})
    assert status == 201, out
    status, _, out = _raw(srv, "PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=tester", apply,
                          headers={"Content-Type": "application/apply-patch+yaml"})
    assert status == 200
    status, _, _ = _raw(srv, "PATCH", "/api/v1/namespaces/default/configmaps/ssa", apply,
                        headers={"Content-Type": "application/apply-patch+yaml"})
    assert status == 400  # apply needs an explicit field manager
    status, _, out = _raw(srv, "PATCH", "/api/v1/namespaces/default/configmaps/ssa?dryRun=All",
                          {"data": {"k": "dry"}}, headers={"Content-Type": "application/merge-patch+json"})
    assert status == 200 and json.loads(out)["data"]["k"] == "dry"
    assert v1.read_namespaced_config_map("ssa", "default").data["k"] == "v"


def test_selectors_tables_and_binding(twin: tuple[ApiServer, Path, MemoryLogs], k8s: client.ApiClient) -> None:
    srv = twin[0]
    v1 = client.CoreV1Api(k8s)
    for name, node, tier in (("s1", "n1", "web"), ("s2", "n2", "web"), ("s3", None, "db")):
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        v1.create_namespaced_pod("default", {"metadata": {"name": name, "labels": {"tier": tier}}, "spec": spec})
    names = [p.metadata.name for p in v1.list_namespaced_pod("default", label_selector="tier in (web),tier!=db").items]
    assert names == ["s1", "s2"]
    assert [p.metadata.name for p in v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=n2").items] == ["s2"]
    assert [p.metadata.name for p in v1.list_namespaced_pod("default", field_selector="spec.nodeName=").items] == ["s3"]
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_pod("default", field_selector="spec.bogus=x")
    assert exc.value.status == 400
    table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, _, out = _raw(srv, "GET", "/api/v1/namespaces/default/pods", headers={"Accept": table_accept})
    table = json.loads(out)
    assert table["kind"] == "Table" and [r["object"]["metadata"]["name"] for r in table["rows"]] == ["s1", "s2", "s3"]
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "s3"},
               "target": {"kind": "Node", "name": "n3"}}
    status, _, _ = _raw(srv, "POST", "/api/v1/namespaces/default/pods/s3/binding", binding)
    assert status == 201
    pod = v1.read_namespaced_pod("s3", "default")
    assert pod.spec.node_name == "n3"
    assert [c.status for c in pod.status.conditions if c.type == "PodScheduled"] == ["True"]
    status, _, out = _raw(srv, "POST", "/api/v1/namespaces/default/pods/s3/binding", binding)
    assert status == 409 and "already assigned" in json.loads(out)["message"]
    status, _, out = _raw(srv, "POST", "/api/v1/namespaces/default/pods/s1/exec?command=ls", b"{}")
    assert status == 400 and "at least 1 of stdin, stdout, stderr" in json.loads(out)["message"]
    status, _, out = _raw(srv, "POST", "/api/v1/namespaces/default/pods/s3/exec?command=ls&stdout=true", b"{}")
    assert status == 400 and "no exec source is registered" in json.loads(out)["message"]


def test_watch_resume_bookmark_and_delete_with_finalizers(k8s: client.ApiClient) -> None:
    v1 = client.CoreV1Api(k8s)
    start_rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w1", "finalizers": ["example.com/hold"]}})
    deleted = v1.delete_namespaced_config_map("w1", "default")
    assert deleted["metadata"]["deletionTimestamp"]  # held by the finalizer: 200 with the object
    v1.patch_namespaced_config_map("w1", "default", {"metadata": {"finalizers": None}},
                                   _content_type="application/merge-patch+json")
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=start_rv,
                       field_selector="metadata.name=w1", timeout_seconds=5):
        seen.append(ev["type"])
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == ["ADDED", "MODIFIED", "DELETED"]  # emptied finalizers delete at once (no MODIFIED)
    with pytest.raises(ApiException):
        v1.read_namespaced_config_map("w1", "default")


def test_watch_410_expired(tmp_path: Path) -> None:
    api = Api(store=Store(history=3))
    _ns(api, "default")
    cms = api.rt("v1", "ConfigMap")
    for i in range(6):
        api.create(cms, "default", {"metadata": {"name": f"c{i}"}})
    with ApiServer(api, crd_controller=False) as srv:
        status, _, out = _raw(srv, "GET", "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1")
        assert status == 200
        ev = json.loads(out.splitlines()[0])
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
        srv.write_kubeconfig(tmp_path / "kc")
        v1 = client.CoreV1Api(config.new_client_from_config(str(tmp_path / "kc")))
        with pytest.raises(ApiException) as exc:
            list(watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version="1",
                                      timeout_seconds=2))
        assert exc.value.status == 410


def test_watch_ends_on_stop_and_bookmarks(tmp_path: Path) -> None:
    api = Api()
    _ns(api, "default")
    srv = ApiServer(api, crd_controller=False, bookmark_interval=0.2).start()
    ctx = ssl.create_default_context(cadata=srv.ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true",
                 headers={"Authorization": f"Bearer {srv.token}"})
    r = conn.getresponse()
    first = json.loads(r.readline())
    assert first["type"] == "BOOKMARK" and first["object"]["kind"] == "ConfigMap"
    threading.Timer(0.3, srv.stop).start()
    rest = r.read()  # returns once the server ends the chunked stream
    assert all(json.loads(line)["type"] == "BOOKMARK" for line in rest.splitlines() if line.strip())
    conn.close()


def test_pod_logs(twin: tuple[ApiServer, Path, MemoryLogs], k8s: client.ApiClient) -> None:
    srv, _, logs = twin
    api = srv.api
    v1 = client.CoreV1Api(k8s)
    pods = api.rt("v1", "Pod")
    api.create(pods, "default", {"metadata": {"name": "lg"}, "spec": {"nodeName": "n1", "containers": [
        {"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}})
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod_log("lg", "default")
    assert json.loads(exc.value.body)["message"] == \
        "a container name must be specified for pod lg, choose one of: [a b]"
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod_log("lg", "default", container="a")
    assert json.loads(exc.value.body)["message"] == \
        'container "a" in pod "lg" is waiting to start: ContainerCreating'
    pod = api.get(pods, "default", "lg")
    pod["status"]["containerStatuses"] = [
        {"name": "a", "ready": True, "restartCount": 0, "image": "busybox", "imageID": "", "containerID": "x://1",
         "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]
    api.update(pods, "default", "lg", pod, subresource="status")
    now = api.clock.now()
    key = ("default", "lg", "a")
    logs.write(key, "old", now - dt.timedelta(hours=1))
    logs.write(key, "one", now)
    logs.write(key, "two", now)
    assert v1.read_namespaced_pod_log("lg", "default", container="a") == "old\none\ntwo\n"
    assert v1.read_namespaced_pod_log("lg", "default", container="a", tail_lines=1) == "two\n"
    assert v1.read_namespaced_pod_log("lg", "default", container="a", since_seconds=60) == "one\ntwo\n"
    stamped = v1.read_namespaced_pod_log("lg", "default", container="a", timestamps=True, tail_lines=1)
    assert stamped.endswith("Z two\n") and stamped.startswith(str(now.year))
    assert v1.read_namespaced_pod_log("lg", "default", container="a", limit_bytes=5) == "old\no"
    resp = v1.read_namespaced_pod_log("lg", "default", container="a", follow=True, tail_lines=1,
                                      _preload_content=False)
    threading.Timer(0.2, lambda: (logs.write(key, "three", now), logs.end(key))).start()
    assert resp.read().decode() == "two\nthree\n"


def test_crd_lifecycle(twin: tuple[ApiServer, Path, MemoryLogs], k8s: client.ApiClient) -> None:
    srv = twin[0]
    ext = client.ApiextensionsV1Api(k8s)
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                    "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    ext.create_custom_resource_definition(crd)
    established = False
    w = watch.Watch()
    for ev in w.stream(ext.list_custom_resource_definition, field_selector="metadata.name=widgets.example.com",
                       timeout_seconds=5):
        conds = {c.type: c.status for c in (ev["object"].status.conditions or [])}
        if conds.get("Established") == "True" and conds.get("NamesAccepted") == "True":
            established = True
            w.stop()
    assert established
    co = client.CustomObjectsApi(k8s)
    co.create_namespaced_custom_object("example.com", "v1", "default", "widgets",
                                       {"apiVersion": "example.com/v1", "kind": "Widget",
                                        "metadata": {"name": "w"}, "spec": {"size": 3}})
    got = co.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w")
    assert got["spec"] == {"size": 3} and got["metadata"]["generation"] == 1
    rv = co.list_namespaced_custom_object("example.com", "v1", "default", "widgets")["metadata"]["resourceVersion"]
    widgets = srv.api.rt("example.com/v1", "Widget")
    ext.delete_custom_resource_definition("widgets.example.com")
    w_in = srv.api.watch(widgets, "default", resource_version=rv)  # in-process: the HTTP path is gone with the CRD
    ev = w_in.next(timeout=5)
    w_in.stop()
    assert ev is not None and (ev.type, ev.object["metadata"]["name"]) == ("DELETED", "w")
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w")
    assert exc.value.status == 404


class _Webhook(BaseHTTPRequestHandler):
    """A real HTTPS admission webhook: denies objects labelled deny=true."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        labels = ((req.get("object") or {}).get("metadata") or {}).get("labels") or {}
        resp: dict[str, Any] = {"uid": req["uid"], "allowed": labels.get("deny") != "true"}
        if not resp["allowed"]:
            resp["status"] = {"reason": "Invalid", "message": "1 configs failed to validate: nope"}
        elif self.path.startswith("/mutate"):  # a mutating webhook labels what it admits
            where = "/metadata/nolabels/x" if self.path.startswith("/mutate-bad") else "/metadata/labels/mutated"
            ops = [{"op": "add", "path": where, "value": req["operation"].lower()}]
            resp |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}
        data = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": resp}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_validating_webhook(twin: tuple[ApiServer, Path, MemoryLogs], k8s: client.ApiClient) -> None:
    srv = twin[0]
    cert = make_serving_cert(dns_names=("guard.default.svc",))  # the apiserver verifies <svc>.<ns>.svc
    hook_srv = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    hook_srv.socket = cert.server_context().wrap_socket(hook_srv.socket, server_side=True)
    threading.Thread(target=hook_srv.serve_forever, daemon=True).start()
    adm = WebhookAdmission(srv.api, resolver=lambda ns, name, port: f"127.0.0.1:{hook_srv.server_address[1]}")
    adm.install()
    try:
        reg = client.AdmissionregistrationV1Api(k8s)
        rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}
        reg.create_validating_webhook_configuration({"metadata": {"name": "guard"}, "webhooks": [
            {"name": "guard.example.com", "rules": [rule], "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "objectSelector": {"matchExpressions": [{"key": "guarded", "operator": "Exists"}]},
             "clientConfig": {"service": {"namespace": "default", "name": "guard", "path": "/validate"},
                              "caBundle": base64.b64encode(cert.ca_pem).decode()}}]})
        v1 = client.CoreV1Api(k8s)
        v1.create_namespaced_config_map("default", {"metadata": {"name": "ok", "labels": {"guarded": "1"}}})
        v1.create_namespaced_config_map("default", {"metadata": {"name": "unguarded", "labels": {"deny": "true"}}})
        with pytest.raises(ApiException) as exc:
            v1.create_namespaced_config_map("default", {"metadata": {"name": "bad",
                                                                     "labels": {"guarded": "1", "deny": "true"}}})
        body = json.loads(exc.value.body)
        assert exc.value.status == 403 and body["reason"] == "Invalid"
        assert body["message"] == ('configmaps "bad" is forbidden: admission webhook "guard.example.com" denied '
                                   'the request: 1 configs failed to validate: nope')
        adm.resolver = WebhookAdmission(srv.api).resolver  # no endpoints any more
        with pytest.raises(ApiException) as exc:
            v1.create_namespaced_config_map("default", {"metadata": {"name": "x", "labels": {"guarded": "1"}}})
        assert exc.value.status == 500
        assert 'failed calling webhook "guard.example.com"' in json.loads(exc.value.body)["message"]
        cfg = reg.read_validating_webhook_configuration("guard")
        cfg.webhooks[0].failure_policy = "Ignore"
        reg.replace_validating_webhook_configuration("guard", cfg)
        v1.create_namespaced_config_map("default", {"metadata": {"name": "y", "labels": {"guarded": "1"}}})
    finally:
        srv.api.admission.remove(adm)
        hook_srv.shutdown()


def test_mutating_webhook_patches_before_validation(twin: tuple[ApiServer, Path, MemoryLogs],
                                                   k8s: client.ApiClient) -> None:
    srv = twin[0]
    cert = make_serving_cert(dns_names=("mutator.default.svc",))
    hook_srv = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    hook_srv.socket = cert.server_context().wrap_socket(hook_srv.socket, server_side=True)
    threading.Thread(target=hook_srv.serve_forever, daemon=True).start()
    adm = MutatingWebhookAdmission(srv.api, resolver=lambda ns, name, port: f"127.0.0.1:{hook_srv.server_address[1]}")
    adm.install()
    try:
        reg = client.AdmissionregistrationV1Api(k8s)
        rule = {"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["configmaps"]}

        def hook(path: str, policy: str = "Fail") -> dict[str, Any]:
            return {"name": f"{path.strip('/')}.example.com", "rules": [rule], "sideEffects": "None",
                    "admissionReviewVersions": ["v1"], "failurePolicy": policy,
                    "objectSelector": {"matchLabels": {"mutate": path.strip("/")}},
                    "clientConfig": {"service": {"namespace": "default", "name": "mutator", "path": path},
                                     "caBundle": base64.b64encode(cert.ca_pem).decode()}}

        reg.create_mutating_webhook_configuration({"metadata": {"name": "mutator"}, "webhooks": [
            hook("/mutate"), hook("/mutate-bad")]})
        v1 = client.CoreV1Api(k8s)
        made = v1.create_namespaced_config_map("default", {"metadata": {"name": "m1", "labels": {"mutate": "mutate"}}})
        assert made.metadata.labels == {"mutate": "mutate", "mutated": "create"}  # stored as patched
        made.data = {"k": "v"}
        assert v1.replace_namespaced_config_map("m1", "default", made).metadata.labels["mutated"] == "update"
        with pytest.raises(ApiException) as exc:  # a patch that does not apply fails the request (Fail policy)
            v1.create_namespaced_config_map("default", {"metadata": {"name": "m2", "labels": {"mutate": "mutate-bad"}}})
        assert exc.value.status == 500
        assert 'failed calling webhook "mutate-bad.example.com"' in json.loads(exc.value.body)["message"]
        with pytest.raises(ApiException) as exc:  # mutating webhooks deny like validating ones
            v1.create_namespaced_config_map("default", {"metadata": {"name": "m3", "labels": {
                "mutate": "mutate", "deny": "true"}}})
        assert exc.value.status == 403
        adm.resolver = WebhookAdmission(srv.api).resolver  # unreachable: Ignore lets the write through unpatched
        cfg = reg.read_mutating_webhook_configuration("mutator")
        cfg.webhooks[0].failure_policy = "Ignore"
        reg.replace_mutating_webhook_configuration("mutator", cfg)
        plain = v1.create_namespaced_config_map("default", {"metadata": {"name": "m4", "labels": {"mutate": "mutate"}}})
        assert plain.metadata.labels == {"mutate": "mutate"}
    finally:
        srv.api.mutation.remove(adm)
        hook_srv.shutdown()
