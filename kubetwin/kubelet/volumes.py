"""Pod volumes as real directories the container sandbox binds (hostPath, emptyDir, configMap, secret,
downwardAPI, projected with a service-account token).

Each kind has a materializer in :data:`VOLUME_KINDS` (a registry, kind key → function) that returns the host
directory or file backing the volume. Contents of configMap/secret/downwardAPI/projected volumes are written at
every container start from the objects as they are then (a real kubelet also updates them while the pod runs;
the twin does not — docs/twin-fidelity.md). ``hostPath`` points into the node's emulated host root, so a pod
mounting ``/dev`` sees the node's emulated device files. Kinds the twin does not model (PVCs, CSI, …) get an
empty directory so the pod still starts.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kubetwin.api.core import Api
from kubetwin.api.resources import core
from kubetwin.kubelet.env import NodeFacts, decoded, field_ref
from kubetwin.kubelet.podstate import PodState
from kubetwin.kubelet.sandbox import Mount

CONFIGMAPS = core("configmaps")
SECRETS = core("secrets")
READ_ONLY_KINDS = frozenset({"configMap", "secret", "downwardAPI", "projected"})
"""Volume kinds the kubelet always mounts read-only."""
TOKEN_DEFAULT_EXPIRATION_S = 3607
"""The projected token lifetime the kube-api-access volume asks for (3600 s + the kubelet's 7 s jitter)."""


@dataclass(frozen=True)
class VolumeContext:
    """What a volume materializer needs."""

    api: Api
    node: NodeFacts
    st: PodState
    pod_dir: Path
    """The pod's directory under the kubelet's run dir (volumes live in ``volumes/<kind>/<name>``)."""
    host_root: Path
    """The node's emulated ``/`` (hostPath volumes)."""
    now: Callable[[], dt.datetime]


Materializer = Callable[[VolumeContext, str, dict[str, Any]], Path]
"""(context, volume name, the kind's spec) → the host path backing the volume."""


def _fresh_dir(ctx: VolumeContext, kind: str, name: str) -> Path:
    d = ctx.pod_dir / "volumes" / kind / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def _write(d: Path, rel: str, data: str | bytes, mode: int | None) -> None:
    p = d / PurePosixPath(rel).as_posix().lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(p, mode if mode is not None else 0o644)


def _keys(d: Path, data: dict[str, str], items: list[dict[str, Any]] | None, mode: int | None) -> None:
    if items:
        for it in items:
            if it.get("key") in data:
                _write(d, str(it.get("path") or it["key"]), data[it["key"]], it.get("mode", mode))
        return
    for k, v in data.items():
        _write(d, k, v, mode)


def _object_data(ctx: VolumeContext, secret: bool, name: str) -> dict[str, str]:
    obj = ctx.api.try_get(SECRETS if secret else CONFIGMAPS, ctx.st.ns, name)
    return decoded(obj, secret) if obj else {}


def _downward(ctx: VolumeContext, d: Path, items: list[dict[str, Any]], mode: int | None) -> None:
    meta = ctx.st.pod["metadata"]
    for it in items:
        path = str(it.get("path", ""))
        fp = (it.get("fieldRef") or {}).get("fieldPath", "")
        if fp in ("metadata.labels", "metadata.annotations"):
            pairs = sorted((meta.get(fp.split(".", 1)[1]) or {}).items())
            text = "\n".join(f"{k}={json.dumps(str(v))}" for k, v in pairs)
        elif fp:
            text = field_ref(ctx.node, ctx.st, fp)
        else:
            text = "0"  # resourceFieldRef: no limits in the twin
        _write(d, path, text, it.get("mode", mode))


def service_account_token(ctx: VolumeContext, audience: str, expiration_s: int) -> str:
    """A JWT-shaped bound token with the claims a real projected token carries (namespace, pod, service
    account, audience, expiry). It is unsigned: the twin's API server accepts only its own bearer token, so
    in-pod programs use it for identity, not to authenticate (docs/twin-fidelity.md)."""
    now = int(ctx.now().timestamp())
    sa = str(ctx.st.pod["spec"].get("serviceAccountName") or "default")
    claims = {"aud": [audience], "exp": now + expiration_s, "iat": now, "nbf": now,
              "iss": "https://kubernetes.default.svc.cluster.local",
              "sub": f"system:serviceaccount:{ctx.st.ns}:{sa}",
              "kubernetes.io": {"namespace": ctx.st.ns, "node": {"name": ctx.node.name},
                                "pod": {"name": ctx.st.name, "uid": ctx.st.uid},
                                "serviceaccount": {"name": sa}}}

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _host_path(ctx: VolumeContext, _name: str, spec: dict[str, Any]) -> Path:
    src = ctx.host_root / str(spec.get("path", "/")).lstrip("/")
    kind = spec.get("type") or ""
    if kind in ("File", "FileOrCreate"):
        src.parent.mkdir(parents=True, exist_ok=True)
        src.touch(exist_ok=True)
    elif kind in ("", "DirectoryOrCreate", "Directory") and not src.exists():
        src.mkdir(parents=True, exist_ok=True)
    return src


def _empty_dir(ctx: VolumeContext, name: str, _spec: dict[str, Any]) -> Path:
    d = ctx.pod_dir / "volumes" / "empty-dir" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _config_map(ctx: VolumeContext, name: str, spec: dict[str, Any]) -> Path:
    d = _fresh_dir(ctx, "configmap", name)
    _keys(d, _object_data(ctx, False, str(spec.get("name", ""))), spec.get("items"), spec.get("defaultMode"))
    return d


def _secret(ctx: VolumeContext, name: str, spec: dict[str, Any]) -> Path:
    d = _fresh_dir(ctx, "secret", name)
    _keys(d, _object_data(ctx, True, str(spec.get("secretName", ""))), spec.get("items"), spec.get("defaultMode"))
    return d


def _downward_api(ctx: VolumeContext, name: str, spec: dict[str, Any]) -> Path:
    d = _fresh_dir(ctx, "downward-api", name)
    _downward(ctx, d, spec.get("items") or [], spec.get("defaultMode"))
    return d


def _projected(ctx: VolumeContext, name: str, spec: dict[str, Any]) -> Path:
    d = _fresh_dir(ctx, "projected", name)
    mode = spec.get("defaultMode")
    for src in spec.get("sources") or []:
        if "serviceAccountToken" in src:
            t = src["serviceAccountToken"]
            token = service_account_token(ctx, str(t.get("audience") or "https://kubernetes.default.svc"),
                                          int(t.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION_S))
            _write(d, str(t.get("path") or "token"), token, 0o600 if mode is None else mode)
        elif "configMap" in src:
            cm = src["configMap"]
            _keys(d, _object_data(ctx, False, str(cm.get("name", ""))), cm.get("items"), mode)
        elif "secret" in src:
            sec = src["secret"]
            _keys(d, _object_data(ctx, True, str(sec.get("name", ""))), sec.get("items"), mode)
        elif "downwardAPI" in src:
            _downward(ctx, d, src["downwardAPI"].get("items") or [], mode)
    return d


VOLUME_KINDS: dict[str, Materializer] = {
    "hostPath": _host_path,
    "emptyDir": _empty_dir,
    "configMap": _config_map,
    "secret": _secret,
    "downwardAPI": _downward_api,
    "projected": _projected,
}


def materialize(ctx: VolumeContext) -> dict[str, tuple[str, Path]]:
    """Every pod volume → (kind, backing host path)."""
    out: dict[str, tuple[str, Path]] = {}
    for v in ctx.st.pod["spec"].get("volumes") or []:
        name = str(v.get("name", ""))
        kind = next((k for k in VOLUME_KINDS if k in v), "")
        if kind:
            out[name] = (kind, VOLUME_KINDS[kind](ctx, name, v[kind] or {}))
        else:
            out[name] = ("other", _empty_dir(ctx, name, {}))
    return out


def container_mounts(c: dict[str, Any], vols: dict[str, tuple[str, Path]]) -> list[Mount]:
    """Bind mounts for container ``c``'s ``volumeMounts`` (``subPath`` honoured, read-only kinds forced)."""
    out: list[Mount] = []
    for m in c.get("volumeMounts") or []:
        entry = vols.get(str(m.get("name", "")))
        if entry is None or not m.get("mountPath"):
            continue
        kind, src = entry
        if m.get("subPath"):
            src = src / str(m["subPath"]).lstrip("/")
            if not src.exists():
                src.mkdir(parents=True, exist_ok=True)
        ro = bool(m.get("readOnly")) or kind in READ_ONLY_KINDS
        out.append(Mount("bind", "/" + str(m["mountPath"]).strip("/"), source=str(src), ro=ro))
    return out


__all__ = ["READ_ONLY_KINDS", "VOLUME_KINDS", "VolumeContext", "container_mounts", "materialize",
           "service_account_token"]
