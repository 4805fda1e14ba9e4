"""DRA extended resources: a legacy ``nvidia.com/gpu: 1`` limit served by the DRA driver (upstream X1).

Facts: nvidia-dra-driver.md §13 (chart sets ``extendedResourceName: nvidia.com/gpu`` on the ``gpu.nvidia.com``
class), kubernetes-dra.md §7 (scheduler-created claim ``<pod>-extended-resources-…``, annotation, owner,
``status.extendedResourceClaimStatus``). Stronger than upstream: the claim must be owned by the pod, the pod
status must name it, and the UUID printed must be the allocated device's.

Upstream also skips when the kube-apiserver pod lacks ``DRAExtendedResource=true``; the apiserver's flags are
not readable on every cluster, so we gate on the server version only (the gate is beta, on by default, from
1.36; Lambda CI turns it on for 1.35).
"""

from __future__ import annotations

import time

import pytest

from checks.driver import names
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.extres, pytest.mark.fastfeedback]

ANNOTATION = "resource.kubernetes.io/extended-resource-claim"


def test_extended_resource_gpu(ctx: CheckContext) -> None:
    """X1 ``GPUs: handle legacy 'nvidia.com/gpu: 1' (with DRAExtendedResource)``."""
    version = ctx.cluster.server_version().git_version
    if not R.version_at_least(version, 1, 35):
        pytest.skip(f"DRA extended resources need Kubernetes >= 1.35; the server is {version}")
    cls = ctx.get("deviceclasses", names.CLASS_GPU)
    assert (cls.get("spec") or {}).get("extendedResourceName") == names.GPU_EXTENDED_RESOURCE, cls.get("spec")
    for node in ctx.list_("nodes"):
        cap = ((node.get("status") or {}).get("capacity") or {}).get(names.GPU_EXTENDED_RESOURCE, "0")
        assert str(cap) == "0", (f"node {node['metadata']['name']} advertises {names.GPU_EXTENDED_RESOURCE}={cap}: "
                                 "a device plugin is running next to the DRA driver")
    name = f"test-gpu-extres-{int(time.time())}"
    ctx.apply(M.pod(name, ctx.labels, [M.container(limits={names.GPU_EXTENDED_RESOURCE: "1"})], grace_s=5))
    pod = ctx.pod_ready(name, timeout=60)
    uuids = R.gpu_uuids(ctx.logs(name))
    assert len(uuids) == 1, uuids
    claims = [c for c in ctx.claims() if c["metadata"]["name"].startswith(f"{name}-extended-resources-")]
    assert len(claims) == 1, [c["metadata"]["name"] for c in ctx.claims()]
    claim = claims[0]
    assert (claim["metadata"].get("annotations") or {}).get(ANNOTATION) == "true"
    owners = [(o.get("kind"), o.get("uid"), o.get("controller"))
              for o in claim["metadata"].get("ownerReferences") or []]
    assert ("Pod", pod["metadata"]["uid"], True) in owners, owners
    results = R.allocation_results(claim)
    assert len(results) == 1 and results[0].get("driver") == names.GPU_DRIVER, results
    dev = R.find_device(ctx.gpu_devices(), results[0])
    assert dev is not None and R.attr(dev, "uuid") == uuids[0]
    ext = (pod.get("status") or {}).get("extendedResourceClaimStatus") or {}
    assert ext.get("resourceClaimName") == claim["metadata"]["name"], ext
    ctx.record.update(claim=claim["metadata"]["name"], uuid=uuids[0], server=version)
