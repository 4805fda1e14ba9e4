"""What a check needs from the hardware, and whether this cluster has it.

Every check declares its needs with ``@pytest.mark.needs(...)``; the plugin decides run-or-skip from the
instance's params plus facts read live from the cluster (ResourceSlices), and a skip always says why in
words a person understands ("needs 2 GPUs; gpu_1x_a10 has 1"). This replaces the upstream Lambda CI's
per-GPU-type case statement (upstream-e2e-tests.md §4.2) with declared capabilities.

It lives in the catalog (not in the suite) because the planner (``checks.plan``: coverage matrix, cost,
Prow jobs) decides with the very same rule for every instance type without importing the pytest suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from checks.catalog.schema import Instance


@dataclass(frozen=True)
class Needs:
    """Requirements of one check. Unset fields mean "no requirement"."""

    gpus: int = 0
    """Minimum number of allocatable full GPUs."""
    mig: bool = False
    """Needs a MIG-capable GPU model."""
    dynmig: bool = False
    """Needs DynamicMIG partitions to be published (counters in the slices once DynamicMIG is on)."""
    static_mig: bool = False
    """Needs pre-created (static) MIG devices published by the driver."""
    architecture: tuple[str, ...] = ()
    """Allowed GPU architectures (go-nvlib names), empty = any."""
    compute_domains: bool = False
    """Needs the ComputeDomain side of the driver (upstream enables it only on *b200/*gb200/*gb300)."""
    imex: bool = False
    """Needs IMEX channels on the host (a NVLink fabric with an IMEX daemon)."""
    real_cuda: bool = False
    """Runs real CUDA code: only meaningful on a real cluster with real GPUs."""
    busgrind: bool = False
    """Runs busGrind from the CUDA demo suite (hangs on V100/A10, absent on arm64)."""
    multi_node: bool = False
    """Needs more than one GPU node."""
    disruptive: bool = False
    """Disturbs the driver or node for other workloads (restarts, reinstalls); opt-in with --disruptive."""
    internet: bool = False
    """The workload downloads packages at run time."""
    not_feasible: str = ""
    """Non-empty: the scenario cannot run on Lambda single-node instances at all, with this reason."""

    @classmethod
    def from_marker_kwargs(cls, kwargs: dict[str, Any]) -> Needs:
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"unknown needs: {sorted(unknown)}")
        clean = dict(kwargs)
        if "architecture" in clean and isinstance(clean["architecture"], str):
            clean["architecture"] = (clean["architecture"],)
        return cls(**clean)


@dataclass(frozen=True)
class SliceFacts:
    """What the cluster itself reports (read from ResourceSlices and nodes); None = not read yet."""

    gpu_nodes: int | None = None
    """Nodes publishing gpu.nvidia.com devices."""
    full_gpus: int | None = None
    """Allocatable full GPUs (type=gpu devices) across the cluster."""
    product_names: tuple[str, ...] = ()
    """Distinct productName attributes."""
    architectures: tuple[str, ...] = ()
    """Distinct architecture attributes."""
    dynmig_devices: int | None = None
    """MIG devices that consume counters (DynamicMIG partitions)."""
    static_mig_devices: int | None = None
    """MIG devices without counters (pre-created, static MIG)."""
    compute_domain_driver: bool | None = None
    """Whether compute-domain.nvidia.com publishes anything."""


@dataclass(frozen=True)
class Capabilities:
    """The facts a decision is made from: the instance params, refined by live facts when known."""

    instance: Instance
    """The Lambda instance type the cluster runs on."""
    live: SliceFacts = field(default_factory=SliceFacts)
    """Facts read from the cluster (after the driver is installed)."""
    real_gpus: bool = True
    """False when the cluster's GPUs cannot run CUDA code (an emulated cluster says so in its node labels)."""
    allow_disruptive: bool = False
    """Whether the user opted in to disruptive checks."""
    allow_internet: bool = True
    """Whether workloads may download from the internet."""

    @property
    def gpu_count(self) -> int:
        if self.live.full_gpus is not None:
            return self.live.full_gpus
        return self.instance.gpu.count


def why_not(needs: Needs, caps: Capabilities) -> str | None:
    """None if the check can run here, else the reason it is skipped."""
    inst = caps.instance
    name = inst.instance_type
    model = inst.gpu.model
    if needs.not_feasible:
        return f"not feasible on Lambda: {needs.not_feasible}"
    if needs.multi_node:
        nodes = caps.live.gpu_nodes if caps.live.gpu_nodes is not None else 1
        if nodes < 2:
            return f"needs 2 GPU nodes; this cluster has {nodes} (one Lambda instance is one node)"
    if needs.gpus and caps.gpu_count < needs.gpus:
        have = caps.gpu_count
        src = "publishes" if caps.live.full_gpus is not None else "has"
        return f"needs {needs.gpus} GPUs; {name} {src} {have}"
    if needs.architecture and inst.gpu.architecture not in needs.architecture:
        return f"needs a {'/'.join(needs.architecture)} GPU; {name} has {model} ({inst.gpu.architecture})"
    if (needs.mig or needs.dynmig or needs.static_mig) and not inst.gpu.mig_capable:
        return f"needs a MIG-capable GPU; {model} ({name}) has no MIG"
    if needs.dynmig:
        if not inst.ci.dynmig:
            why = ("DynamicMIG on a single A100 fails with 'In use by another client' (the plugin's NVML "
                   "session blocks the MIG toggle)" if inst.gpu.architecture == "Ampere" else
                   "upstream Lambda CI does not run DynamicMIG here")
            return f"DynamicMIG not supported on {name}: {why}"
        if caps.live.dynmig_devices == 0:
            extra = (" — Ampere GPUs publish DynamicMIG partitions only when MIG mode was enabled before the "
                     "plugin started (nvidia-dra-driver.md §4.5)" if inst.gpu.architecture == "Ampere" else "")
            return f"the driver published no DynamicMIG partitions on {name}{extra}"
    if needs.static_mig and not caps.live.static_mig_devices:
        return f"needs pre-created (static) MIG devices; {name} publishes none"
    if needs.compute_domains and not inst.compute_domains:
        return (f"compute domains are disabled on {name} (upstream enables them only on *b200/*gb200/*gb300 "
                f"types)")
    if needs.imex and not inst.compute_domains:
        return f"needs IMEX channels (NVLink fabric + IMEX daemon); not available on {name}"
    if needs.busgrind and not inst.ci.busgrind:
        return f"busGrind is not run on {model}: it hangs on V100/A10 and has no arm64 package"
    if needs.real_cuda and not caps.real_gpus:
        return "runs real CUDA code; this cluster's GPUs are emulated (run it on a real Lambda cluster)"
    if needs.internet and not caps.allow_internet:
        return "downloads packages at run time; --no-internet was given"
    if needs.disruptive and not caps.allow_disruptive:
        return "disruptive (restarts or reinstalls the driver); pass --disruptive to run it"
    return None
