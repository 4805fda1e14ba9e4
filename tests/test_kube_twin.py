"""checks.kube against the twin as a real API server: waits, timelines, cleanup by label, artifacts, helm guard.

Skipped until ``checks.twin.lambda_twin.Twin`` exists (it is built in parallel); nothing here knows it is a twin
beyond obtaining the kubeconfig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

twin_cluster = pytest.importorskip("checks.twin.lambda_twin")

from checks.kube import objects  # noqa: E402
from checks.kube.artifacts import collect  # noqa: E402
from checks.kube.client import ClusterClient, ClusterTarget  # noqa: E402
from checks.kube.helm import InstallOptions, ReleaseNotManaged, release_status, upgrade_install  # noqa: E402
from checks.kube.labels import RUN_ID_LABEL, cleanup, labels_for, namespace_name  # noqa: E402
from checks.kube.wait import PodTimeline, WaitOptions, wait_pod_ready  # noqa: E402

RUN = "r20261126-175800-ab12"
OTHER = "r20261126-175800-cd34"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterClient]:
    run_dir = tmp_path_factory.mktemp("twin")
    tw = twin_cluster.Twin("gpu_1x_a10", run_dir=run_dir)
    tw.start()
    try:
        with ClusterClient(ClusterTarget(Path(tw.kubeconfig)), run_dir=run_dir / "kube") as c:
            yield c
    finally:
        tw.stop()


def ns_obj(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def cm(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "data": {"k": "v"}}


def test_server_version_and_kubectl(cluster: ClusterClient) -> None:
    v = cluster.server_version()
    assert v.major == 1 and v.minor >= 34
    assert "node" in cluster.kubectl("get", "nodes", "-o", "name").stdout


def test_pod_ready_timeline_and_artifacts(cluster: ClusterClient, tmp_path: Path) -> None:
    ns = namespace_name(RUN, "kube-twin-pod")
    objects.create(cluster, ns_obj(ns, labels_for(RUN, "kube-twin-pod")))
    objects.create(cluster, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns, "labels": labels_for(RUN)},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
            "name": "c", "image": "ubuntu:24.04",
            "command": ["bash", "-c", "echo hello; trap 'exit 0' TERM; sleep 9999 & wait"]}]},
    })
    timeline = PodTimeline()
    pod = wait_pod_ready(cluster, ns, "p", timeout=60, options=WaitOptions(observe=timeline.observe))
    assert pod["status"]["phase"] == "Running"
    (sample,) = timeline.samples()
    assert sample.name == "p" and sample.to_ready_s is not None and sample.to_ready_s >= 0
    files = collect(cluster, ns, tmp_path / "art")
    names = {p.relative_to(tmp_path / "art").as_posix() for p in files}
    assert {"pods.yaml", "pods.txt", "events.txt", "resourceclaims.yaml", "resourceslices.yaml"} <= names
    assert not [n for n in names if n.endswith("error.txt") and not n.startswith("driver/")]
    assert "Pod " + ns + "/p" in (tmp_path / "art" / "pods.txt").read_text()
    cleanup(cluster, RUN, timeout=60)


def test_cleanup_removes_only_labelled_objects_of_the_run(cluster: ClusterClient) -> None:
    ns = namespace_name(RUN, "kube-twin-clean")
    objects.create(cluster, ns_obj(ns, labels_for(RUN)))
    objects.create(cluster, cm("mine", ns, labels_for(RUN)))
    objects.create(cluster, cm("mine-in-default", "default", labels_for(RUN)))
    objects.create(cluster, cm("unlabelled", "default", {}))
    objects.create(cluster, cm("other-run", "default", labels_for(OTHER)))
    report = cleanup(cluster, RUN, timeout=60)
    assert "default/mine-in-default" in report.removed["configmaps"]
    assert report.removed["namespaces"] == [ns] and not report.errors
    assert objects.try_get(cluster, "namespaces", ns) is None
    assert objects.try_get(cluster, "configmaps", "mine-in-default", "default") is None
    assert objects.try_get(cluster, "configmaps", "unlabelled", "default") is not None
    assert objects.try_get(cluster, "configmaps", "other-run", "default") is not None
    # every run: the other run's object goes too, the unlabelled one never
    cleanup(cluster, None, timeout=60)
    assert objects.try_get(cluster, "configmaps", "other-run", "default") is None
    assert objects.try_get(cluster, "configmaps", "unlabelled", "default") is not None
    left = objects.list_(cluster, "configmaps", "default", label_selector=RUN_ID_LABEL)
    assert left == []


def test_helm_refuses_a_release_it_did_not_install(cluster: ClusterClient, tmp_path: Path) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tiny\ndata:\n  v: {{ .Values.v | quote }}\n")
    cluster.helm("install", "tiny", str(chart), "--namespace", "default", "--set", "v=1")
    assert release_status(cluster, "tiny", "default").managed is False  # type: ignore[union-attr]
    with pytest.raises(ReleaseNotManaged):
        upgrade_install(cluster, "tiny", str(chart), "default", {"v": "2"}, InstallOptions(wait_for_plugin=False))
    status = upgrade_install(cluster, "tiny", str(chart), "default", {"v": "3"},
                             InstallOptions(wait_for_plugin=False, adopt=True))
    assert status.managed and status.revision == 2
    assert objects.get(cluster, "configmaps", "tiny", "default")["data"]["v"] == "3"
    cluster.helm("uninstall", "tiny", "--namespace", "default")
