"""The twin's fault switch (kubetwin.api.faults) and how the lab's client lives with each fault.

Spec parsing and the deterministic rates are checked on their own; the rest runs against the session twin
through real HTTP: the official client and the lab's waits see exactly what the switch injects, and each
fault is turned off again at the end of its test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.client import ClusterClient, ClusterTarget
from checks.twin.lambda_twin import Twin
from kubetwin.api.faults import FaultRule, Faults, parse
from kubetwin.errors import ConfigError


def test_spec_parsing_and_errors() -> None:
    rules = parse("5xx:0.1, 429:0.5:2,drop-watch,410:0.3,slow:0.2:0.05")
    assert [(r.name, r.rate, r.arg) for r in rules] == [("5xx", 0.1, 0.0), ("429", 0.5, 2.0),
                                                       ("drop-watch", 1.0, 0.0), ("410", 0.3, 0.0),
                                                       ("slow", 0.2, 0.05)]
    for bad in ("boom", "5xx:2", "429:x", "slow:0.5:-1", "5xx:0.1:1:2"):
        with pytest.raises(ConfigError):
            parse(bad)
    assert parse("") == []


def test_rates_are_even_and_repeatable() -> None:
    rule = FaultRule("5xx", 0.25)
    hits = [rule.strikes() for _ in range(12)]
    assert hits == [True, False, False, False] * 3 and rule.hits == 3


@pytest.fixture
def faulty(twin: Twin) -> Iterator[tuple[Faults, ClusterClient]]:
    assert twin.server is not None
    faults = twin.server.faults
    with ClusterClient(ClusterTarget(Path(twin.kubeconfig))) as cluster:
        try:
            yield faults, cluster
        finally:
            faults.configure("")


def test_5xx_names_itself_and_reads_are_retried(faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure("5xx:0.5")
    for _ in range(4):  # every second request fails; the lab's reads retry through it
        assert K.get(cluster, "namespaces", "default")["metadata"]["name"] == "default"
    assert faults.counts()["5xx"] >= 2
    faults.configure("5xx:1")
    with pytest.raises(ApiException) as err:
        K.create(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never"}}, "default")
    assert err.value.status == 503 and "injected fault: 5xx" in str(err.value.body)


def test_429_with_retry_after_is_retried_for_writes_too(faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure("429:0.5:1")
    made = K.create(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-429"}},
                    "default")
    try:
        assert made["metadata"]["name"] == "after-429" and faults.counts()["429"] >= 1
    finally:
        faults.configure("")
        K.delete(cluster, "configmaps", "after-429", "default")


class CreatesAfterFirstList:
    """The real list-watch, which creates the awaited object right after its first LIST (so only a watch —
    dropped or expired by the faults — can deliver it)."""

    def __init__(self, cluster: ClusterClient) -> None:
        self.cluster = cluster
        self.inner = W.source_for(cluster, "configmaps", "default", field_selector="metadata.name=late")
        self.description = self.inner.description
        self.lists = 0

    def list(self) -> tuple[list[dict[str, object]], str]:
        out = self.inner.list()
        self.lists += 1
        if self.lists == 1:
            K.create(self.cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}, "default")
        return out

    def watch(self, resource_version: str, timeout_s: float) -> Iterator[W.WatchStreamEvent]:
        return self.inner.watch(resource_version, timeout_s)


@pytest.mark.parametrize("fault", ["drop-watch", "410"])
def test_waits_survive_dropped_and_expired_watches(fault: str, faulty: tuple[Faults, ClusterClient]) -> None:
    faults, cluster = faulty
    faults.configure(f"{fault}:1")
    source = CreatesAfterFirstList(cluster)
    opts = W.WaitOptions()
    try:
        W.wait_until(source, bool, timeout=30, what="configmap late", options=opts)
        hits = faults.counts()
    finally:
        faults.configure("")
        K.delete(cluster, "configmaps", "late", "default")
    assert hits[fault] >= 1, hits
    assert opts.stats.lists >= 2  # the dropped/expired watches were followed by relists
