"""ApiListWatch and the pod waits through the official client over real HTTP, against a scripted server.

The twin is the general-purpose API server for tests; this tiny scripted one exists because it can misbehave
on cue — a 410 ERROR line inside a watch, a 410 answer to the watch request, a stream cut mid-way — which is
exactly what the relist logic must survive, with the real client's streaming and decoding in the loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.retry import RetryPolicy
from checks.kube.wait import WaitTimeout, wait_pod_ready

TOKEN = "tok-123"


def pod(rv: int, ready: bool) -> dict[str, Any]:
    return {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": str(rv), "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class Script:
    """Answers, in order, for list requests and watch requests; records every request."""

    def __init__(self, lists: list[dict[str, Any]], watches: list[Any]) -> None:
        self.lists, self.watches = lists, watches
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.events: list[dict[str, Any]] = []
        self.fail_next: list[int] = []


def make_handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # body ends at connection close: fine for streaming

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            assert self.headers.get("Authorization") == f"Bearer {TOKEN}"
            script.requests.append((url.path, query))
            if script.fail_next:
                code = script.fail_next.pop(0)
                self._json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code})
                return
            if url.path.endswith("/events"):
                self._json(200, {"kind": "EventList", "metadata": {"resourceVersion": "1"}, "items": script.events})
                return
            if query.get("watch") != ["true"]:
                self._json(200, script.lists.pop(0))
                return
            answer = script.watches.pop(0) if script.watches else []
            if isinstance(answer, int):  # the watch request itself is refused
                self._json(answer, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": answer,
                                    "reason": "Expired", "message": "too old resource version"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for item in answer:
                if item == "CUT":
                    self.wfile.write(b'{"type":"MODIFIED","obj')  # half a line, then the connection drops
                    self.wfile.flush()
                    return
                self.wfile.write(json.dumps(item).encode() + b"\n")
                self.wfile.flush()

    return Handler


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[Script, Path]]:
    script = Script([], [])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
           "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{httpd.server_address[1]}"}}],
           "users": [{"name": "t", "user": {"token": TOKEN}}],
           "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))
    yield script, kubeconfig
    httpd.shutdown()
    httpd.server_close()


def pod_list(rv: int, ready: bool) -> dict[str, Any]:
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)},
            "items": [pod(rv, ready)]}


def watches(script: Script) -> list[dict[str, list[str]]]:
    return [q for path, q in script.requests if q.get("watch") == ["true"]]


def lists(script: Script) -> list[dict[str, list[str]]]:
    return [q for path, q in script.requests if q.get("watch") != ["true"] and path.endswith("/pods")]


def test_410_error_line_in_the_stream_relists(server: tuple[Script, Path]) -> None:
    script, kubeconfig = server
    script.lists = [pod_list(5, False), pod_list(10, False)]
    script.watches = [
        [{"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                      "reason": "Expired", "message": "too old resource version: 5 (8)"}}],
        [{"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "11"}}},
         {"type": "MODIFIED", "object": pod(12, True)}],
    ]
    with ClusterClient(ClusterTarget(kubeconfig)) as cluster:
        got = wait_pod_ready(cluster, "ns", "a", timeout=20)
    assert got["metadata"]["resourceVersion"] == "12"
    assert [w["resourceVersion"] for w in watches(script)] == [["5"], ["10"]]
    assert all(w["fieldSelector"] == ["metadata.name=a"] and w["allowWatchBookmarks"] == ["true"]
               and int(w["timeoutSeconds"][0]) <= 20 for w in watches(script))
    assert len(lists(script)) == 2


def test_410_answer_to_the_watch_request_relists(server: tuple[Script, Path]) -> None:
    script, kubeconfig = server
    script.lists = [pod_list(5, False), pod_list(30, True)]
    script.watches = [410]
    with ClusterClient(ClusterTarget(kubeconfig)) as cluster:
        got = wait_pod_ready(cluster, "ns", "a", timeout=20)
    assert got["metadata"]["resourceVersion"] == "30"
    assert len(lists(script)) == 2


def test_stream_cut_mid_line_relists(server: tuple[Script, Path]) -> None:
    script, kubeconfig = server
    script.lists = [pod_list(5, False), pod_list(7, True)]
    script.watches = [[{"type": "MODIFIED", "object": pod(6, False)}, "CUT"]]
    with ClusterClient(ClusterTarget(kubeconfig)) as cluster:
        got = wait_pod_ready(cluster, "ns", "a", timeout=20)
    assert got["metadata"]["resourceVersion"] == "7"


def test_transient_503_on_list_is_retried(server: tuple[Script, Path]) -> None:
    script, kubeconfig = server
    script.lists = [pod_list(5, True)]
    script.fail_next = [503, 429]
    with ClusterClient(ClusterTarget(kubeconfig), retry=RetryPolicy(base_delay_s=0.01)) as cluster:
        got = wait_pod_ready(cluster, "ns", "a", timeout=20)
    assert got["metadata"]["resourceVersion"] == "5" and not script.fail_next
    assert len(script.requests) == 3


def test_timeout_names_the_pod_its_state_and_last_event(server: tuple[Script, Path]) -> None:
    script, kubeconfig = server
    script.lists = [pod_list(5, False)] * 5
    script.events = [
        {"metadata": {"name": "e1"}, "reason": "Scheduled", "message": "assigned", "type": "Normal",
         "lastTimestamp": "2026-11-26T17:58:00Z", "involvedObject": {"kind": "Pod", "name": "a"}},
        {"metadata": {"name": "e2"}, "reason": "FailedPrepareDynamicResources", "type": "Warning",
         "message": "prepare failed", "lastTimestamp": "2026-11-26T17:58:09Z",
         "involvedObject": {"kind": "Pod", "name": "a"}},
    ]
    script.watches = [[]] * 5  # every watch ends at once without events
    with ClusterClient(ClusterTarget(kubeconfig)) as cluster, pytest.raises(WaitTimeout) as info:
        wait_pod_ready(cluster, "ns", "a", timeout=0.5)
    msg = str(info.value)
    assert "waiting for pod ns/a Ready" in msg and "phase Pending" in msg and "Ready=False" in msg
    assert msg.endswith("last event: FailedPrepareDynamicResources: prepare failed")
