"""``Twin``: a kubetwin cluster shaped like one Lambda instance type, with the NVIDIA driver model plugged in.

What is Lambda's or NVIDIA's lives here and in :mod:`checks.twin.nvidia`: the instance type becomes a node with
the labels the driver's chart selects on and the node's virtual GPUs; the driver image's emulated binaries are
registered with the kubelet; admission webhooks reach the emulated webhook server through its Service. The
cluster itself (API, server, controllers, scheduler, kubelet) is :class:`kubetwin.cluster.Cluster`.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

from checks.catalog import Instance, load_instance
from checks.kube.labels import EMULATED_GPUS_LABEL, HEALTH_INJECTION_LABEL
from checks.twin.nvidia import binaries, hostfiles
from checks.twin.nvidia.binaries.webhook import resolve_service
from checks.twin.nvidia.binaries.webhook import serving as webhook_serving
from checks.twin.nvidia.fabric import instance_fabric, set_node_fabric
from checks.twin.nvidia.hardware import virtual_gpus
from checks.twin.options import TwinOptions
from kubetwin.cluster import SYSTEM_NAMESPACES, Cluster, ClusterOptions
from kubetwin.kubelet.kubelet import KubeletConfig
from kubetwin.nodes import NodeSpec


def _webhook_endpoint(namespace: str, pod: str, port: int) -> tuple[str, int] | None:
    """Where the emulated webhook server of ``pod`` serves ``port``, if it does."""
    hostport = webhook_serving(namespace, pod, port)
    if not hostport:
        return None
    host, _, p = hostport.rpartition(":")
    return host, int(p)


def node_name(instance_type: str, index: int = 0) -> str:
    """``gpu_1x_h100_sxm5`` → ``lambda-1x-h100-sxm5-0`` (a valid DNS-1123 node name).

    No ``gpu`` in it: a Lambda host's name does not carry one, and upstream bats pick the GPU plugin's slices
    with ``grep <node> | grep gpu`` — a node name with ``gpu`` made the compute-domain slice match too.
    """
    return f"lambda-{instance_type.removeprefix('gpu_').replace('_', '-')}-{index}"


def node_spec(instance: Instance, index: int = 0) -> NodeSpec:
    """The node a Lambda instance registers: host size plus the labels the upstream chart and CI select on
    (nvidia-dra-driver.md §1.8: the plugin DaemonSet's required affinity includes ``nvidia.com/gpu.present=true``,
    which Lambda CI sets) and ``node.kubernetes.io/instance-type``."""
    name = node_name(instance.instance_type, index)
    labels = {
        "node.kubernetes.io/instance-type": instance.instance_type,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(instance.gpu.count),
        "nvidia.com/gpu.product": instance.gpu.model.replace(" ", "-"),
        EMULATED_GPUS_LABEL: "true",
        # The emulated GPU plugin's health monitor takes NVML events from a node annotation (binaries.health).
        HEALTH_INJECTION_LABEL: "annotation",
    }
    return NodeSpec(name=name, internal_ip=f"10.0.0.{2 + index}", pod_cidr=f"10.244.{index}.0/24",
                    cpu_arch=instance.host.cpu_arch, vcpus=instance.host.vcpus, memory_gib=instance.host.memory_gib,
                    labels=labels)


class Twin(Cluster):
    """An embedded cluster of one Lambda instance type (context manager)."""

    def __init__(self, instance: str = "gpu_1x_a10", *, run_dir: Path | str | None = None,
                 options: TwinOptions | None = None, **overrides: Any) -> None:
        """``overrides`` (``kube_version``, ``port``) replace the same-named :class:`TwinOptions` fields."""
        self.instance = load_instance(instance)
        opts = options or TwinOptions()
        if overrides:
            opts = replace(opts, **overrides)
        self.twin_options = opts
        super().__init__(run_dir=run_dir, options=ClusterOptions(
            kubelet=opts.kubelet or KubeletConfig(), scheduler=opts.scheduler, server=opts.server,
            lease_interval_s=opts.lease_interval_s, kube_version=opts.kube_version, port=opts.port,
            feature_gates=dict(opts.feature_gates)))
        # Webhook Services resolve to the emulated webhook server of a Ready pod of this cluster's API.
        self.options.service_resolver = functools.partial(resolve_service, self.api)
        # The emulated webhook server listens outside serve_address; pods/proxy finds it through its registry.
        self.extra_endpoints = _webhook_endpoint

    def _start(self) -> None:
        super()._start()
        spec = node_spec(self.instance)
        # The driver's binaries must know the node's GPUs before the kubelet can start a plugin container.
        binaries.register()
        hostfiles.register()
        binaries.set_node_gpus(spec.name, virtual_gpus(self.instance, mig_enabled=self.twin_options.mig_enabled))
        set_node_fabric(spec.name, instance_fabric(self.instance, imex=self.twin_options.imex))
        self.add_node(spec)


__all__ = ["SYSTEM_NAMESPACES", "Twin", "TwinOptions", "node_name", "node_spec"]
