"""List ``limit``/``continue`` (issue 11 item 5): consistent chunks, remainingItemCount, 410 past compaction, and
the real clients' pagers (Python client ``_continue``, ``kubectl get --chunk-size``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from checks.kube.binaries import find_tool
from kubetwin.api.core import Api
from kubetwin.api.server import ApiServer
from kubetwin.api.store import Store


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Api, client.CoreV1Api, Path]]:
    api = Api(store=Store(history=40))
    api.create(api.rt("v1", "Namespace"), None, {"metadata": {"name": "default"}})
    for i in range(5):
        api.create(api.rt("v1", "ConfigMap"), "default", {"metadata": {"name": f"c{i}", "labels": {"odd": str(i % 2)}},
                                                         "data": {"v": "0"}})
    with ApiServer(api, crd_controller=False) as srv:
        kc = Path(srv.write_kubeconfig(tmp_path / "kc"))
        with config.new_client_from_config(str(kc)) as c:
            yield api, client.CoreV1Api(c), kc


def test_chunks_are_a_consistent_snapshot(served: tuple[Api, client.CoreV1Api, Path]) -> None:
    api, v1, _ = served
    cms = api.rt("v1", "ConfigMap")
    first = v1.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["c0", "c1"]
    assert first.metadata.remaining_item_count == 3 and first.metadata._continue
    # Changes after the first chunk do not leak into the rest of the list: same snapshot, same resourceVersion.
    api.delete(cms, "default", "c2")
    api.create(cms, "default", {"metadata": {"name": "c9"}})
    cur = api.get(cms, "default", "c3")
    cur["data"] = {"v": "changed"}
    api.update(cms, "default", "c3", cur)
    second = v1.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert [c.metadata.name for c in second.items] == ["c2", "c3"]
    assert second.items[1].data == {"v": "0"}
    assert second.metadata.resource_version == first.metadata.resource_version
    assert second.metadata.remaining_item_count == 1
    last = v1.list_namespaced_config_map("default", limit=2, _continue=second.metadata._continue)
    assert [c.metadata.name for c in last.items] == ["c4"]
    assert not last.metadata._continue and last.metadata.remaining_item_count is None
    # With a selector the count of what is left is unknown, as on a real server.
    odd = v1.list_namespaced_config_map("default", limit=1, label_selector="odd=1")
    assert [c.metadata.name for c in odd.items] == ["c1"] and odd.metadata.remaining_item_count is None
    odd2 = v1.list_namespaced_config_map("default", limit=1, label_selector="odd=1", _continue=odd.metadata._continue)
    assert [c.metadata.name for c in odd2.items] == ["c3"] and not odd2.metadata._continue


def test_expired_and_invalid_tokens(served: tuple[Api, client.CoreV1Api, Path]) -> None:
    api, v1, _ = served
    first = v1.list_namespaced_config_map("default", limit=1)
    cms = api.rt("v1", "ConfigMap")
    for i in range(45):  # more changes than the store's history keeps: the snapshot is compacted away
        api.create(cms, "default", {"metadata": {"name": f"x{i}"}})
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_config_map("default", limit=1, _continue=first.metadata._continue)
    assert exc.value.status == 410 and json.loads(exc.value.body)["reason"] == "Expired"
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_config_map("default", limit=1, _continue="not-a-token")
    assert exc.value.status == 400


def test_kubectl_pages_with_chunk_size(served: tuple[Api, client.CoreV1Api, Path]) -> None:
    _, _, kc = served
    r = subprocess.run([str(find_tool("kubectl").path), "--kubeconfig", str(kc), "get", "configmaps",
                        "--chunk-size=2", "-o", "name"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"configmap/c{i}" for i in range(5)]
