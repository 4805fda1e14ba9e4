"""kubectl v1.37's protobuf write bodies decoded by the twin's API server (kubetwin.api.protobuf)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubetwin.api import protobuf
from kubetwin.api.core import Api
from kubetwin.api.server import ApiServer
from tests.test_twin_kubectl import Kube


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    api = Api()
    api.create(api.rt("v1", "Namespace"), None, {"metadata": {"name": "default"}})
    with ApiServer(api) as srv:
        yield Kube(srv, tmp_path_factory.mktemp("kube-pb"))


def _get(kube: Kube, *args: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(kube.kubectl("get", *args, "-o", "json").stdout)
    return out


def test_create_namespace_configmap_secret_serviceaccount(kube: Kube) -> None:
    assert kube.kubectl("create", "namespace", "pb").stdout.strip() == "namespace/pb created"
    assert _get(kube, "namespace", "pb")["metadata"]["labels"] == {"kubernetes.io/metadata.name": "pb"}  # type: ignore[index]
    kube.kubectl("-n", "pb", "create", "configmap", "cm", "--from-literal=a=1", "--from-literal=b=two")
    assert _get(kube, "-n", "pb", "configmap", "cm")["data"] == {"a": "1", "b": "two"}
    kube.kubectl("-n", "pb", "create", "secret", "generic", "s", "--from-literal=k=v\x01")
    assert _get(kube, "-n", "pb", "secret", "s")["data"] == {"k": "dgE="}
    kube.kubectl("-n", "pb", "create", "serviceaccount", "robot")
    assert _get(kube, "-n", "pb", "serviceaccount", "robot")["metadata"]["name"] == "robot"  # type: ignore[index]


def test_create_deployment_keeps_pointer_zero_and_pod_template(kube: Kube) -> None:
    kube.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=0", "--port=8080",
                 "--", "sleep", "60")
    spec = _get(kube, "deployment", "web")["spec"]
    assert isinstance(spec, dict)
    # replicas is a Go pointer: an explicit 0 must not fall back to the default of 1.
    assert spec["replicas"] == 0
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    (ctr,) = spec["template"]["spec"]["containers"]
    assert ctr["image"] == "busybox" and ctr["command"] == ["sleep", "60"]
    assert ctr["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}


def test_run_and_create_job(kube: Kube) -> None:
    kube.kubectl("run", "p1", "--image=busybox", "--env=A=B", "--labels=tier=x", "--restart=Never",
                 "--", "echo", "hi")
    pod = _get(kube, "pod", "p1")
    assert pod["metadata"]["labels"] == {"tier": "x"}  # type: ignore[index]
    (ctr,) = pod["spec"]["containers"]  # type: ignore[index]
    assert ctr["env"] == [{"name": "A", "value": "B"}] and ctr["args"] == ["echo", "hi"]
    assert pod["spec"]["restartPolicy"] == "Never"  # type: ignore[index]
    kube.kubectl("create", "job", "j1", "--image=busybox", "--", "echo", "done")
    job = _get(kube, "job", "j1")["spec"]
    assert isinstance(job, dict)
    assert job["template"]["spec"]["containers"][0]["command"] == ["echo", "done"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return protobuf.MAGIC + _ld(1, type_meta) + _ld(2, raw)


def test_unknown_field_is_refused_not_dropped() -> None:
    meta = _ld(1, b"n")
    ok = protobuf.decode(_envelope("v1", "Namespace", _ld(1, meta)))
    assert ok == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}
    with pytest.raises(protobuf.ProtobufError, match="unknown field 99 of Namespace"):
        protobuf.decode(_envelope("v1", "Namespace", _ld(1, meta) + _ld(99, b"x")))
    with pytest.raises(protobuf.ProtobufError, match="no protobuf decoder for v1/Widget"):
        protobuf.decode(_envelope("v1", "Widget", b""))


def test_negative_int_and_zero_time() -> None:
    # terminationGracePeriodSeconds (a pointer) = -1 as a 10-byte two's-complement varint; empty time = unset.
    spec = _varint(4 << 3) + _varint((1 << 64) - 1)
    pod = protobuf.decode(_envelope("v1", "Pod", _ld(1, _ld(1, b"p") + _ld(8, b"")) + _ld(2, spec)))
    assert pod["spec"] == {"terminationGracePeriodSeconds": -1}
    assert pod["metadata"] == {"name": "p"}


def test_unsupported_body_is_415_over_http(kube: Kube) -> None:
    import http.client
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", kube.srv.port, context=ctx, timeout=10)
    headers = {"Content-Type": "application/vnd.kubernetes.protobuf", "Authorization": f"Bearer {kube.srv.token}"}
    conn.request("POST", "/api/v1/namespaces", body=_envelope("v1", "Namespace", _ld(77, b"")), headers=headers)
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 415 and body["reason"] == "UnsupportedMediaType", body
    assert "unknown field 77 of Namespace" in body["message"]
