"""Node disruptions for recovery checks (roadmap item 14, driver issue #951): reboot a node, know when it came back.

:class:`NodeDisruptor` is what a check needs; two real implementations:

* :class:`TwinReboot` — a twin node (it carries the emulated-GPUs label): the check asks through the API, by
  setting the node annotation ``kubetwin.dev/reboot-request`` to a new value; the twin then kills the node's
  containers, gives it a new boot id and restarts its kubelet on the same node disk.
* :class:`LambdaCloudReboot` — a Lambda Cloud instance: the public API's instance restart
  (``POST /api/v1/instance-operations/restart``), the instance found from the node's addresses in
  ``GET /api/v1/instances``. The API key comes only from the environment (``LAMBDA_API_KEY``) and is never printed,
  logged or written anywhere.

Either way the reboot is observed the same way: the node's ``status.nodeInfo.bootID`` changes.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from checks.errors import UsageError
from checks.kube import objects as K
from checks.kube import wait as W
from checks.kube.client import ClusterClient
from checks.kube.labels import EMULATED_GPUS_LABEL

REBOOT_ANNOTATION = "kubetwin.dev/reboot-request"
"""What the twin watches (kubetwin.cluster.REBOOT_ANNOTATION; the kube layer never imports the twin)."""
LAMBDA_API = "https://cloud.lambda.ai/api/v1"
LAMBDA_KEY_ENV = "LAMBDA_API_KEY"


@dataclass(frozen=True)
class RebootRecord:
    """What a reboot looked like from the API."""

    node: str
    old_boot_id: str
    new_boot_id: str
    requested_at: float
    """``time.monotonic()`` when the reboot was requested."""
    back_after_s: float
    """Seconds until the node reported the new boot id."""
    how: str
    """``twin`` or ``lambda-cloud``."""


class NodeDisruptor(Protocol):
    """Reboots one node and returns once it reports a new boot id."""

    def reboot(self, node: str, *, timeout: float) -> RebootRecord: ...


def boot_id(cluster: ClusterClient, node: str) -> str:
    return str(((K.get(cluster, "nodes", node).get("status") or {}).get("nodeInfo") or {}).get("bootID") or "")


def _wait_new_boot(cluster: ClusterClient, node: str, old: str, timeout: float) -> str:
    source = W.source_for(cluster, "nodes", field_selector=f"metadata.name={node}")
    obj = W.wait_for(source, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("bootID") not in (None, "",
                                                                                                          old),
                     timeout=timeout, what=f"node {node} back with a new boot id")
    return str(obj["status"]["nodeInfo"]["bootID"])


@dataclass
class TwinReboot:
    """Reboot a twin node through its reboot-request annotation."""

    cluster: ClusterClient

    def reboot(self, node: str, *, timeout: float) -> RebootRecord:
        old = boot_id(self.cluster, node)
        t0 = time.monotonic()
        K.patch(self.cluster, "nodes", node, {"metadata": {"annotations": {REBOOT_ANNOTATION: str(uuid.uuid4())}}})
        new = _wait_new_boot(self.cluster, node, old, timeout)
        return RebootRecord(node, old, new, t0, time.monotonic() - t0, "twin")


@dataclass
class LambdaCloudReboot:
    """Reboot a Lambda Cloud instance through the public API (key from ``LAMBDA_API_KEY`` only)."""

    cluster: ClusterClient
    api: str = LAMBDA_API

    def _key(self) -> str:
        key = os.environ.get(LAMBDA_KEY_ENV, "")
        if not key:
            raise UsageError(f"a Lambda Cloud node reboot needs the API key in ${LAMBDA_KEY_ENV}", where="--disruptive")
        return key

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(self.api + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self._key()}", "Accept": "application/json",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:  # the message never contains the key
            raise RuntimeError(f"Lambda Cloud API {method} {path}: HTTP {exc.code} {exc.reason}") from None

    def instance_for(self, node: str) -> str:
        """The id of the instance whose public/private IP or hostname is one of the node's addresses."""
        addrs = {str(a.get("address")) for a in (K.get(self.cluster, "nodes", node).get("status") or {})
                 .get("addresses") or []} | {node}
        for inst in (self._call("GET", "/instances") or {}).get("data") or []:
            if addrs & {str(inst.get(k)) for k in ("ip", "private_ip", "hostname", "name")}:
                return str(inst["id"])
        raise RuntimeError(f"no Lambda Cloud instance has one of node {node}'s addresses {sorted(addrs)}")

    def reboot(self, node: str, *, timeout: float) -> RebootRecord:
        instance = self.instance_for(node)
        old = boot_id(self.cluster, node)
        t0 = time.monotonic()
        self._call("POST", "/instance-operations/restart", {"instance_ids": [instance]})
        new = _wait_new_boot(self.cluster, node, old, timeout)
        return RebootRecord(node, old, new, t0, time.monotonic() - t0, "lambda-cloud")


def disruptor_for(cluster: ClusterClient, node: str) -> NodeDisruptor:
    """Twin nodes reboot through the twin; everything else through Lambda Cloud's API."""
    labels = K.get(cluster, "nodes", node)["metadata"].get("labels") or {}
    if labels.get(EMULATED_GPUS_LABEL) == "true":
        return TwinReboot(cluster)
    return LambdaCloudReboot(cluster)


__all__ = ["LAMBDA_KEY_ENV", "LambdaCloudReboot", "NodeDisruptor", "RebootRecord", "TwinReboot", "boot_id",
           "disruptor_for"]
