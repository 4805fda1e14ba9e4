"""Prometheus metrics of the emulated kubelet plugins (reference nvidia-dra-driver.md §9), with prometheus_client.

Families, labels and semantics as §9.2: request counters/histogram/in-flight gauge per ``operation``
(``prepare``/``unprepare``, pre-created at 0), ``nvidia_dra_prepared_devices`` per ``device_type`` (zeros
for every type, recomputed after each change), and the prepare/unprepare error counters. Help strings carry
component-base's ``[ALPHA]`` stability prefix. Each plugin process has its own registry (a twin runs many).

Where it is served: a real pod listens on ``HTTP_ENDPOINT`` (``:8080``) in its own network namespace. Twin
pods share the host's, so the server binds ``127.0.0.1`` on a free port and the address is recorded per
container (:func:`endpoint`); the log line still names the configured endpoint (fidelity notes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = tuple(0.05 * 2**k for k in range(9))
"""``nvidia_dra_request_duration_seconds`` buckets: 0.05·2^k, k=0..8 (§9.2)."""
OPERATIONS = ("prepare", "unprepare")
GPU_DEVICE_TYPES = ("gpu", "mig", "vfio", "unknown")
"""``device_type`` values of the GPU plugin (§9.2)."""

_lock = threading.Lock()
_endpoints: dict[tuple[str, str, str], str] = {}


class PluginMetrics:
    """The metric families of one kubelet-plugin process."""

    def __init__(self, driver: str, node: str, device_types: Iterable[str] = GPU_DEVICE_TYPES) -> None:
        self.driver, self.node = driver, node
        self.device_types = tuple(device_types)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("nvidia_dra_requests", "[ALPHA] Total number of DRA requests",
                                ["driver", "operation"], registry=r)
        self.duration = Histogram("nvidia_dra_request_duration_seconds", "[ALPHA] Duration of DRA requests",
                                  ["driver", "operation"], buckets=BUCKETS, registry=r)
        self.inflight = Gauge("nvidia_dra_requests_inflight", "[ALPHA] Number of DRA requests in flight",
                              ["driver", "operation"], registry=r)
        self.prepared = Gauge("nvidia_dra_prepared_devices", "[ALPHA] Number of prepared devices",
                              ["node", "driver", "device_type"], registry=r)
        self.prepare_errors = Counter("nvidia_dra_node_prepare_errors", "[ALPHA] Total NodePrepareResources errors",
                                      ["driver", "error_type"], registry=r)
        self.unprepare_errors = Counter("nvidia_dra_node_unprepare_errors",
                                        "[ALPHA] Total NodeUnprepareResources errors", ["driver", "error_type"],
                                        registry=r)
        for op in OPERATIONS:
            self.requests.labels(driver, op)
            self.inflight.labels(driver, op)
        self.set_prepared({})

    def set_prepared(self, counts: dict[str, int]) -> None:
        """Recompute ``nvidia_dra_prepared_devices`` from the prepared state (zeros for absent types)."""
        for t in self.device_types:
            self.prepared.labels(self.node, self.driver, t).set(counts.get(t, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


Route = Callable[[str], "tuple[int, str, bytes] | None"]
"""Maps a request path (query stripped) to ``(status, content type, body)``; None → the Go mux's 404."""


class GetServer:
    """A Go-style HTTP server for GET routes on one address, serving from a daemon thread (the emulated
    binaries' metrics and pprof endpoints)."""

    def __init__(self, route: Route, host: str, port: int, *, name: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = route(self.path.split("?", 1)[0])
                code, ctype, body = answer or (404, "text/plain; charset=utf-8", b"404 page not found\n")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MetricsServer(GetServer):
    """HTTP server for one plugin's registry on ``path`` (other paths: 404, like the Go mux)."""

    def __init__(self, metrics: PluginMetrics, path: str, host: str = "127.0.0.1", port: int = 0) -> None:
        render, wanted = metrics.render, path or "/metrics"

        def route(p: str) -> tuple[int, str, bytes] | None:
            return (200, CONTENT_TYPE_LATEST, render()) if p == wanted else None

        super().__init__(route, host, port, name="plugin-metrics")


def set_endpoint(namespace: str, pod: str, container: str, url: str | None) -> None:
    """Record (or with None forget) where a container's metrics server listens."""
    with _lock:
        if url is None:
            _endpoints.pop((namespace, pod, container), None)
        else:
            _endpoints[(namespace, pod, container)] = url


def endpoint(namespace: str, pod: str, container: str = "gpus") -> str | None:
    """``http://127.0.0.1:<port>`` of a running plugin container's metrics server, None if not serving."""
    with _lock:
        return _endpoints.get((namespace, pod, container))


__all__ = ["BUCKETS", "MetricsServer", "PluginMetrics", "endpoint", "set_endpoint"]
