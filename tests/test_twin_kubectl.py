"""The twin's API server driven by the real kubectl and helm binaries."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetwin.api.core import Api
from kubetwin.api.server import ApiServer


def _tool(name: str) -> str:
    try:
        from checks.kube.binaries import find_tool

        return str(find_tool(name).path)
    except Exception:  # any lookup failure: fall back to the extracted layer
        p = Path(f"/tmp/kx/layer/{name}/{name}")
        if not p.exists():
            pytest.skip(f"{name} binary not available")
        return str(p)


class Kube:
    def __init__(self, srv: ApiServer, home: Path) -> None:
        self.srv = srv
        self.kubeconfig = str(srv.write_kubeconfig(home / "kubeconfig"))
        self.home = home
        self.kubectl_bin = _tool("kubectl")
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig, "HOME": str(home),
                    "HELM_CACHE_HOME": str(home / "helm-cache"), "HELM_CONFIG_HOME": str(home / "helm-config"),
                    "HELM_DATA_HOME": str(home / "helm-data")}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "--cache-dir", str(self.home / "cache"), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
        return r

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([_tool("helm"), *args], capture_output=True, text=True, timeout=60, env=self.env)
        if r.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {r.stderr}")
        return r


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    api = Api()
    api.create(api.rt("v1", "Namespace"), None, {"metadata": {"name": "default"}})
    with ApiServer(api) as srv:
        yield Kube(srv, tmp_path_factory.mktemp("kube"))


CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
  labels: {app: demo}
data:
  a: "%s"
"""


def test_apply_get_describe_delete(kube: Kube) -> None:
    assert kube.kubectl("apply", "-f", "-", input=CM % 1).stdout.strip() == "configmap/demo created"
    assert kube.kubectl("apply", "-f", "-", input=CM % 1).stdout.strip() == "configmap/demo unchanged"
    assert kube.kubectl("apply", "-f", "-", input=CM % 2).stdout.strip() == "configmap/demo configured"
    table = kube.kubectl("get", "configmaps").stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"] and table[1].split()[:2] == ["demo", "1"]
    as_json = json.loads(kube.kubectl("get", "cm", "demo", "-o", "json").stdout)
    assert as_json["data"] == {"a": "2"} and "kubectl.kubernetes.io/last-applied-configuration" in \
        as_json["metadata"]["annotations"]
    assert "a: \"2\"" in kube.kubectl("get", "cm", "demo", "-o", "yaml").stdout
    assert kube.kubectl("get", "cm", "-l", "app=demo", "-o", "name").stdout.strip() == "configmap/demo"
    described = kube.kubectl("describe", "configmap", "demo").stdout
    assert "Name:" in described and "demo" in described and "app=demo" in described
    ssa = kube.kubectl("apply", "--server-side", "-f", "-", input=CM % 2).stdout.strip()
    assert ssa == "configmap/demo serverside-applied"
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=CM % 3)
    assert json.loads(kube.kubectl("get", "cm", "demo", "-o", "json").stdout)["data"] == {"a": "3"}
    managers = {m["manager"] for m in json.loads(kube.kubectl(
        "get", "cm", "demo", "-o", "json", "--show-managed-fields").stdout)["metadata"]["managedFields"]}
    assert "kubectl" in managers
    assert "deleted" in kube.kubectl("delete", "cm", "demo").stdout
    assert kube.kubectl("get", "cm", "demo", check=False).returncode != 0


def test_api_resources_and_strict_validation(kube: Kube) -> None:
    out = kube.kubectl("api-resources").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert "resourceclaims" in rows and "ResourceClaim" in rows["resourceclaims"]
    assert rows["pods"][1] == "po"
    bad = CM.replace("\ndata:", "\nbogus: 1\ndata:") % 1
    r = kube.kubectl("apply", "-f", "-", input=bad, check=False)
    assert r.returncode != 0 and 'unknown field "bogus"' in r.stderr


def test_wait_and_watch(kube: Kube) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiter"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    kube.kubectl("create", "-f", "-", input=json.dumps(pod))
    watcher = subprocess.Popen(
        [kube.kubectl_bin, "--kubeconfig", kube.kubeconfig, "--cache-dir", str(kube.home / "cache"), "get", "pods",
         "-w", "--request-timeout=20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kube.env)
    waiter = subprocess.Popen(
        [kube.kubectl_bin, "--kubeconfig", kube.kubeconfig, "--cache-dir", str(kube.home / "cache"), "wait",
         "--for=condition=Ready", "pod/waiter", "--timeout=20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=kube.env)
    try:
        assert watcher.stdout is not None
        header = watcher.stdout.readline().split()
        assert header[:3] == ["NAME", "READY", "STATUS"]
        assert watcher.stdout.readline().split()[0] == "waiter"
        status = {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
        kube.kubectl("patch", "pod", "waiter", "--subresource=status", "--type=merge", "-p", json.dumps(status))
        out, err = waiter.communicate(timeout=25)
        assert waiter.returncode == 0, err
        assert out.strip() == "pod/waiter condition met"
        assert watcher.stdout.readline().split()[0] == "waiter"  # the status change streamed as a row
    finally:
        watcher.kill()
        watcher.communicate()
        if waiter.poll() is None:
            waiter.kill()
    deleter = subprocess.Popen(
        [kube.kubectl_bin, "--kubeconfig", kube.kubeconfig, "--cache-dir", str(kube.home / "cache"), "wait",
         "--for=delete", "pod/waiter", "--timeout=20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=kube.env)
    # bound pod: graceful deletion leaves it Terminating; grace 0 removes it (what the kubelet would do)
    kube.kubectl("delete", "pod", "waiter", "--wait=false")
    kube.kubectl("delete", "pod", "waiter", "--grace-period=0", "--force", check=False)
    out, err = deleter.communicate(timeout=25)
    assert deleter.returncode == 0, err


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    "crds/gadgets.yaml": """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.org
spec:
  group: example.org
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
""",
    "templates/cm.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: tiny-config
data:
  value: {{ .Values.value | quote }}
""",
    "templates/gadget.yaml": """apiVersion: example.org/v1
kind: Gadget
metadata:
  name: tiny-gadget
spec:
  size: {{ .Values.size }}
""",
    "values.yaml": "value: one\nsize: 1\n",
}


def test_helm_install_upgrade_uninstall(kube: Kube, tmp_path: Path) -> None:
    chart = tmp_path / "tiny"
    for rel, text in CHART.items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_text(text)
    kube.helm("install", "tiny", str(chart), "--namespace", "default", "--wait", "--timeout", "30s")
    cm = json.loads(kube.kubectl("get", "cm", "tiny-config", "-o", "json", "--show-managed-fields").stdout)
    assert cm["data"] == {"value": "one"}
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert "helm" in {m["manager"] for m in cm["metadata"]["managedFields"]}
    gadget = json.loads(kube.kubectl("get", "gadget", "tiny-gadget", "-o", "json").stdout)
    assert gadget["spec"] == {"size": 1}
    secrets = kube.kubectl("get", "secrets", "-l", "owner=helm,name=tiny", "-o", "name").stdout.split()
    assert secrets == ["secret/sh.helm.release.v1.tiny.v1"]
    kube.helm("upgrade", "tiny", str(chart), "--namespace", "default", "--set", "value=two,size=2")
    assert json.loads(kube.kubectl("get", "cm", "tiny-config", "-o", "json").stdout)["data"] == {"value": "two"}
    assert json.loads(kube.kubectl("get", "gadget", "tiny-gadget", "-o", "json").stdout)["spec"] == {"size": 2}
    kube.helm("uninstall", "tiny", "--namespace", "default", "--wait")
    assert kube.kubectl("get", "cm", "tiny-config", check=False).returncode != 0
    assert kube.kubectl("get", "secrets", "-l", "owner=helm,name=tiny", "-o", "name").stdout.strip() == ""
