"""``pods/proxy`` and ``services/proxy`` reach real servers in pods (issue 11 item 3): the official Python client
and kubectl against a container process serving HTTP, through a pod name with port, a Service, and a 503."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from checks.kube.binaries import find_tool
from checks.twin.lambda_twin import Twin
from kubetwin.api.proxy import split_scheme_name_port
from kubetwin.api.resources import core
from tests.test_twin_kubelet import wait_for, wait_log

PODS = core("pods")

# An HTTP server that answers "<method> <path> <body>" and says when it listens (the test waits for that line).
SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = f"{self.command} {self.path} {self.rfile.read(n).decode()}".encode()
        self.send_response(200); self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = _answer
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("serving", flush=True)
s.serve_forever()
"""


def _kubectl(twin: Twin, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run([str(find_tool("kubectl").path), "--kubeconfig", str(twin.kubeconfig), *args], input=stdin,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(twin: Twin) -> Iterator[tuple[str, str, int]]:
    """(namespace, pod, port) of a Running pod whose container process serves HTTP."""
    ns, name, port = "proxy-" + uuid.uuid4().hex[:6], "web", _free_port()
    api = twin.api
    api.create(core("namespaces"), None, {"metadata": {"name": ns}})
    api.create(PODS, ns, {"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"containers": [{
        "name": "ctr", "image": "python:3.12", "command": ["python3", "-c", SERVER, str(port)],
        "ports": [{"name": "http", "containerPort": port}]}]}})
    api.create(core("services"), ns, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
    wait_for(api, PODS, ns, name, lambda p: bool(p and p["status"].get("phase") == "Running"), what="Running")
    assert wait_log(twin.kubelets[twin.node_names[0]], ns, name, "serving\n", timeout=15)
    yield ns, name, port
    api.delete(core("namespaces"), None, ns)


def test_pod_proxy_get_and_post_reach_the_container_process(twin: Twin, served: tuple[str, str, int]) -> None:
    ns, name, port = served
    with twin.api_client() as c:
        v1 = client.CoreV1Api(c)
        out = v1.connect_get_namespaced_pod_proxy_with_path(f"{name}:{port}", ns, "metrics", path2="x")
        assert out == "GET /metrics?path=x "  # the client sends path2 as the query parameter "path"
        # No port in the name: the first declared container port, as the apiserver picks it.
        assert v1.connect_get_namespaced_pod_proxy_with_path(name, ns, "a/b") == "GET /a/b "
    # kubectl's raw verbs: get --raw is GET, create --raw is POST with the body from stdin.
    raw = f"/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/metrics"
    assert _kubectl(twin, "get", "--raw", raw) == "GET /metrics "
    assert _kubectl(twin, "create", "--raw", raw, "-f", "-", stdin='{"k": 1}') == 'POST /metrics {"k": 1}'


def test_service_proxy_resolves_named_target_port(twin: Twin, served: tuple[str, str, int]) -> None:
    ns, _, _ = served
    with twin.api_client() as c:
        v1 = client.CoreV1Api(c)
        assert v1.connect_get_namespaced_service_proxy_with_path("web:web", ns, "healthz") == "GET /healthz "
        assert v1.connect_get_namespaced_service_proxy_with_path("web", ns, "q") == "GET /q "


def test_proxy_to_a_port_nobody_serves_is_503(twin: Twin, served: tuple[str, str, int]) -> None:
    ns, name, _ = served
    dead = _free_port()
    with twin.api_client() as c, pytest.raises(ApiException) as exc:
        client.CoreV1Api(c).connect_get_namespaced_pod_proxy_with_path(f"{name}:{dead}", ns, "x")
    assert exc.value.status == 503
    assert f":{dead}: connect: connection refused" in str(exc.value.body)
    with twin.api_client() as c, pytest.raises(ApiException) as exc:
        client.CoreV1Api(c).connect_get_namespaced_service_proxy_with_path("web:nope", ns, "x")
    assert exc.value.status == 503 and 'no endpoints available for service \\"web\\"' in str(exc.value.body)


def test_scheme_name_port_split() -> None:
    assert split_scheme_name_port("p") == ("http", "p", "")
    assert split_scheme_name_port("p:8080") == ("http", "p", "8080")
    assert split_scheme_name_port("https:p:443") == ("https", "p", "443")
