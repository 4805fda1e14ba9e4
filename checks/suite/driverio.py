"""Talking to the driver's own pods: exec, HTTP through ``pods/proxy``, metrics parsing, installs a check owns.

The same calls on a real cluster and a twin: exec over the API's ``pods/exec`` (kubernetes client ``stream``),
HTTP to a container port over ``pods/proxy`` (no exec, no port-forward, no curl inside the image — the chart
declares no metrics port and no Service for it, §2), Prometheus text parsed with ``prometheus_client``'s own
parser rather than grepped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from checks.driver import names
from checks.kube import helm
from checks.kube import objects as K
from checks.kube import wait as W
from checks.scenarios.driverconfig import PLUGIN_SELECTOR, RELEASE, DriverConfig

Obj = dict[str, Any]

CONTROLLER_SELECTOR = f"{names.component_label()}={names.COMPONENT_CONTROLLER}"
"""Label selector of the controller pods (§1.4)."""


def exec_in(cluster: Any, namespace: str, pod: str, container: str, command: list[str], *,
            timeout: float = 30) -> str:
    """Run ``command`` in a container (``kubectl exec``) and return stdout+stderr."""
    from kubernetes.stream import stream

    out = stream(cluster.core.connect_get_namespaced_pod_exec, pod, namespace, command=command,
                 container=container, stderr=True, stdin=False, stdout=True, tty=False,
                 _request_timeout=timeout)
    return str(out)


def proxy_get(cluster: Any, namespace: str, pod: str, port: int, path: str) -> str:
    """GET ``http://<pod>:<port>/<path>`` through the API server's ``pods/proxy`` subresource."""
    resp = cluster.core.connect_get_namespaced_pod_proxy_with_path(f"{pod}:{port}", namespace, path.lstrip("/"),
                                                                    _preload_content=False)
    data = resp.read()
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample."""

    name: str
    labels: dict[str, str]
    value: float


def samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (``prometheus_client.parser``)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append(Sample(s.name, dict(s.labels), float(s.value)))
    return out


def families(text: str) -> set[str]:
    """Metric family names in the exposition (counters without their ``_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {fam.name for fam in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None when absent)."""
    for s in samples(text):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@dataclass
class ScrapeSource:
    """A :class:`checks.kube.wait.ListWatch` over an HTTP endpoint: "list" scrapes it, "watch" is a short pause.

    An HTTP endpoint offers no watch, so waiting for a metric means re-reading it; wrapping the reads as a
    list/watch source keeps the one wait loop (timeouts, messages, back-off when nothing changes) of
    :func:`checks.kube.wait.wait_until`.
    """

    read: Callable[[], str]
    """One scrape."""
    description: str = "metrics endpoint"
    interval_s: float = 0.5
    """Pause between scrapes."""

    def list(self) -> tuple[list[Obj], str]:
        return [{"metadata": {"name": "scrape"}, "text": self.read()}], "0"

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[W.WatchStreamEvent]:
        threading.Event().wait(min(self.interval_s, max(timeout_s, 0.0)))
        return iter(())


def scrape_until(read: Callable[[], str], ok: Callable[[str], bool], *, timeout: float, what: str) -> str:
    """Scrape until ``ok(text)``; returns that text (WaitTimeout with the last text otherwise)."""
    def last(st: W.State) -> str:
        return str((st.get("scrape") or {}).get("text", ""))[-600:]

    state = W.wait_until(ScrapeSource(read), lambda st: ok(str(st["scrape"]["text"])), timeout=timeout, what=what,
                         options=W.WaitOptions(describe=last))
    return str(state["scrape"]["text"])


def driver_pods(cluster: Any, selector: str) -> list[Obj]:
    """Running, not-terminating pods of a driver component."""
    pods = K.list_(cluster, "pods", names.NAMESPACE, label_selector=selector)
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") == "Running"]


def plugin_pod(cluster: Any) -> Obj:
    pods = driver_pods(cluster, PLUGIN_SELECTOR)
    assert pods, "no running kubelet-plugin pod"
    return sorted(pods, key=lambda p: p["metadata"]["name"])[0]


def install(suite: Any, cfg: DriverConfig, *, chart: str | None = None, version: str | None = None,
            extra_values: dict[str, Any] | None = None, wait_plugin: bool = True, timeout: float = 240,
            remember_as: DriverConfig | None = None) -> float:
    """``helm upgrade --install`` a configuration the check owns (another chart/version, values made at run
    time) and return helm's own duration in seconds. The suite's install cache is cleared: the next check
    installs its configuration again."""
    s = suite.settings
    values = cfg.values(driver_root=s.driver_root, image_tag=s.image_tag)
    if extra_values:
        _merge(values, extra_values)
    # Not any marker's configuration (so the next check installs its own), but not None either (so the session
    # still uninstalls the release at the end).
    suite.install.current = remember_as or replace(cfg, extra=(*cfg.extra, ("dra-lab.owned-by-check", chart or "")))
    started = time.monotonic()
    helm.upgrade_install(suite.cluster, RELEASE, chart or s.chart, names.NAMESPACE, values,
                         helm.InstallOptions(version=version if chart else (version or s.chart_version),
                                             adopt=s.adopt, wait_timeout_s=s.timeout(timeout),
                                             wait_for_plugin=False))
    took = time.monotonic() - started
    suite.install.installs.append(cfg.key + ("" if chart is None else f"@{version or chart}"))
    if wait_plugin:
        helm.wait_plugin_ready(suite.cluster, RELEASE, names.NAMESPACE, timeout=s.timeout(timeout))
    return took


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def container_terminated_with(cluster: Any, text: str, *, container: str = names.CONTAINER_GPUS,
                              selector: str = PLUGIN_SELECTOR, timeout: float = 120) -> str:
    """Wait until a driver container has exited (restarted or waiting in CrashLoopBackOff) and its previous log
    contains ``text``; returns that log. The wait is on the pods; the log is read when a pod shows a restart."""
    seen: list[str] = []

    def crashed(pod: Obj) -> bool:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            last = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
            if not last:
                continue
            try:
                log = K.pod_log(cluster, names.NAMESPACE, pod["metadata"]["name"], container,
                                previous=bool((cs.get("lastState") or {}).get("terminated")))
            except Exception:  # the previous instance's log may not be readable yet
                return False
            if text in log:
                seen.append(log)
                return True
        return False

    W.wait_for(W.source_for(cluster, "pods", names.NAMESPACE, label_selector=selector), crashed,
               timeout=timeout, what=f"{container} container exiting with {text!r}")
    return seen[-1]


def with_gates(cfg: DriverConfig, **gates: bool) -> DriverConfig:
    """``cfg`` with more gates set."""
    merged = dict(cfg.gates)
    merged.update(gates)
    return replace(cfg, gates=tuple(sorted(merged.items())))


def iter_lines(text: str) -> Iterator[str]:
    yield from (ln for ln in text.splitlines() if ln.strip())


class PluginReadiness:
    """Follows the kubelet-plugin pods (a watch in a thread) and measures the longest time a node had no Ready
    plugin pod — the window in which new claims on that node cannot be prepared — across helm transitions.

    Use as a context manager around the transitions; :attr:`longest_gap_s` and :attr:`gaps` are final after exit.
    """

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plugin-readiness", daemon=True)
        self._pods: dict[str, Obj] = {}
        self._down_since: dict[str, float] = {}
        self._lock = threading.Lock()
        self.gaps: list[tuple[str, float]] = []
        """(node, seconds without a Ready plugin pod), one per outage, in order."""

    @property
    def longest_gap_s(self) -> float:
        return max((g for _, g in self.gaps), default=0.0)

    def _update(self) -> None:
        now = time.monotonic()
        ready_nodes: set[str] = set()
        nodes: set[str] = set()
        for p in self._pods.values():
            node = str((p.get("spec") or {}).get("nodeName") or "")
            if not node:
                continue
            nodes.add(node)
            if W.pod_is_ready(p) and not (p.get("metadata") or {}).get("deletionTimestamp"):
                ready_nodes.add(node)
        for node in nodes | set(self._down_since):
            if node in ready_nodes and node in self._down_since:
                self.gaps.append((node, now - self._down_since.pop(node)))
            elif node not in ready_nodes and node not in self._down_since:
                self._down_since[node] = now

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                listed = self.cluster.api_client.sanitize_for_serialization(
                    self.cluster.core.list_namespaced_pod(names.NAMESPACE, label_selector=PLUGIN_SELECTOR))
                with self._lock:
                    self._pods = {p["metadata"]["name"]: p for p in listed.get("items") or []}
                    self._update()
                w = watch.Watch()  # type: ignore[no-untyped-call]
                for ev in w.stream(  # type: ignore[no-untyped-call]
                        self.cluster.core.list_namespaced_pod, names.NAMESPACE, label_selector=PLUGIN_SELECTOR,
                        resource_version=listed["metadata"].get("resourceVersion"), timeout_seconds=2):
                    obj = self.cluster.api_client.sanitize_for_serialization(ev["object"])
                    with self._lock:
                        if ev["type"] == "DELETED":
                            self._pods.pop(obj["metadata"]["name"], None)
                        else:
                            self._pods[obj["metadata"]["name"]] = obj
                        self._update()
                    if self._stop.is_set():
                        break
                w.stop()  # type: ignore[no-untyped-call]
            except Exception:  # a dropped watch: relist
                self._stop.wait(0.2)

    def __enter__(self) -> PluginReadiness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            now = time.monotonic()
            for node, since in self._down_since.items():
                self.gaps.append((node, now - since))
            self._down_since.clear()
