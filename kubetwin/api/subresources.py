"""Subresource handlers of the twin's API server, and their (subresource, method) registry.

``status`` and ``finalize`` reuse the verbs; ``binding`` and ``eviction`` call :class:`~kubetwin.api.core.Api`;
``scale`` converts to ``autoscaling/v1`` Scale; ``exec`` upgrades to WebSocket (:mod:`kubetwin.api.exec`);
``log`` is in :mod:`kubetwin.api.podlogs`. Handlers are functions of the request so the registry can name them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from kubetwin.api import errors as E
from kubetwin.api import patch
from kubetwin.api.core import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from kubetwin.api.errors import ApiError
from kubetwin.api.exec import ExecSession, accept_key, parse_request, pick_protocol
from kubetwin.api.podlogs import log
from kubetwin.api.request import Obj, Query, q1
from kubetwin.api.resources import ResourceType
from kubetwin.api.verbs import Verbs

Handler = Callable[[Verbs, ResourceType, "str | None", str, Query, bytes], None]
"""A subresource handler: (request, resource type, namespace, name, query, body)."""


def status_get(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                    body: bytes) -> None:
    h._get(rt, ns, name, q)

def status_put(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                    body: bytes) -> None:
    h._update(rt, ns, name, "status", q, body)

def status_patch(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                      body: bytes) -> None:
    h._patch(rt, ns, name, "status", q, body)

def finalize(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                  body: bytes) -> None:
    obj = h._parse_body(body)
    if not isinstance(obj, dict):
        raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
    cur = h.api.get(rt, ns, name)
    want_rv = (obj.get("metadata") or {}).get("resourceVersion")
    new = copy.deepcopy(cur)
    new.setdefault("spec", {})["finalizers"] = list((obj.get("spec") or {}).get("finalizers") or [])
    if not new["spec"]["finalizers"]:
        new["spec"].pop("finalizers")
    new["metadata"]["resourceVersion"] = want_rv or cur["metadata"]["resourceVersion"]
    out = h.api.update(rt, ns, name, new, field_manager=h._manager(q), dry_run=h._dry_run(q))
    h._send_obj(200, rt, out, q)

def binding(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                 body: bytes) -> None:
    obj = h._parse_body(body)
    if not isinstance(obj, dict):
        raise E.bad_request("the object provided is unrecognized or malformed: expected an object")
    target = obj.get("target") or {}
    node = target.get("name")
    if not node:
        raise ApiError(422, "Invalid", f'Binding "{name}" is invalid: target.name: Required value',
                       {"name": name, "kind": "Binding",
                        "causes": [{"reason": "FieldValueRequired", "message": "Required value",
                                    "field": "target.name"}]})
    if target.get("kind") not in (None, "", "Node"):
        raise ApiError(422, "Invalid", f'Binding "{name}" is invalid: target.kind: Invalid value: '
                       f'"{target.get("kind")}": must be empty or \'Node\'', {"name": name, "kind": "Binding"})
    uid = ((obj.get("metadata") or {}).get("uid")) or None
    annotations = (obj.get("metadata") or {}).get("annotations") or None
    h.api.bind(str(ns or ""), name, str(node), uid=uid, annotations=annotations,
                  dry_run=h._dry_run(q))
    h._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "code": 201})

def eviction(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                  body: bytes) -> None:
    obj = h._parse_body(body) if body.strip() else {}
    opts = (obj or {}).get("deleteOptions") or {}
    grace = opts.get("gracePeriodSeconds")
    h.api.delete(rt, ns, name, grace_period_seconds=None if grace is None else int(grace),
                    preconditions=opts.get("preconditions") or None, dry_run=h._dry_run(q, opts))
    h._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "code": 201})

def exec_(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]], body: bytes) -> None:
    """``pods/exec`` over WebSocket (§8.8). Errors before the upgrade are plain HTTP Status answers, which
    kubectl shows as ``error: unable to upgrade connection: <message>`` (after its SPDY fallback, which
    gets the same answer)."""
    pod = h.api.get(rt, ns, name)
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise E.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    container = q1(q, "container")
    names = [str(c.get("name")) for c in spec.get("containers") or []]
    others = [str(c.get("name")) for c in (spec.get("initContainers") or []) + (spec.get("ephemeralContainers")
                                                                              or [])]
    if not container:
        if len(names) != 1:
            raise E.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                f"[{' '.join(names)}]")
        container = names[0]
    elif container not in names + others:
        raise E.bad_request(f"container {container} is not valid for pod {name}")
    if not spec.get("nodeName"):
        raise E.bad_request(f"pod {name} does not have a host assigned")
    req = parse_request(q)
    if not req.argv:
        raise E.bad_request("you must specify at least one command for the container")
    if not (req.stdin or req.stdout or req.stderr):
        raise E.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    src = h.twin.exec_source
    if src is None:
        raise E.bad_request(f'no exec source is registered with the twin for container "{container}" in pod '
                            f'"{name}"')
    target = src.exec_target(str(ns), name, container)
    if target is None:
        # The kubelet's answer for a container without a running instance (500, proxied by the apiserver).
        raise ApiError(500, "InternalError", f'container not found ("{container}")')
    if target.emulated:
        raise E.bad_request(f'exec into emulated container "{container}" of pod "{name}" is not supported by '
                            f'the twin (its programs run in-process; see docs/twin-fidelity.md)')
    key = h.headers.get("Sec-WebSocket-Key")
    upgrade = (h.headers.get("Upgrade") or "").lower()
    if upgrade != "websocket" or not key:
        raise E.bad_request("exec needs a WebSocket upgrade (Upgrade: websocket with v5.channel.k8s.io or "
                            "v4.channel.k8s.io); the twin does not speak SPDY")
    protocol = pick_protocol(h.headers.get("Sec-WebSocket-Protocol"))
    if protocol is None:
        raise E.bad_request(f"exec: none of the offered subprotocols "
                            f"{h.headers.get('Sec-WebSocket-Protocol')!r} is supported by the twin "
                            f"(v5.channel.k8s.io, v4.channel.k8s.io)")
    h.send_response(101, "Switching Protocols")
    h.send_header("Upgrade", "websocket")
    h.send_header("Connection", "Upgrade")
    h.send_header("Sec-WebSocket-Accept", accept_key(key))
    h.send_header("Sec-WebSocket-Protocol", protocol)
    h.end_headers()
    h.wfile.flush()
    h.close_connection = True
    ExecSession(h.connection, protocol, req, target, h.twin.stopping).run()

def scale_get(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                   body: bytes) -> None:
    h._send_json(200, _scale_of(h.api.get(rt, ns, name)))

def scale_write(h: Verbs, rt: ResourceType, ns: str | None, name: str, q: dict[str, list[str]],
                     body: bytes) -> None:
    cur = h.api.get(rt, ns, name)
    scale = _scale_of(cur)
    parsed = h._parse_body(body)
    ctype = (h.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
    if h.command == "PUT":
        new_scale = parsed
    elif ctype == JSON_PATCH:
        new_scale = patch.json_patch(scale, parsed)
    elif ctype in (MERGE_PATCH, STRATEGIC_PATCH):
        new_scale = patch.merge_patch(scale, parsed)
    else:
        raise E.unsupported_media_type(ctype)
    replicas = ((new_scale or {}).get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                       f'{replicas}: must be greater than or equal to 0', {"name": name, "kind": "Scale"})
    want_rv = ((new_scale.get("metadata") or {}).get("resourceVersion")) if h.command == "PUT" else None
    new = copy.deepcopy(cur)
    new["spec"]["replicas"] = replicas
    new["metadata"]["resourceVersion"] = want_rv or cur["metadata"]["resourceVersion"]
    out = h.api.update(rt, ns, name, new, field_manager=h._manager(q), dry_run=h._dry_run(q))
    h._send_json(200, _scale_of(out))


def _scale_of(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    sel = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items()))},
    }


SUBRESOURCES: dict[tuple[str, str], Handler] = {
    ("status", "GET"): status_get,
    ("status", "PUT"): status_put,
    ("status", "PATCH"): status_patch,
    ("finalize", "PUT"): finalize,
    ("binding", "POST"): binding,
    ("eviction", "POST"): eviction,
    ("exec", "GET"): exec_,
    ("exec", "POST"): exec_,
    ("log", "GET"): log,
    ("scale", "GET"): scale_get,
    ("scale", "PUT"): scale_write,
    ("scale", "PATCH"): scale_write,
}
"""(subresource, method) → handler; a registry instead of an if-chain (DEVELOPING.md)."""
