"""Full-GPU allocation and the ResourceSlices behind it (upstream test_gpu_basic.bats GB1–GB5, robustness R4, R7).

Stronger than upstream throughout: the upstream tests grep ``UUID: GPU-`` and count lines with
``wc -l | grep 1`` (which also matches 10); here every UUID a workload prints is compared with the ``uuid``
attribute of the device its claim was allocated, and sharing is checked on the claim (``reservedFor``) too.
"""

from __future__ import annotations

from typing import Any

import pytest

from checks.driver import names
from checks.scenarios import manifests as M
from checks.scenarios import readers as R
from checks.suite.context import CheckContext

pytestmark = [pytest.mark.fastfeedback]

Obj = dict[str, Any]


def _template(ctx: CheckContext, name: str = "rct-single-gpu-full") -> Obj:
    return M.claim_template(name, ctx.labels, M.claim_spec([M.request("gpu")]))


def _uuid_of_claim(ctx: CheckContext, claim: Obj) -> list[str]:
    """The ``uuid`` attributes of the devices a claim was allocated, in result order."""
    devices = ctx.gpu_devices()
    out = []
    for res in R.allocation_results(claim):
        dev = R.find_device(devices, res)
        assert dev is not None, f"claim {claim['metadata']['name']}: allocated device {res} is in no slice"
        out.append(str(R.attr(dev, "uuid")))
    return out


def test_one_pod_one_full_gpu(ctx: CheckContext) -> None:
    """GB1 ``GPUs: 1 pod(s), 1 full GPU``: exactly one ``GPU n: … (UUID: GPU-…)`` line, and that UUID is the
    ``uuid`` attribute of the device the claim got (upstream only greps the prefix)."""
    ctx.apply(_template(ctx), M.pod("pod-full-gpu", ctx.labels, [M.container(claims=["gpu"])],
                                    claims={"gpu": ("template", "rct-single-gpu-full")}))
    pod = ctx.pod_ready("pod-full-gpu")
    log = ctx.logs("pod-full-gpu")
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("GPU 0: "), f"expected one 'GPU 0: …' line, got {lines!r}"
    uuids = R.gpu_uuids(log)
    assert len(uuids) == 1, log
    (claim,) = ctx.pod_claims(pod)
    assert _uuid_of_claim(ctx, claim) == uuids
    assert R.reserved_uids(claim) == {pod["metadata"]["uid"]}
    ctx.record["uuid"] = uuids[0]


def test_two_pods_share_one_claim(ctx: CheckContext) -> None:
    """GB3 ``GPUs: 2 pod(s), 1 full GPU (shared, 1 RC)``: both pods print the same UUID — the claim's device —
    and the claim's ``reservedFor`` lists exactly the two pods (upstream compares log text only)."""
    ctx.apply(M.claim("rc-single-gpu-full", ctx.labels, M.claim_spec([M.request("gpu")])))
    for name in ("pod1", "pod2"):
        ctx.apply(M.pod(name, ctx.labels, [M.container(claims=["gpu"])],
                        claims={"gpu": ("claim", "rc-single-gpu-full")}))
    pods = [ctx.pod_ready(n) for n in ("pod1", "pod2")]
    outs = [R.gpu_uuids(ctx.logs(n)) for n in ("pod1", "pod2")]
    assert R.same_uuid(outs), f"pods saw {outs}"
    claim = ctx.get("resourceclaims", "rc-single-gpu-full")
    assert _uuid_of_claim(ctx, claim) == outs[0]
    assert R.reserved_uids(claim) == {p["metadata"]["uid"] for p in pods}


@pytest.mark.multi_gpu
@pytest.mark.needs(gpus=2)
def test_two_pods_two_claims(ctx: CheckContext) -> None:
    """GB2 ``GPUs: 2 pod(s), 1 full GPU each``: different UUIDs, each the device of the pod's own claim."""
    ctx.apply(_template(ctx))
    for name in ("pod1", "pod2"):
        ctx.apply(M.pod(name, ctx.labels, [M.container(claims=["gpu"])],
                        claims={"gpu": ("template", "rct-single-gpu-full")}))
    seen = []
    for name in ("pod1", "pod2"):
        pod = ctx.pod_ready(name)
        uuids = R.gpu_uuids(ctx.logs(name))
        (claim,) = ctx.pod_claims(pod)
        assert len(uuids) == 1 and _uuid_of_claim(ctx, claim) == uuids, f"{name}: {uuids}"
        seen.append(uuids[0])
    assert seen[0] != seen[1], f"both pods got {seen[0]}"


def test_one_pod_two_containers_share(ctx: CheckContext) -> None:
    """GB4 ``GPUs: 1 pod(s), 2 cntrs, 1 full GPU (shared, 1 RCT)``: both containers see the claim's one GPU."""
    ctx.apply(_template(ctx), M.pod("pod1", ctx.labels,
                                    [M.container("ctr0", claims=["shared-gpu"]),
                                     M.container("ctr1", claims=["shared-gpu"])],
                                    claims={"shared-gpu": ("template", "rct-single-gpu-full")}))
    pod = ctx.pod_ready("pod1")
    outs = [R.gpu_uuids(ctx.logs("pod1", c)) for c in ("ctr0", "ctr1")]
    assert R.same_uuid(outs), f"containers saw {outs}"
    (claim,) = ctx.pod_claims(pod)
    assert _uuid_of_claim(ctx, claim) == outs[0]


@pytest.mark.multi_gpu
@pytest.mark.needs(gpus=2)
def test_pod_with_two_claims(ctx: CheckContext) -> None:
    """R4 ``GPUs: pod with two ResourceClaimTemplates gets two distinct GPUs``: exactly two distinct UUIDs,
    equal to the two claims' devices (upstream: "at least 2 lines")."""
    ctx.apply(_template(ctx, "rct-claim-a"), _template(ctx, "rct-claim-b"),
              M.pod("pod-two-claims", ctx.labels, [M.container(claims=["gpu-a", "gpu-b"])],
                    claims={"gpu-a": ("template", "rct-claim-a"), "gpu-b": ("template", "rct-claim-b")}))
    pod = ctx.pod_ready("pod-two-claims")
    uuids = R.gpu_uuids(ctx.logs("pod-two-claims"))
    claims = ctx.pod_claims(pod)
    assert len(claims) == 2
    allocated = [u for c in claims for u in _uuid_of_claim(ctx, c)]
    assert len(uuids) == 2 and len(set(uuids)) == 2, uuids
    assert sorted(allocated) == sorted(uuids)


@pytest.mark.version_specific
def test_resource_slices(ctx: CheckContext, suite: Any) -> None:
    """GB5 + R7 ``inspect device attributes`` / ``device count matches host GPU count``, for every device on
    every node (upstream: the first device; a count from one node's ``/dev`` against the whole cluster):

    - type=gpu devices per node == the instance's GPU count, names ``gpu-<minor>``, unique UUIDs;
    - attribute keys == the upstream set (``numaNode`` allowed), version attributes valid semver;
    - ``productName`` == the instance's GPU model;
    - one pool per node named after it, consistent generation / slice count.

    Real-driver note: on Ampere GPUs with MIG mode on, the full GPU is not published (§4.5); the count then
    differs by design, and this check reports it.
    """
    inst = suite.instance
    slices = ctx.gpu_slices()
    devices = R.slice_devices(slices)
    gpus = [d for d in devices if R.device_type(d) == "gpu"]
    assert gpus, "no type=gpu device published"
    per_node: dict[str, list[Obj]] = {}
    for d in gpus:
        per_node.setdefault(str(d["_node"]), []).append(d)
    for node, devs in per_node.items():
        assert len(devs) == inst.gpu.count, (f"node {node} publishes {len(devs)} GPUs; "
                                             f"{inst.instance_type} has {inst.gpu.count}")
    problems: list[str] = []
    for d in gpus:
        where = f"{d['_node']}/{d['name']}"
        if not R.FULL_GPU_NAME.match(str(d["name"])):
            problems.append(f"{where}: name is not gpu-<minor>")
        problems += [f"{where}: {p}" for p in R.attribute_key_problems(d, names.ATTR_KEYS_GPU)]
        problems += [f"{where}: {p}" for p in R.version_problems(d)]
        if R.attr(d, "productName") != inst.gpu.model:
            problems.append(f"{where}: productName {R.attr(d, 'productName')!r} != {inst.gpu.model!r}")
        if not str(R.attr(d, "uuid") or "").startswith("GPU-"):
            problems.append(f"{where}: uuid {R.attr(d, 'uuid')!r} lacks the GPU- prefix")
    uuids = [R.attr(d, "uuid") for d in gpus]
    if len(set(uuids)) != len(uuids):
        problems.append(f"duplicate GPU UUIDs: {uuids}")
    problems += R.pool_layout_problems(slices)
    assert not problems, "\n".join(problems)
    ctx.record["devices"] = {f"{d['_node']}/{d['name']}": R.attr(d, "uuid") for d in gpus}
