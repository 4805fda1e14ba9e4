"""The compute-domain controller's HTTP endpoint: Prometheus metrics and optional pprof (reference §9, §2).

What the real controller serves on ``HTTP_ENDPOINT`` (chart ``:8080``):

* ``METRICS_PATH`` (``/metrics``): component-base's legacy registry — client-go REST client metrics
  (``rest_client_requests_total{code,host,method}``, ``rest_client_request_duration_seconds{verb,host}``),
  ``kubernetes_build_info``, and the driver's ``nvidia_dra_compute_domain_info{status}`` gauge, which is
  **registered lazily** on the first ComputeDomain status seen (absent until a ComputeDomain exists) and counts
  ComputeDomains per global status (``Ready``/``NotReady``), decremented when one is deleted;
* ``PPROF_PATH`` non-empty: Go's pprof handlers at ``<path>/`` (index), ``<path>/cmdline``, ``<path>/profile``,
  ``<path>/symbol``, ``<path>/trace``.

Only a controller that runs its loop maintains the ComputeDomain gauge (fed by the reconciler's status hook,
:mod:`.cd_controller`): with leader election that is the leader; without it every replica (the real driver does
nothing to stop several replicas from all reconciling, §2). The REST metrics are fed by wrapping the official
client's REST layer of every client the process makes, so they count the requests this controller really made.
Twin difference: no Go runtime/process collectors (``go_*``, ``process_*``).
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from checks.driver import names
from checks.twin.nvidia.binaries.metrics import GetServer

REST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""client-go ``rest_client_request_duration_seconds`` buckets (component-base restclient metrics)."""


class ControllerMetrics:
    """The controller's registry."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rest_requests = Counter("rest_client_requests", "[ALPHA] Number of HTTP requests, partitioned by "
                                     "status code, method, and host.", ["code", "host", "method"], registry=r)
        self.rest_duration = Histogram("rest_client_request_duration_seconds", "[ALPHA] Request latency in "
                                       "seconds. Broken down by verb, and host.", ["host", "verb"],
                                       buckets=REST_BUCKETS, registry=r)
        build = Gauge("kubernetes_build_info", "[ALPHA] A metric with a constant '1' value labeled by major, minor, "
                      "git version, git commit, git tree state, build date, Go version, and compiler from which "
                      "Kubernetes was built, and platform on which it is running.",
                      ["git_version", "git_commit"], registry=r)
        build.labels(version, "95932046").set(1)
        self._cd_info: Gauge | None = None
        self._lock = threading.Lock()

    def observe_rest(self, method: str, url: str, code: int, seconds: float) -> None:
        host = urlsplit(url).netloc
        self.rest_requests.labels(str(code), host, method.upper()).inc()
        self.rest_duration.labels(host, method.upper()).observe(seconds)

    def set_status_counts(self, counts: dict[str, int]) -> None:
        """ComputeDomains per global status after a reconcile pass; the gauge appears with the first ComputeDomain
        and then tracks the counts (back to 0 when they are deleted)."""
        with self._lock:
            if self._cd_info is None:
                if not any(counts.values()):
                    return
                self._cd_info = Gauge(names.METRIC_CD_INFO, "[ALPHA] Info about ComputeDomains, by status",
                                      ["status"], registry=self.registry)
            for status in ("Ready", "NotReady"):
                self._cd_info.labels(status).set(int(counts.get(status, 0)))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def instrument(api_client: Any, metrics: ControllerMetrics) -> None:
    """Count every request ``api_client`` makes (its ``rest_client.request``), as client-go's metrics adapter."""
    rest = api_client.rest_client
    original = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            resp = original(method, url, *args, **kwargs)
        except Exception as exc:
            metrics.observe_rest(method, url, int(getattr(exc, "status", 0) or 0) or 0, time.monotonic() - start)
            raise
        metrics.observe_rest(method, url, int(getattr(resp, "status", 200)), time.monotonic() - start)
        return resp

    rest.request = request


def pprof_response(pprof_path: str, path: str, argv: list[str]) -> tuple[int, str, bytes] | None:
    """(status, content type, body) for a pprof URL under ``pprof_path``, None when not a pprof URL."""
    base = pprof_path.rstrip("/")
    if not base or not (path == base or path.startswith(base + "/")):
        return None
    rest = path[len(base):].strip("/")
    if rest == "":
        body = ("<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n/debug/pprof/\n<br>\n"
                "<p>Set debug=1 as a query parameter to export in legacy text format</p>\n<br>\n"
                "Types of profiles available:\n<table>\n<thead><td>Count</td><td>Profile</td></thead>\n"
                "<tr><td>12</td><td><a href='goroutine?debug=1'>goroutine</a></td></tr>\n"
                "<tr><td>0</td><td><a href='heap?debug=1'>heap</a></td></tr>\n</table>\n</body>\n</html>\n")
        return 200, "text/html; charset=utf-8", body.encode()
    if rest == "cmdline":
        return 200, "text/plain; charset=utf-8", "\x00".join(argv).encode()
    if rest == "symbol":
        return 200, "text/plain; charset=utf-8", b"num_symbols: 1\n"
    if rest in ("profile", "trace"):
        return 200, "application/octet-stream", b""
    return 404, "text/plain; charset=utf-8", b"Unknown profile\n"


class ControllerServer(GetServer):
    """The controller's HTTP server (metrics + pprof) on one address."""

    def __init__(self, metrics: ControllerMetrics, metrics_path: str, pprof_path: str, argv: list[str],
                 host: str, port: int) -> None:
        render = metrics.render
        mpath = metrics_path or names.METRICS_PATH

        def route(path: str) -> tuple[int, str, bytes] | None:
            if path == mpath:
                return 200, CONTENT_TYPE_LATEST, render()
            return pprof_response(pprof_path, path, argv)

        super().__init__(route, host, port, name="controller-http")


__all__ = ["ControllerMetrics", "ControllerServer", "instrument", "pprof_response"]
