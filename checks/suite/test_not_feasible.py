"""The roadmap's "Not feasible on Lambda" list — exactly that list, no more — as reasoned skips.

roadmap.md ("Not feasible on Lambda (and only these)") names eight scenarios; everything in the 14 prioritized
items IS feasible on some Lambda instance and has a real check instead of an entry here (upgrade/downgrade,
leader election, static MIG, node reboot ... are not in this file on purpose). Each entry names the upstream
tests it stands for (upstream-e2e-tests.md §1) where there are any, so the plan and results.json show what is
not covered instead of leaving it out silently.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.not_feasible]

NOT_FEASIBLE: dict[str, str] = {
    "multi_node_compute_domain_workloads": (
        "MN1–MN2, CF1–CF2: multi-node ComputeDomain workloads (nvbandwidth, failover) need several "
        "NVLink-connected nodes sharing an IMEX domain; a Lambda instance is one node"),
    "compute_domain_force_delete_failover": (
        "CF3–CF4: ComputeDomain failover by force-deleting across nodes needs a multi-node NVLink domain"),
    "compute_domain_updowngrade_multi_node": (
        "CU1–CU2 with running multi-node workloads: ComputeDomain upgrade/downgrade across nodes needs a "
        "multi-node NVLink domain"),
    "nvlink_fabric_error_handling": (
        "CrashOnNVLinkFabricErrors: crash vs fallback needs fabric-attached GPUs that report fabric errors"),
    "vfio_passthrough": (
        "PassthroughSupport/VFIO: binding a GPU to vfio-pci needs an IOMMU the Lambda VM does not expose"),
    "openshift": ("OpenShift-specific RBAC (SCC bindings): Lambda offers no OpenShift clusters"),
    "real_xid_injection": (
        "real XID fault injection: NVML XID events need a debug driver or a faulty GPU (emulated clusters "
        "that can inject XIDs run the XID half of test_health.py instead)"),
    "multi_node_mig_gpu_operator": (
        "multi-node MIG management through the GPU Operator's mig-manager: Lambda runs no GPU Operator and one "
        "instance is one node"),
}
"""Scenario id → why it cannot run on Lambda (roadmap.md "Not feasible", one entry per item)."""


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(name, marks=pytest.mark.needs(not_feasible=reason), id=name) for name, reason in
     NOT_FEASIBLE.items()],
)
def test_not_feasible_on_lambda(scenario: str) -> None:
    """Never runs: the plugin skips it with the scenario's reason before setup."""
    raise AssertionError(f"{scenario} was not skipped although it is not feasible on Lambda")
