"""The control plane as kubeadm shows it: static-pod mirror pods in ``kube-system`` on the first node.

A kubeadm cluster runs kube-apiserver, kube-scheduler, kube-controller-manager and etcd as static pods; their
kubelet publishes a *mirror pod* for each (annotation ``kubernetes.io/config.mirror``, owner: the Node), and
tools read the cluster's settings from them — the upstream driver's extended-resource test greps
``DRAExtendedResource=true`` in ``kubectl get pod -n kube-system -l component=kube-apiserver -o yaml``.

The twin's control plane runs in-process, so these pods only *describe* it, but truthfully: the command lines
carry the feature gates the twin's scheduler actually honours and the API versions it actually serves
(``--runtime-config``), the apiserver's ``--secure-port`` is the real port, and the pods are Running and Ready
for as long as the cluster serves. A kubelet never runs a mirror pod from the API (it runs the static pod it
mirrors), so the twin's kubelet skips pods with the mirror annotation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubetwin.api.core import Api, rfc3339
from kubetwin.api.errors import ApiError
from kubetwin.api.resources import core

PODS = core("pods")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
"""Set on every mirror pod; its value is the static pod's config hash."""
NAMESPACE = "kube-system"
ETCD_VERSION = {"34": "3.6.4-0", "35": "3.6.5-0", "36": "3.6.6-0", "37": "3.6.6-0"}
"""etcd image tag kubeadm pins per Kubernetes minor."""
SERVICE_CIDR = "10.96.0.0/12"
"""kubeadm's default Service CIDR (the twin allocates ClusterIPs from it)."""
POD_CIDR = "10.244.0.0/16"
"""The cluster CIDR the nodes' pod CIDRs are cut from."""


def _flags(name: str, flags: Mapping[str, str]) -> list[str]:
    return [name, *(f"--{k}={v}" for k, v in flags.items())]


def _commands(*, git_version: str, node_ip: str, api_port: int, gates: str,
              runtime_config: str) -> dict[str, list[str]]:
    """Each component's command line, kubeadm's flags with the twin's real settings."""
    pki = "/etc/kubernetes/pki"
    apiserver = {
        "advertise-address": node_ip, "allow-privileged": "true", "authorization-mode": "Node,RBAC",
        "client-ca-file": f"{pki}/ca.crt", "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true", "etcd-servers": "https://127.0.0.1:2379",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname", "secure-port": str(api_port),
        "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
        "service-account-key-file": f"{pki}/sa.pub", "service-account-signing-key-file": f"{pki}/sa.key",
        "service-cluster-ip-range": SERVICE_CIDR, "tls-cert-file": f"{pki}/apiserver.crt",
        "tls-private-key-file": f"{pki}/apiserver.key",
    }
    if gates:
        apiserver["feature-gates"] = gates
    if runtime_config:
        apiserver["runtime-config"] = runtime_config
    scheduler = {"authentication-kubeconfig": "/etc/kubernetes/scheduler.conf",
                 "authorization-kubeconfig": "/etc/kubernetes/scheduler.conf", "bind-address": "127.0.0.1",
                 "kubeconfig": "/etc/kubernetes/scheduler.conf", "leader-elect": "true"}
    controller_manager = {
        "allocate-node-cidrs": "true", "authentication-kubeconfig": "/etc/kubernetes/controller-manager.conf",
        "authorization-kubeconfig": "/etc/kubernetes/controller-manager.conf", "bind-address": "127.0.0.1",
        "client-ca-file": f"{pki}/ca.crt", "cluster-cidr": POD_CIDR, "cluster-name": "kubernetes",
        "controllers": "*,bootstrapsigner,tokencleaner", "kubeconfig": "/etc/kubernetes/controller-manager.conf",
        "leader-elect": "true", "service-cluster-ip-range": SERVICE_CIDR, "use-service-account-credentials": "true",
    }
    for comp in (scheduler, controller_manager):
        if gates:
            comp["feature-gates"] = gates
    etcd = {"advertise-client-urls": f"https://{node_ip}:2379", "data-dir": "/var/lib/etcd",
            "listen-client-urls": f"https://127.0.0.1:2379,https://{node_ip}:2379", "name": "control-plane"}
    return {
        "kube-apiserver": _flags("kube-apiserver", apiserver),
        "kube-scheduler": _flags("kube-scheduler", scheduler),
        "kube-controller-manager": _flags("kube-controller-manager", controller_manager),
        "etcd": _flags("etcd", etcd),
    }


def control_plane_pods(node: Mapping[str, Any], *, git_version: str, api_port: int,
                       feature_gates: Mapping[str, bool], runtime_config: Sequence[str],
                       now: str) -> list[dict[str, Any]]:
    """The four mirror pods (spec and Running/Ready status) for ``node``.

    ``feature_gates``: every gate and whether the twin honours it (rendered ``A=true,B=false``, sorted);
    ``runtime_config``: API group versions the twin serves beyond the defaults (``resource.k8s.io/v1``).
    """
    meta = node.get("metadata") or {}
    node_name = str(meta["name"])
    node_ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"), "127.0.0.1")
    gates = ",".join(f"{k}={'true' if v else 'false'}" for k, v in sorted(feature_gates.items()))
    rc = ",".join(f"{gv}=true" for gv in runtime_config)
    minor = git_version.removeprefix("v").split(".")[1]
    images = {"etcd": f"registry.k8s.io/etcd:{ETCD_VERSION.get(minor, '3.6.6-0')}"}
    out: list[dict[str, Any]] = []
    for comp, cmd in _commands(git_version=git_version, node_ip=node_ip, api_port=api_port, gates=gates,
                               runtime_config=rc).items():
        image = images.get(comp, f"registry.k8s.io/{comp}:{git_version}")
        config_hash = hashlib.md5(json.dumps([image, cmd]).encode(), usedforsecurity=False).hexdigest()
        container = {"name": comp, "image": image, "imagePullPolicy": "IfNotPresent", "command": cmd,
                     "resources": {"requests": {"cpu": "250m" if comp == "kube-apiserver" else "100m"}},
                     "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
        conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                      for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                "PodScheduled")]
        out.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{comp}-{node_name}", "namespace": NAMESPACE,
                "labels": {"component": comp, "tier": "control-plane"},
                "annotations": {"kubernetes.io/config.hash": config_hash, MIRROR_ANNOTATION: config_hash,
                                "kubernetes.io/config.seen": now, "kubernetes.io/config.source": "file"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                     "uid": meta.get("uid", ""), "controller": True}],
            },
            "spec": {"containers": [container], "nodeName": node_name, "hostNetwork": True,
                     "priorityClassName": "system-node-critical", "priority": 2000001000,
                     "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                     "tolerations": [{"effect": "NoExecute", "operator": "Exists"}]},
            "status": {
                "phase": "Running", "conditions": conditions, "hostIP": node_ip,
                "hostIPs": [{"ip": node_ip}], "podIP": node_ip, "podIPs": [{"ip": node_ip}], "qosClass": "Burstable",
                "startTime": now,
                "containerStatuses": [{
                    "name": comp, "image": image, "imageID": image, "ready": True, "started": True,
                    "restartCount": 0, "containerID": f"containerd://{config_hash}{config_hash}"[:77],
                    "state": {"running": {"startedAt": now}}}],
            },
        })
    return out


def publish(api: Api, node: Mapping[str, Any], *, git_version: str, api_port: int,
            feature_gates: Mapping[str, bool], runtime_config: Sequence[str]) -> list[str]:
    """Create (or refresh) the mirror pods on ``node`` and set their status; returns their names."""
    now = rfc3339(api.clock.now())
    names: list[str] = []
    for pod in control_plane_pods(node, git_version=git_version, api_port=api_port, feature_gates=feature_gates,
                                  runtime_config=runtime_config, now=now):
        name = pod["metadata"]["name"]
        status = pod.pop("status")
        with contextlib.suppress(ApiError):
            api.delete(PODS, NAMESPACE, name, grace_period_seconds=0)
        created = api.create(PODS, NAMESPACE, pod)
        created["status"] = status
        api.update(PODS, NAMESPACE, name, created, subresource="status")
        names.append(name)
    return names


__all__ = ["MIRROR_ANNOTATION", "control_plane_pods", "publish"]
