"""ClusterClient handle without a server: kubeconfig/context handling, and the real kubectl/helm it runs.

kubectl and helm are run for real (from the dra-lab tools cache) on commands that need no API server, to
prove they see our kubeconfig/context and private helm homes rather than the user's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from checks.cli import main
from checks.errors import UsageError
from checks.kube.binaries import ToolLookup, find_tools, install_tools
from checks.kube.client import ClusterClient, ClusterTarget, ToolFailed

SECRET = "s3cr3t-token-never-printed"


@pytest.fixture(scope="module")
def tools_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("toolcache")
    install_tools(ToolLookup(env={"DRA_LAB_CACHE": str(base)}))
    return {"DRA_LAB_CACHE": str(base), "PATH": ""}


@pytest.fixture()
def kubeconfig(tmp_path: Path) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "alpha",
        "clusters": [{"name": n, "cluster": {"server": f"https://127.0.0.1:{p}", "insecure-skip-tls-verify": True}}
                     for n, p in (("a", 1), ("b", 2))],
        "users": [{"name": "u", "user": {"token": SECRET}}],
        "contexts": [{"name": "alpha", "context": {"cluster": "a", "user": "u", "namespace": "ns-a"}},
                     {"name": "beta", "context": {"cluster": "b", "user": "u", "namespace": "ns-b"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_missing_kubeconfig_and_unknown_context_are_usage_errors(tmp_path: Path, kubeconfig: Path) -> None:
    with pytest.raises(UsageError, match="kubeconfig file not found"):
        ClusterClient(ClusterTarget(tmp_path / "nope"))
    with pytest.raises(UsageError) as info:
        ClusterClient(ClusterTarget(kubeconfig, "gamma"))
    assert "alpha, beta" in info.value.one_line() and SECRET not in info.value.one_line()


def test_each_cluster_has_its_own_configuration(kubeconfig: Path) -> None:
    from kubernetes import client as k8s

    default_host = k8s.Configuration.get_default_copy().host
    with ClusterClient(ClusterTarget(kubeconfig, "alpha")) as a, ClusterClient(ClusterTarget(kubeconfig, "beta")) as b:
        assert a.api_client.configuration.host == "https://127.0.0.1:1"
        assert b.api_client.configuration.host == "https://127.0.0.1:2"
        assert a.api_client.configuration is not b.api_client.configuration
        assert SECRET not in repr(a)
    assert k8s.Configuration.get_default_copy().host == default_host  # the global default is untouched


def test_kubectl_uses_our_kubeconfig_and_context(kubeconfig: Path, tools_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "someone-elses"))
    tools = find_tools(ToolLookup(env=tools_env))
    with ClusterClient(ClusterTarget(kubeconfig, "beta"), tools=tools, run_dir=tmp_path / "run") as c:
        minified = c.kubectl("config", "view", "--minify", "-o", "jsonpath={.contexts[0].name} {..namespace}")
        assert minified.stdout.strip() == "beta ns-b"
        with pytest.raises(ToolFailed) as info:
            c.kubectl("get", "pods", "--request-timeout=2s")  # nothing listens on port 2
        assert info.value.returncode != 0 and str(info.value).startswith("kubectl get pods exited")
        assert SECRET not in str(info.value)
    assert not home.exists()  # neither ~/.kube nor anything else under HOME was written


def test_helm_gets_private_homes(kubeconfig: Path, tools_env: dict[str, str], tmp_path: Path) -> None:
    tools = find_tools(ToolLookup(env=tools_env))
    run = tmp_path / "run"
    with ClusterClient(ClusterTarget(kubeconfig), tools=tools, run_dir=run) as c:
        env = dict(line.split("=", 1) for line in c.helm("env").stdout.splitlines() if "=" in line)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert env[var].strip('"').startswith(str(run)), var
    assert env["HELM_KUBECONTEXT"].strip('"') == ""


def test_owned_run_dir_is_removed_on_close(kubeconfig: Path) -> None:
    c = ClusterClient(ClusterTarget(kubeconfig))
    run_dir = c.run_dir
    assert run_dir.is_dir()
    c.close()
    assert not run_dir.exists()


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "dra-lab"
    if not exe.exists():
        exe = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dra-lab"
    return subprocess.run([str(exe), *argv], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False)


def test_cli_tools_prints_versions_from_the_cache(tools_env: dict[str, str]) -> None:
    proc = run_cli("tools", env={"DRA_LAB_CACHE": tools_env["DRA_LAB_CACHE"]})
    assert proc.returncode == 0, proc.stderr
    assert "kubectl  v1.37." in proc.stdout and "(cache)" in proc.stdout and "helm     v4." in proc.stdout


def test_cli_clean_guards(kubeconfig: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["clean", "--kubeconfig", str(kubeconfig)])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["clean", "--kubeconfig", str(kubeconfig), "--context", "alpha", "--run-id", "r1"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["clean"])
    assert info.value.code == 2


def test_every_registered_kind_resolves_to_client_methods(kubeconfig: Path) -> None:
    from checks.kube.kinds import KINDS, CustomKind

    with ClusterClient(ClusterTarget(kubeconfig)) as c:
        for k in KINDS.values():
            api = getattr(c, k.api)
            if isinstance(k, CustomKind):  # CRDs: the generic custom-object calls, told group/version/plural
                assert k.group and k.version
                names = (["list_namespaced_custom_object", "list_cluster_custom_object",
                          "delete_namespaced_custom_object"] if k.namespaced
                         else ["list_cluster_custom_object", "delete_cluster_custom_object"])
            else:
                names = ([f"list_namespaced_{k.singular}", f"list_{k.singular}_for_all_namespaces",
                          f"delete_namespaced_{k.singular}"] if k.namespaced
                         else [f"list_{k.singular}", f"delete_{k.singular}"])
            for name in names:
                assert callable(getattr(api, name, None)), f"{k.plural}: {type(api).__name__}.{name}"
            assert callable(k.list_fn(c, "ns" if k.namespaced else None))
