"""``pods/exec`` on the twin through the real clients: kubectl (WebSocket v5) and the official Python client's
``kubernetes.stream.stream`` (WebSocket v4); reference kubernetes-dra.md §8.8."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.stream import stream

from checks.kube.client import ClusterClient, ClusterTarget
from checks.twin.lambda_twin import Twin
from kubetwin.api.exec import FrameParser, accept_key, encode_frame

NS = "exec-t"
# A long-running container that ends promptly on SIGTERM, so namespace deletion is quick.
SLEEPER = "trap 'exit 0' TERM; sleep 9999 & wait"

# The init container never ends, so the main container has no running instance to exec into.
INIT_BLOCKED = f"""
apiVersion: v1
kind: Pod
metadata: {{name: blocked, namespace: {NS}}}
spec:
  initContainers:
  - {{name: init, image: "ubuntu:24.04", command: [bash, -c, "{SLEEPER}"]}}
  containers:
  - {{name: main, image: "ubuntu:24.04", command: ["true"]}}
"""


@pytest.fixture(scope="module")
def cl(twin: Twin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterClient]:
    with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=tmp_path_factory.mktemp("exec-kube")) as c:
        c.kubectl("create", "namespace", NS)
        c.kubectl("run", "box", "-n", NS, "--image=ubuntu:24.04", "--restart=Never", "--env=GREETING=hi there",
                  "--", "bash", "-c", SLEEPER)
        c.kubectl("run", "done", "-n", NS, "--image=ubuntu:24.04", "--restart=Never", "--", "true")
        c.kubectl("apply", "-f", "-", input_text=INIT_BLOCKED)
        c.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/box", "--timeout=30s")
        c.kubectl("wait", "-n", NS, "--for=jsonpath={.status.initContainerStatuses[0].state.running}",
                  "pod/blocked", "--timeout=30s")
        c.kubectl("wait", "-n", NS, "--for=jsonpath={.status.phase}=Succeeded", "pod/done", "--timeout=30s")
        yield c
        c.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")


def _exec(cl: ClusterClient, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return cl.kubectl("exec", *args, check=False, input_text=input_text, timeout=30)


def test_kubectl_exec_stdout_stderr_and_env(cl: ClusterClient) -> None:
    r = _exec(cl, "-n", NS, "box", "--", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr
    r = _exec(cl, "-n", NS, "box", "--", "printenv", "HOSTNAME", "GREETING")
    assert (r.returncode, r.stdout) == (0, "box\nhi there\n"), r.stderr
    # the shell runs in the container's own view: image working dir "/", the image's standard PATH, its own
    # PID namespace (PID 1 is the container's init) and private /tmp
    r = _exec(cl, "-n", NS, "box", "--", "sh", "-c", 'pwd; echo "$PATH"; cat /proc/1/cmdline | head -c 200')
    cwd, path, init = r.stdout.splitlines()
    assert (cwd, path) == ("/", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    assert "shim.py" in init
    r = _exec(cl, "-n", NS, "box", "--", "sh", "-c", "echo mine > /tmp/f; ls /tmp; ls /work 2>&1 | head -1")
    assert r.stdout.splitlines()[0] == "f" and "No such file" in r.stdout, r.stdout


def test_kubectl_exec_exit_code(cl: ClusterClient) -> None:
    r = _exec(cl, "-n", NS, "box", "--", "sh", "-c", "echo partial; exit 3")
    assert r.returncode == 3
    assert r.stdout == "partial\n"
    assert "command terminated with exit code 3" in r.stderr


def test_kubectl_exec_stdin(cl: ClusterClient) -> None:
    text = "line one\n" + "x" * 200_000 + "\nend\n"
    r = _exec(cl, "-i", "-n", NS, "box", "--", "cat", input_text=text)
    assert r.returncode == 0, r.stderr
    assert r.stdout == text
    r = _exec(cl, "-i", "-n", NS, "box", "--", "wc", "-l", input_text="a\nb\nc\n")
    assert r.stdout.strip() == "3"


def test_kubectl_exec_errors(cl: ClusterClient) -> None:
    r = _exec(cl, "-n", NS, "done", "--", "true")
    assert r.returncode == 1
    assert "cannot exec into a container in a completed pod; current phase is Succeeded" in r.stderr
    r = _exec(cl, "-n", NS, "nosuch", "--", "true")
    assert r.returncode == 1 and 'pods "nosuch" not found' in r.stderr
    r = _exec(cl, "-n", NS, "box", "-c", "other", "--", "true")
    assert r.returncode == 1 and "container other is not valid for pod box" in r.stderr
    r = _exec(cl, "-n", NS, "blocked", "-c", "main", "--", "true")
    assert r.returncode == 1 and 'unable to upgrade connection: container not found ("main")' in r.stderr
    r = _exec(cl, "-n", NS, "blocked", "-c", "init", "--", "printenv", "HOSTNAME")
    assert (r.returncode, r.stdout) == (0, "blocked\n"), r.stderr


def test_python_client_stream(twin: Twin, cl: ClusterClient) -> None:
    api = twin.api_client()
    try:
        core = client.CoreV1Api(api)
        out = stream(core.connect_get_namespaced_pod_exec, "box", NS, command=["sh", "-c", "echo py-$HOSTNAME"],
                     stderr=True, stdin=False, stdout=True, tty=False)
        assert out == "py-box\n"
        ws = stream(core.connect_get_namespaced_pod_exec, "box", NS, command=["sh", "-c", "echo e >&2; exit 5"],
                    stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
        ws.run_forever(timeout=20)
        assert ws.read_stderr() == "e\n"
        assert ws.returncode == 5
        ws.close()
        with pytest.raises(client.ApiException) as ei:
            stream(core.connect_get_namespaced_pod_exec, "done", NS, command=["true"], stderr=True, stdin=False,
                   stdout=True, tty=False)
        # the client reports a failed handshake as ApiException(status=0) with the status line and body
        assert "400" in str(ei.value) and "completed pod" in str(ei.value)
    finally:
        api.close()


def test_frame_codec_roundtrip() -> None:
    # RFC 6455 §1.3 example key.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    mask = b"\x01\x02\x03\x04"
    payload = bytes(range(256)) * 300  # 64-bit length form
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    frame = bytes([0x02, 0x80 | 127]) + len(payload).to_bytes(8, "big") + mask + masked  # first fragment, FIN=0
    cont = bytes([0x80, 0x80 | 3]) + mask + bytes(c ^ mask[i] for i, c in enumerate(b"end"))
    ping = encode_frame(0x9, b"hb")
    p = FrameParser()
    assert p.feed(frame[:5]) == []
    assert p.feed(frame[5:] + ping) == [(0x9, b"hb")]
    assert p.feed(cont) == [(0x2, payload + b"end")]
    assert len(encode_frame(0x2, b"x" * 70000)) == 70000 + 10
