"""A container's environment and argv as the kubelet computes them before the runtime starts it.

The order is the kubelet's: service variables for the API server, ``envFrom`` sources, then ``env`` entries with
``$(VAR)`` expansion over what is already defined and ``valueFrom`` references (fieldRef, configMap/secret key
refs). ``command``/``args`` are expanded over the final environment.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from kubetwin.api.core import Api
from kubetwin.api.resources import core
from kubetwin.kubelet import images
from kubetwin.kubelet.podstate import KubeletConfig, PodState
from kubetwin.kubelet.runtime import STANDARD_PATH

CONFIGMAPS = core("configmaps")
SECRETS = core("secrets")


@dataclass(frozen=True)
class NodeFacts:
    """What of the node a container's environment refers to."""

    name: str
    """The node name (``spec.nodeName`` field refs)."""
    ip: str
    """The node's internal IP (``status.hostIP``)."""


def container_env(api: Api, config: KubeletConfig, node: NodeFacts, st: PodState,
                  c: dict[str, Any]) -> dict[str, str]:
    """The environment of container ``c`` of pod ``st`` (before CDI edits and the tools dir on PATH)."""
    pod = st.pod
    env: dict[str, str] = {"PATH": STANDARD_PATH, "HOSTNAME": str(pod["spec"].get("hostname") or st.name)}
    host, port = config.api_host, str(config.api_port)
    env.update({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}",
                f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}"})
    for src in c.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, rt in (("configMapRef", CONFIGMAPS), ("secretRef", SECRETS)):
            ref = src.get(kind)
            if not ref:
                continue
            obj = api.try_get(rt, st.ns, ref.get("name", ""))
            data = decoded(obj, kind == "secretRef") if obj else {}
            for k, v in data.items():
                env[prefix + k] = v
    for e in c.get("env") or []:
        name = e.get("name", "")
        if "value" in e:
            env[name] = expand(str(e["value"]), env)
            continue
        val = value_from(api, node, st, e.get("valueFrom") or {})
        if val is not None:
            env[name] = val
    return env


def field_ref(node: NodeFacts, st: PodState, path: str) -> str:
    """The value of a downward-API ``fieldPath`` (env ``fieldRef`` and downwardAPI volume items)."""
    pod = st.pod
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((pod["metadata"].get(m.group(1)) or {}).get(m.group(2), ""))
    return {
        "metadata.name": st.name, "metadata.namespace": st.ns, "metadata.uid": st.uid,
        "spec.nodeName": node.name, "spec.serviceAccountName": str(pod["spec"].get("serviceAccountName",
                                                                                    "default")),
        "status.podIP": st.pod_ip, "status.podIPs": st.pod_ip, "status.hostIP": node.ip,
        "status.hostIPs": node.ip,
    }.get(path, "")


def value_from(api: Api, node: NodeFacts, st: PodState, vf: dict[str, Any]) -> str | None:
    """An ``env[].valueFrom`` value; None leaves the variable unset (a missing key)."""
    if "fieldRef" in vf:
        return field_ref(node, st, vf["fieldRef"].get("fieldPath", ""))
    for kind, rt in (("configMapKeyRef", CONFIGMAPS), ("secretKeyRef", SECRETS)):
        if kind in vf:
            ref = vf[kind]
            obj = api.try_get(rt, st.ns, ref.get("name", ""))
            data = decoded(obj, kind == "secretKeyRef") if obj else {}
            return data.get(ref.get("key", ""))
    if "resourceFieldRef" in vf:
        return "0"
    return None


def decoded(obj: dict[str, Any], secret: bool) -> dict[str, str]:
    """A ConfigMap's ``data`` or a Secret's ``data`` (base64-decoded) + ``stringData`` as text."""
    out: dict[str, str] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode(errors="replace")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v)
    else:
        out.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
    return out


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars substituted, ``$$`` → ``$``, undefined left as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, s)


def expand_argv(c: dict[str, Any], env: dict[str, str]) -> list[str] | None:
    """command + args as the runtime execs them. The images the twin knows have no ENTRYPOINT (only a CMD,
    see ``images.IMAGE_DEFAULTS``), so ``args`` alone replace the CMD and ``command`` replaces both."""
    cmd = list(c.get("command") or [])
    args = list(c.get("args") or [])
    argv = cmd + args if (cmd or args) else (images.image_default_argv(str(c.get("image", ""))) or [])
    return [expand(str(a), env) for a in argv] or None


__all__ = ["NodeFacts", "container_env", "decoded", "expand", "expand_argv", "field_ref", "value_from"]
