"""Typed schema of ``params/<instance type>.yaml`` and the GPU-model table it is checked against.

Every field is strict (no silent ``"8"`` → ``8``) and unknown keys are errors: a params file is the
single description of an instance type that checks, the twin and notebooks act on, so a typo must fail
loudly instead of falling back to a default. Validation errors are condensed to ONE line naming file,
field and reason (:func:`condense`), never a pydantic dump.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Architecture = Literal["Volta", "Ampere", "Hopper", "Blackwell"]
CpuArch = Literal["amd64", "arm64"]


@dataclass(frozen=True)
class GpuModel:
    """Facts about one GPU product that a params file must agree with."""

    name: str
    """Exact nvidia-smi/NVML product name."""
    architecture: str
    """go-nvlib architecture string."""
    compute_capability: str
    """CUDA compute capability ``major.minor``."""
    pci_device_id: str
    """NVML PCI device id, e.g. ``0x233010DE``."""
    mig_geometry: str | None
    """Key into checks/mig data; None for GPUs without MIG."""


@functools.cache
def gpu_models() -> dict[str, GpuModel]:
    """The known GPU models, by product name (``data/gpu_models.yaml``)."""
    text = resources.files("checks.catalog").joinpath("data/gpu_models.yaml").read_text(encoding="utf-8")
    raw: dict[str, dict[str, Any]] = yaml.safe_load(text)["models"]
    return {name: GpuModel(name=name, **facts) for name, facts in raw.items()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True)


class Gpu(_Strict):
    """The GPUs of an instance type (all GPUs of a Lambda type are the same model)."""

    model: str
    """Exact product name nvidia-smi prints, e.g. ``NVIDIA H100 80GB HBM3``; must be a known model."""
    count: int = Field(ge=1, le=16)
    """Number of GPUs."""
    memory_mib: int = Field(gt=0)
    """NVML total memory per GPU, MiB (e.g. 81559 on H100 80GB HBM3)."""
    architecture: Architecture
    """go-nvlib architecture string, as the driver publishes it in the ``architecture`` attribute."""
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    """CUDA compute capability ``major.minor``."""
    pci_device_id: str = Field(pattern=r"^0x[0-9A-F]{8}$")
    """PCI device id as NVML prints it (device + vendor), e.g. ``0x20B010DE``."""
    mig_capable: bool
    """Whether the GPU supports MIG at all."""
    mig_geometry: str | None
    """Key into the MIG oracle's data; null for non-MIG GPUs."""

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in gpu_models():
            raise ValueError(f"unknown GPU model {value!r} (known: {', '.join(sorted(gpu_models()))})")
        return value

    @model_validator(mode="after")
    def _agrees_with_model(self) -> Gpu:
        facts = gpu_models()[self.model]
        expected = {
            "architecture": facts.architecture,
            "compute_capability": facts.compute_capability,
            "pci_device_id": facts.pci_device_id,
            "mig_geometry": facts.mig_geometry,
            "mig_capable": facts.mig_geometry is not None,
        }
        for name, want in expected.items():
            got = getattr(self, name)
            if got != want:
                raise ValueError(f"{name} is {got!r} but {self.model} has {want!r}")
        return self


class Interconnect(_Strict):
    """How the GPUs of the instance talk to each other."""

    nvlink: bool
    """NVLink between GPUs (false for single-GPU types and PCIe parts)."""
    nvswitch: bool
    """NVSwitch fabric (HGX boards)."""
    nvlink_generation: int | None = Field(ge=1, le=6)
    """NVLink generation, null without NVLink."""
    confirmed: bool
    """False when inferred from the platform rather than seen on a Lambda instance (reference md §6 ‡)."""


class Host(_Strict):
    """The VM around the GPUs."""

    cpu_arch: CpuArch
    """Kubernetes/Go architecture name: ``amd64`` or ``arm64`` (GH200 is the only Arm type)."""
    vcpus: int = Field(gt=0)
    """vCPUs."""
    memory_gib: int = Field(gt=0)
    """RAM, GiB."""
    storage: str
    """Local SSD as Lambda lists it, e.g. ``5.8 TiB``."""
    gpu_numa_node: int = Field(default=-1, ge=-1)
    """NUMA node the VM's sysfs reports for every GPU's PCI function (``/sys/bus/pci/devices/<bdf>/numa_node``);
    -1 = none. The driver publishes ``resource.kubernetes.io/numaNode`` only for a node >= 0 (reference §4.3,
    ``discoverNumaNode``). Default -1: a cloud H200 VM reads -1 there (notes/device-h200.md; ``nvidia-smi topo``'s
    "NUMA Affinity 0" is derived from CPU affinity, not sysfs), and Lambda's types are such VMs."""


class Ci(_Strict):
    """Facts the upstream Lambda CI filters on (reference ``nvidia-dra-driver.md`` §14.4)."""

    busgrind: bool
    """Whether the busGrind CUDA test can run (false on V100/A10/GH200: hangs or no arm64 package)."""
    dynmig: bool
    """Whether upstream runs DynamicMIG tests (false on single-GPU A100 and non-MIG GPUs)."""
    never_disable_mig: bool
    """Never disable MIG mode (every A100: it can wedge cloud A100s, upstream issue #883)."""


class Instance(_Strict):
    """One Lambda Cloud instance type: what ``params/<type>.yaml`` holds."""

    instance_type: str = Field(pattern=r"^gpu_\d+x_[a-z0-9_]+$")
    """Lambda API instance-type name, e.g. ``gpu_8x_a100``."""
    aliases: list[str] = Field(default_factory=list)
    """Other names accepted everywhere (e.g. ``gpu_8x_a100_80gb`` for ``gpu_8x_a100_80gb_sxm4``)."""
    description: str
    """Lambda API description, e.g. ``8x A100 (40 GB SXM4)``."""
    gpu: Gpu
    """GPU facts."""
    interconnect: Interconnect
    """GPU interconnect."""
    host: Host
    """Host facts."""
    price_usd_per_hour: float = Field(ge=0)
    """On-demand list price for the whole instance, USD per hour."""
    price_source: str
    """Where the price comes from and as of when (prices drift)."""
    compute_domains: bool
    """Whether the lab enables ComputeDomains on this type (upstream CI: only *b200*/*gb200*/*gb300*)."""
    ci: Ci
    """Upstream Lambda CI filter facts."""
    notes: list[str] = Field(default_factory=list)
    """Free-form caveats (unconfirmed facts, quirks)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The type name and its aliases."""
        return (self.instance_type, *self.aliases)

    @property
    def price_usd_per_gpu_hour(self) -> float:
        """List price per GPU-hour."""
        return round(self.price_usd_per_hour / self.gpu.count, 4)


_TYPE_WORDS = {
    "int": "integer",
    "float": "number",
    "string": "string",
    "bool": "boolean",
    "list": "list",
    "tuple": "list",
    "dict": "mapping",
    "model": "mapping",
    "none": "null",
}


def _reason(err: dict[str, Any]) -> str:
    kind: str = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing field"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_attributes_type":
        word = _TYPE_WORDS.get(kind.split("_")[0], kind.split("_")[0])
        return f"wrong type: expected {word}, got {type(given).__name__} {given!r}"
    if kind == "literal_error":
        return f"invalid value {given!r} (expected {err.get('ctx', {}).get('expected', '?')})"
    msg: str = err["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg.lower()} (got {given!r})" if given is not None and not isinstance(given, dict) else msg.lower()


def condense(exc: ValidationError) -> str:
    """``<field>: <reason>`` for the first error, plus how many more there are — one line, always."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    text = f"{field}: {_reason(dict(first))}"
    if len(errors) > 1:
        text += f" (+{len(errors) - 1} more)"
    return " ".join(text.split())
