"""Containers' own filesystem view: image-like root, node host files by privilege, volumes, exec into an
emulated container (signals to PID 1, localhost servers)."""

from __future__ import annotations

import base64
import json
import signal
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from checks.kube.client import ClusterClient, ClusterTarget
from checks.twin.lambda_twin import Twin
from kubetwin.api.resources import core
from kubetwin.kubelet.sandbox import namespaces_available
from kubetwin.kubelet.seam import ContainerContext, register_emulated_image, unregister_emulated_image
from tests.test_twin_kubelet import NS, PODS, wait_for

pytestmark = pytest.mark.skipif(not namespaces_available(), reason="no mount/PID namespaces on this machine")


@pytest.fixture
def ns(twin: Twin) -> str:
    name = "v-" + uuid.uuid4().hex[:8]
    twin.api.create(NS, None, {"metadata": {"name": name}})
    return name


def _run(twin: Twin, ns: str, name: str, script: str, **extra: Any) -> str:
    """Run ``script`` in a one-shot pod (``extra`` merges into the pod spec / container) and return its log."""
    container: dict[str, Any] = {"name": "c", "image": "ubuntu:24.04", "command": ["bash", "-c", script],
                                 **extra.pop("container", {})}
    twin.api.create(PODS, ns, {"metadata": {"name": name, "labels": {"app": "view"}},
                               "spec": {"restartPolicy": "Never", "containers": [container], **extra}})
    p = wait_for(twin.api, PODS, ns, name, lambda p: bool(p and p["status"].get("phase") in ("Succeeded", "Failed")),
                 what="pod end")
    k = twin.kubelets[twin.node_names[0]]
    log = (k.read_log(ns, name, "c") or b"").decode()
    assert p is not None and p["status"]["phase"] == "Succeeded", log
    return log


def test_node_device_files_follow_privilege_and_host_path(twin: Twin, ns: str) -> None:
    ls = "ls /dev | grep -c '^nvidia[0-9]' || true; ls /host-dev | grep -c '^nvidia[0-9]' || true"
    host_dev = {"volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}],
                "container": {"volumeMounts": [{"name": "dev", "mountPath": "/host-dev"}]}}
    # gpu_1x_h100_sxm5: one GPU -> /dev/nvidia0 on the node
    priv = _run(twin, ns, "priv", ls, **{**host_dev, "container": {**host_dev["container"],
                                                                   "securityContext": {"privileged": True}}})
    assert priv.split() == ["1", "1"]
    plain = _run(twin, ns, "plain", ls, **host_dev)
    assert plain.split() == ["0", "1"]  # hostPath shows the node's files, the container's own /dev does not
    proc = _run(twin, ns, "proc", "cat /proc/driver/nvidia/version; echo $$$$; ls /work 2>&1 >/dev/null | wc -l")
    assert proc.startswith("NVRM version: NVIDIA UNIX Open Kernel Module") and proc.split()[-2:] == ["2", "1"]


def test_volumes_config_map_secret_empty_dir_downward_api_and_token(twin: Twin, ns: str) -> None:
    api = twin.api
    api.create(core("configmaps"), ns, {"metadata": {"name": "cfg"}, "data": {"a.conf": "alpha"}})
    api.create(core("secrets"), ns, {"metadata": {"name": "sec"},
                                     "data": {"pw": base64.b64encode(b"s3cret").decode()}})
    script = ("cat /cfg/a.conf; echo; cat /sec/pw; echo; cat /info/labels; echo; cat /info/name; echo;"
              " cut -d. -f2 /var/run/secrets/kubernetes.io/serviceaccount/token; cat /shared/from-init;"
              " touch /cfg/x 2>/dev/null || echo read-only")
    log = _run(twin, ns, "vols", script, volumes=[
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "shared", "emptyDir": {}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                                   {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token",
                                                                             "expirationSeconds": 3607}}]}}],
        initContainers=[{"name": "init", "image": "ubuntu:24.04", "command": ["sh", "-c", "echo hi > /s/from-init"],
                         "volumeMounts": [{"name": "shared", "mountPath": "/s"}]}],
        container={"volumeMounts": [{"name": n, "mountPath": p} for n, p in (
            ("cfg", "/cfg"), ("sec", "/sec"), ("shared", "/shared"), ("info", "/info"),
            ("token", "/var/run/secrets/kubernetes.io/serviceaccount"))]})
    lines = log.splitlines()
    assert lines[:4] == ["alpha", "s3cret", 'app="view"', "vols"]
    claims = json.loads(base64.urlsafe_b64decode(lines[4] + "=" * (-len(lines[4]) % 4)))
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["kubernetes.io"]["pod"]["name"] == "vols"
    assert lines[5:] == ["hi", "read-only"]


@pytest.fixture
def cl(twin: Twin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterClient]:
    with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=tmp_path_factory.mktemp("view-kube")) as c:
        yield c


def test_exec_into_emulated_container_signals_and_localhost_server(twin: Twin, ns: str, cl: ClusterClient) -> None:
    """The seam contract: exec gets a real shell in the emulated container's view, ``kill -s SIGUSR2 1`` reaches
    the program, files it writes via ``host_path`` are the shell's files, ``serve_address`` is ``localhost``."""
    up = threading.Event()

    def program(ctx: ContainerContext) -> int:
        def dump() -> None:
            ctx.host_path("/tmp/stacks.dump").write_text("goroutine 1 [running]:\nmain.Run()\n")

        ctx.on_signal(signal.SIGUSR2, dump)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"served {self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: Any) -> None:
                pass

        server = ThreadingHTTPServer(ctx.serve_address(8080), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        up.set()
        ctx.stop.wait()
        server.shutdown()
        server.server_close()
        return 0

    register_emulated_image("example.com/view-driver", lambda ctx: program)
    try:
        twin.api.create(PODS, ns, {"metadata": {"name": "emu"}, "spec": {"containers": [
            {"name": "gpus", "image": "example.com/view-driver:v1", "command": ["plugin"]}]}})
        assert up.wait(15)
        wait_for(twin.api, PODS, ns, "emu", lambda p: bool(p and p["status"].get("phase") == "Running"),
                 what="Running")
        k = twin.kubelets[twin.node_names[0]]
        host, port = k.endpoint(ns, "emu", 8080) or ("", 0)
        assert host.startswith("127.") and host != "127.0.0.1" and port == 8080
        r = cl.kubectl("exec", "-n", ns, "emu", "-c", "gpus", "--", "kill", "-s", "SIGUSR2", "1", check=False)
        assert r.returncode == 0, r.stderr
        # the handler runs on the relay thread right after the shim saw the signal: poll briefly in the shell
        r = cl.kubectl("exec", "-n", ns, "emu", "-c", "gpus", "--", "sh", "-c",
                       "for i in $(seq 100); do [ -s /tmp/stacks.dump ] && break; sleep 0.05; done;"
                       " cat /tmp/stacks.dump; wget -qO- http://localhost:8080/metrics", check=False)
        assert r.returncode == 0, r.stderr
        assert "main.Run()" in r.stdout and "served /metrics" in r.stdout
    finally:
        unregister_emulated_image("example.com/view-driver")
