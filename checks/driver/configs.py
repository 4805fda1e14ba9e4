"""Opaque device configuration API ``resource.nvidia.com/v1beta1``: decoding, defaults, validation, errors.

Facts from ``nvidia-dra-driver.md`` §5. The same functions back the twin's emulated GPU plugin and webhook
and the suite's expectations, so both see identical error texts:

* :func:`decode` — strict JSON decoding (``strict decoding error: unknown field "x"``, §5.3);
* :meth:`OpaqueConfig.normalize` / :meth:`OpaqueConfig.validate` — §5.1 defaults and §5.2 rules;
* :func:`prepare_checks` — the rules only enforced at Prepare time (§5.2 "prepare time only");
* :func:`resolve` — config precedence per allocation result (§5.1);
* :func:`webhook_denial` / :func:`prepare_error` — the messages a user sees (§5.4).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from checks.driver import names

STRATEGY_TIME_SLICING: Final = "TimeSlicing"
STRATEGY_MPS: Final = "MPS"
INTERVALS: Final = ("Default", "Short", "Medium", "Long")
IOMMU_POLICIES: Final = ("LegacyOnly", "PreferIommuFD")
ALLOCATION_MODES: Final = ("Single", "All")


class OpaqueConfigError(ValueError):
    """A config failed decoding, normalisation or validation; ``str()`` is the driver's text."""


# --------------------------------------------------------------------------------------------------
# Strict decoding: a schema of known fields per kind, walked like Go's json + strict field checks.

_Schema = dict[str, Any]
"""Field name → type tag (``str``/``int``/``bool``/``quantity``/``map:quantity``) or nested schema."""

_MPS: Final[_Schema] = {
    "defaultActiveThreadPercentage": "int",
    "defaultPinnedDeviceMemoryLimit": "quantity",
    "defaultPerDevicePinnedMemoryLimit": "map:quantity",
    "multiUser": "bool",
}
_SCHEMAS: Final[dict[str, _Schema]] = {
    "GpuConfig": {
        "sharing": {"strategy": "str", "timeSlicingConfig": {"interval": "str"}, "mpsConfig": _MPS},
    },
    "MigDeviceConfig": {"sharing": {"strategy": "str", "mpsConfig": _MPS}},
    "VfioDeviceConfig": {"iommu": {"backendPolicy": "str", "enableAPIDevice": "bool"}},
    "ComputeDomainChannelConfig": {"domainID": "str", "allocationMode": "str"},
    "ComputeDomainDaemonConfig": {"domainID": "str"},
}
KINDS: Final = tuple(_SCHEMAS)
GPU_DRIVER_KINDS: Final = ("GpuConfig", "MigDeviceConfig", "VfioDeviceConfig")
CD_DRIVER_KINDS: Final = ("ComputeDomainChannelConfig", "ComputeDomainDaemonConfig")

_GO_TYPE: Final = {"str": "string", "int": "int", "bool": "bool", "quantity": "resource.Quantity"}
_JSON_KIND: Final = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}
_QUANTITY_RE: Final = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")
_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                   "P": 1e15, "E": 1e18}


def quantity_bytes(text: str) -> float:
    """Value of a Kubernetes quantity string (``10Gi``, ``500M``, ``1e3``); OpaqueConfigError if malformed."""
    s = text.strip()
    if not _QUANTITY_RE.match(s):
        raise OpaqueConfigError("quantities must match the regular expression "
                          "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    for suffix, mult in _BINARY.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    if s[-1] in _DECIMAL and not s[-1].isdigit():
        return float(s[:-1]) * _DECIMAL[s[-1]]
    return float(s)


def _check(value: Any, schema: _Schema | str, path: str, kind: str, unknown: list[str]) -> None:
    """Walk ``value`` against ``schema``: record unknown fields, raise on type mismatches (Go json texts)."""
    if isinstance(schema, dict):
        if value is None:
            return
        if not isinstance(value, dict):
            raise OpaqueConfigError(
                f"json: cannot unmarshal {_JSON_KIND.get(type(value), 'value')} into Go struct field "
                f"{kind}.{path} of type struct"
            )
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            if key not in schema:
                unknown.append(child)
                continue
            _check(sub, schema[key], child, kind, unknown)
        return
    if value is None:
        return
    if schema.startswith("map:"):
        if not isinstance(value, dict):
            raise OpaqueConfigError(
                f"json: cannot unmarshal {_JSON_KIND.get(type(value), 'value')} into Go struct field "
                f"{kind}.{path} of type map[string]resource.Quantity"
            )
        for k, v in value.items():
            _check(v, schema[4:], f"{path}.{k}", kind, unknown)
        return
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "quantity": isinstance(value, (str, int)) and not isinstance(value, bool),
    }[schema]
    if not ok:
        raise OpaqueConfigError(
            f"json: cannot unmarshal {_JSON_KIND.get(type(value), 'value')} into Go struct field "
            f"{kind}.{path} of type {_GO_TYPE[schema]}"
        )
    if schema == "quantity":
        quantity_bytes(str(value))


# --------------------------------------------------------------------------------------------------
# Typed configs.


@dataclass
class MpsConfig:
    """``sharing.mpsConfig`` (§5.1)."""

    default_active_thread_percentage: int | None = None
    """``defaultActiveThreadPercentage``: 0..100."""
    default_pinned_device_memory_limit: str | None = None
    """``defaultPinnedDeviceMemoryLimit`` quantity, at least 1 MiB."""
    default_per_device_pinned_memory_limit: dict[str, str] = field(default_factory=dict)
    """``defaultPerDevicePinnedMemoryLimit``: device UUID or index → quantity."""
    multi_user: bool = False
    """``multiUser``: needs CUDA CC >= 7.0 on all GPUs."""


@dataclass
class Sharing:
    """``sharing`` of GpuConfig / MigDeviceConfig."""

    strategy: str = ""
    """``TimeSlicing`` or ``MPS``."""
    interval: str | None = None
    """``timeSlicingConfig.interval``; None when ``timeSlicingConfig`` is absent."""
    has_time_slicing_config: bool = False
    """Whether ``timeSlicingConfig`` was given (even empty)."""
    mps: MpsConfig | None = None
    """``mpsConfig``; None when absent."""


@dataclass
class OpaqueConfig:
    """A decoded ``resource.nvidia.com/v1beta1`` opaque config of any kind."""

    kind: str
    """Kind (one of :data:`KINDS`)."""
    sharing: Sharing | None = None
    """GpuConfig / MigDeviceConfig sharing; None = exclusive."""
    iommu_backend_policy: str | None = None
    """VfioDeviceConfig ``iommu.backendPolicy``."""
    iommu_enable_api_device: bool | None = None
    """VfioDeviceConfig ``iommu.enableAPIDevice``."""
    has_iommu: bool = False
    """Whether VfioDeviceConfig had an ``iommu`` block."""
    domain_id: str = ""
    """ComputeDomain*Config ``domainID``."""
    allocation_mode: str = ""
    """ComputeDomainChannelConfig ``allocationMode``."""

    def normalize(self, gates: Mapping[str, bool]) -> None:
        """Apply the implied defaults (§5.1); gates decide whether sharing defaults are filled in."""
        if self.kind == "VfioDeviceConfig":
            if not self.iommu_backend_policy:
                self.iommu_backend_policy = "LegacyOnly"
            if self.iommu_enable_api_device is None:
                self.iommu_enable_api_device = False
            self.has_iommu = True
        if self.sharing is None:
            return
        if (
            self.sharing.strategy == STRATEGY_TIME_SLICING
            and gates.get("TimeSlicingSettings", False)
            and not self.sharing.has_time_slicing_config
            and self.kind == "GpuConfig"
        ):
            self.sharing.has_time_slicing_config = True
            self.sharing.interval = "Default"
        if self.sharing.strategy == STRATEGY_MPS and gates.get("MPSSupport", False) and self.sharing.mps is None:
            self.sharing.mps = MpsConfig()

    def validate(self, gates: Mapping[str, bool]) -> None:
        """Raise OpaqueConfigError with the exact §5.2 text of the first violated rule."""
        if self.kind in CD_DRIVER_KINDS:
            if not self.domain_id:
                raise OpaqueConfigError("domainID cannot be empty")
            return
        if self.kind == "VfioDeviceConfig":
            policy = self.iommu_backend_policy or "LegacyOnly"
            if policy not in IOMMU_POLICIES:
                raise OpaqueConfigError(
                    f"unknown IOMMU backend policy: {policy}, supported IOMMU backend policies: "
                    + ", ".join(IOMMU_POLICIES)
                )
            return
        s = self.sharing
        if s is None:
            return
        if s.strategy == STRATEGY_TIME_SLICING:
            if not gates.get("TimeSlicingSettings", False):
                raise OpaqueConfigError(
                    '"TimeSlicing" is selected as the GPU sharing strategy, but the "TimeSlicingSettings" '
                    "feature gate is not enabled"
                )
            if s.has_time_slicing_config and s.interval not in INTERVALS:
                raise OpaqueConfigError(
                    f"unknown time-slice interval: {s.interval}, supported time-slice intervals: "
                    + ", ".join(INTERVALS)
                )
        elif s.strategy == STRATEGY_MPS:
            if not gates.get("MPSSupport", False):
                raise OpaqueConfigError(
                    '"MPS" is selected as the GPU sharing strategy, but the "MPSSupport" feature gate is not enabled'
                )
            pct = s.mps.default_active_thread_percentage if s.mps else None
            if pct is not None and pct < 0:
                raise OpaqueConfigError("active thread percentage must not be negative")
            if pct is not None and pct > 100:
                raise OpaqueConfigError("active thread percentage must not be greater than 100")
        else:
            raise OpaqueConfigError(
                f"unknown GPU sharing strategy: {s.strategy}, supported GPU sharing strategies: TimeSlicing, MPS"
            )

    def applies_to(self, device_type: str) -> bool:
        """Whether this kind configures devices of ``device_type`` (``gpu``/``mig``/``vfio``/CD types)."""
        return {
            "GpuConfig": "gpu",
            "MigDeviceConfig": "mig",
            "VfioDeviceConfig": "vfio",
            "ComputeDomainChannelConfig": "channel",
            "ComputeDomainDaemonConfig": "daemon",
        }[self.kind] == device_type

    def canonical(self) -> str:
        """Stable JSON of the normalised config, for 'identical config' comparisons (ConsumableShares)."""
        return json.dumps(_asdict(self), sort_keys=True)


def _asdict(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _asdict(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, dict):
        return {k: _asdict(v) for k, v in obj.items()}
    return obj


def decode(parameters: Mapping[str, Any] | str | bytes, *, strict: bool = True) -> OpaqueConfig:
    """Decode opaque ``parameters`` (dict or raw JSON) into a config, rejecting unknown fields when strict.

    Texts follow the Kubernetes serializer the driver uses: ``strict decoding error: unknown field "x"``
    (several joined with ``", "``), ``Object 'Kind' is missing in '<json>'``, and
    ``no kind "<k>" is registered for version "<v>"`` (the last two are apimachinery wordings; inference).
    """
    if isinstance(parameters, (str, bytes)):
        try:
            raw = json.loads(parameters)
        except json.JSONDecodeError as exc:
            raise OpaqueConfigError(f"invalid character in JSON: {exc.msg}") from exc
    else:
        raw = dict(parameters)
    if not isinstance(raw, dict):
        raise OpaqueConfigError("json: cannot unmarshal array into Go value of type map[string]interface {}")
    kind = raw.get("kind")
    api_version = raw.get("apiVersion")
    if not kind:
        raise OpaqueConfigError(f"Object 'Kind' is missing in '{json.dumps(raw, separators=(',', ':'))}'")
    if api_version != names.CONFIG_API_VERSION or kind not in _SCHEMAS:
        raise OpaqueConfigError(
            f'no kind "{kind}" is registered for version "{api_version}" in scheme "pkg/runtime/scheme.go:110"'
        )
    schema = _SCHEMAS[kind]
    body = {k: v for k, v in raw.items() if k not in ("apiVersion", "kind")}
    unknown: list[str] = []
    _check(body, schema, "", kind, unknown)
    if strict and unknown:
        raise OpaqueConfigError("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
    cfg = OpaqueConfig(kind=kind)
    sharing = body.get("sharing")
    if isinstance(sharing, dict):
        tsc = sharing.get("timeSlicingConfig")
        mps = sharing.get("mpsConfig")
        cfg.sharing = Sharing(
            strategy=str(sharing.get("strategy") or ""),
            interval=(tsc or {}).get("interval") if isinstance(tsc, dict) else None,
            has_time_slicing_config=isinstance(tsc, dict),
            mps=(
                MpsConfig(
                    default_active_thread_percentage=mps.get("defaultActiveThreadPercentage"),
                    default_pinned_device_memory_limit=(
                        None if mps.get("defaultPinnedDeviceMemoryLimit") is None
                        else str(mps["defaultPinnedDeviceMemoryLimit"])
                    ),
                    default_per_device_pinned_memory_limit={
                        str(k): str(v) for k, v in (mps.get("defaultPerDevicePinnedMemoryLimit") or {}).items()
                    },
                    multi_user=bool(mps.get("multiUser", False)),
                )
                if isinstance(mps, dict)
                else None
            ),
        )
    iommu = body.get("iommu")
    if isinstance(iommu, dict):
        cfg.has_iommu = True
        cfg.iommu_backend_policy = iommu.get("backendPolicy")
        cfg.iommu_enable_api_device = iommu.get("enableAPIDevice")
    cfg.domain_id = str(body.get("domainID") or "")
    cfg.allocation_mode = str(body.get("allocationMode") or "")
    return cfg


def default_config(kind: str) -> OpaqueConfig:
    """Built-in default of a kind (lowest precedence, §5.1): exclusive GPU/MIG, LegacyOnly VFIO."""
    cfg = OpaqueConfig(kind=kind)
    if kind == "VfioDeviceConfig":
        cfg.normalize({})
    return cfg


# --------------------------------------------------------------------------------------------------
# Prepare-time-only rules (§5.2 bottom half).

_MIB: Final = 2**20


def prepare_checks(
    cfg: OpaqueConfig,
    *,
    consumable_shares: bool = False,
    device_count: int = 1,
    min_compute_capability: str | None = None,
) -> None:
    """Rules the plugin applies only when it prepares (MPS/TimeSlicing consistency, limits, keys)."""
    s = cfg.sharing
    if s is None:
        return
    if s.strategy == STRATEGY_TIME_SLICING and s.mps is not None:
        raise OpaqueConfigError("cannot use MpsConfig with the 'TimeSlicing' strategy")
    if s.strategy == STRATEGY_MPS:
        if s.has_time_slicing_config:
            raise OpaqueConfigError("cannot use TimeSlicingConfig with the 'MPS' strategy")
        if consumable_shares:
            raise OpaqueConfigError("MPS sharing is not supported when consumable shares is enabled")
        mps = s.mps or MpsConfig()
        limit = mps.default_pinned_device_memory_limit
        if limit is not None and quantity_bytes(limit) < _MIB:
            raise OpaqueConfigError(f"invalid limit: default value set too low: {limit}")
        for key, value in mps.default_per_device_pinned_memory_limit.items():
            if not key.startswith(("GPU-", "MIG-")):
                try:
                    idx = int(key)
                except ValueError:
                    raise OpaqueConfigError(f"invalid device: unable to parse key as an integer: {key}") from None
                if idx < 0 or idx >= device_count:
                    raise OpaqueConfigError(f"invalid device: invalid device index: {idx}")
            if quantity_bytes(value) < _MIB:
                raise OpaqueConfigError(f"invalid limit: value set too low: {key}: {value}")
        if mps.multi_user and min_compute_capability is not None:
            major = int(min_compute_capability.split(".")[0])
            if major < 7:
                raise OpaqueConfigError(
                    "multiuser mode was requested but is not supported: device has insufficient "
                    f'cudaComputeCapability "{min_compute_capability}", wanted >= "7.0"'
                )


# --------------------------------------------------------------------------------------------------
# Precedence (§5.1).


@dataclass(frozen=True)
class ConfigEntry:
    """One entry of a DeviceClass's or claim's ``spec.config``/``spec.devices.config`` list."""

    requests: tuple[str, ...]
    """Requests the entry applies to; empty = all."""
    driver: str | None
    """``opaque.driver``; None for a non-opaque entry."""
    parameters: Mapping[str, Any] | None
    """``opaque.parameters``."""

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> ConfigEntry:
        """From a REST dict ``{requests: [...], opaque: {driver, parameters}}``."""
        opaque = entry.get("opaque")
        return cls(
            requests=tuple(entry.get("requests") or ()),
            driver=None if not opaque else str(opaque.get("driver", "")),
            parameters=None if not opaque else dict(opaque.get("parameters") or {}),
        )


@dataclass(frozen=True)
class AllocatedDevice:
    """One allocation result the plugin prepares: the request it serves and the device's type."""

    request: str
    """Request name (``req`` or ``req/sub`` for firstAvailable)."""
    device: str
    """Device name, e.g. ``gpu-0``."""
    device_type: str
    """``gpu``, ``mig``, ``vfio`` (GPU plugin) or ``channel``/``daemon`` (CD plugin)."""


def opaque_configs(
    class_configs: Sequence[ConfigEntry],
    claim_configs: Sequence[ConfigEntry],
    *,
    driver: str = names.GPU_DRIVER,
    strict: bool = True,
) -> list[tuple[tuple[str, ...], OpaqueConfig]]:
    """Decode this driver's entries, class configs first then claim configs (``GetOpaqueDeviceConfigs``).

    Errors carry the plugin's prefix ``error decoding config parameters: …``; a non-opaque entry fails
    with ``only opaque parameters are supported by this driver``.
    """
    out: list[tuple[tuple[str, ...], OpaqueConfig]] = []
    for entry in [*class_configs, *claim_configs]:
        if entry.driver is None:
            raise OpaqueConfigError("only opaque parameters are supported by this driver")
        if entry.driver != driver:
            continue
        try:
            cfg = decode(entry.parameters or {}, strict=strict)
        except OpaqueConfigError as exc:
            raise OpaqueConfigError(f"error decoding config parameters: {exc}") from exc
        out.append((entry.requests, cfg))
    return out


def _request_matches(wanted: str, request: str) -> bool:
    return wanted == request or request.split("/", 1)[0] == wanted


def resolve(
    configs: Sequence[tuple[tuple[str, ...], OpaqueConfig]],
    results: Sequence[AllocatedDevice],
    *,
    gates: Mapping[str, bool],
) -> dict[str, OpaqueConfig]:
    """The config each result gets (device name → config): later entries win; defaults last (§5.1).

    A request-specific config of the wrong kind for a device raises
    ``cannot apply <Kind> to device "<dev>" of type "<t>" (request: <r>)``.
    """
    defaults: list[tuple[tuple[str, ...], OpaqueConfig]] = [
        ((), default_config("GpuConfig")),
        ((), default_config("MigDeviceConfig")),
    ]
    if gates.get("PassthroughSupport", False):
        defaults.append(((), default_config("VfioDeviceConfig")))
    ordered = [*defaults, *configs]
    chosen: dict[str, OpaqueConfig] = {}
    for result in results:
        for requests, cfg in reversed(ordered):
            if requests:
                if not any(_request_matches(r, result.request) for r in requests):
                    continue
                if not cfg.applies_to(result.device_type):
                    raise OpaqueConfigError(
                        f'cannot apply {cfg.kind} to device "{result.device}" of type "{result.device_type}" '
                        f"(request: {result.request})"
                    )
                chosen[result.device] = cfg
                break
            if cfg.applies_to(result.device_type):
                chosen[result.device] = cfg
                break
    return chosen


def normalize_and_validate(cfg: OpaqueConfig, gates: Mapping[str, bool]) -> None:
    """Prepare-time Normalize + Validate with the plugin's wrapping (§5.4 item 2)."""
    try:
        cfg.normalize(gates)
    except OpaqueConfigError as exc:
        raise OpaqueConfigError(f"error normalizing GPU config: {exc}") from exc
    try:
        cfg.validate(gates)
    except OpaqueConfigError as exc:
        raise OpaqueConfigError(f"error validating GPU config: {exc}") from exc


def prepare_error(namespace: str, name: str, uid: str, inner: str) -> str:
    """The GPU plugin's full Prepare failure text for a claim (§5.4 item 2).

    ``inner`` is what ``prepareDevices`` failed with, e.g. ``error getting opaque device configs:
    error decoding config parameters: strict decoding error: unknown field "x"``.
    """
    return f"error preparing devices for claim {namespace}/{name}:{uid}: prepare devices failed: {inner}"


def opaque_configs_error(exc: OpaqueConfigError) -> str:
    """Wrap a decode failure as ``prepareDevices`` does: ``error getting opaque device configs: …``."""
    return f"error getting opaque device configs: {exc}"


# --------------------------------------------------------------------------------------------------
# Webhook (§5.4 item 1).

WEBHOOK_ACCEPTED_KINDS: Final = ("GpuConfig", "MigDeviceConfig", "ComputeDomainChannelConfig",
                                 "ComputeDomainDaemonConfig")


def webhook_errors(spec: Mapping[str, Any], gates: Mapping[str, bool], *, template: bool = False) -> list[str]:
    """Per-config errors the webhook finds in a claim (``spec``) or claim template (``spec.spec``).

    Pass the object's ``spec`` (for templates the outer ``spec``; ``template`` selects the path prefix).
    Only ``gpu.nvidia.com`` opaque configs are checked.
    """
    devices = ((spec.get("spec") or {}) if template else spec).get("devices") or {}
    prefix = "spec.spec" if template else "spec"
    errors: list[str] = []
    for i, entry in enumerate(devices.get("config") or []):
        opaque = (entry or {}).get("opaque")
        if not opaque or opaque.get("driver") != names.GPU_DRIVER:
            continue
        path = f"{prefix}.devices.config[{i}].opaque.parameters"
        try:
            cfg = decode(opaque.get("parameters") or {})
        except OpaqueConfigError as exc:
            errors.append(f"error decoding object at {path}: {exc}")
            continue
        if cfg.kind not in WEBHOOK_ACCEPTED_KINDS:
            errors.append(f"expected a recognized configuration type at {path} but got: *v1beta1.{cfg.kind}")
            continue
        try:
            cfg.normalize(gates)
        except OpaqueConfigError as exc:
            errors.append(f"error normalizing config at {path}: {exc}")
            continue
        try:
            cfg.validate(gates)
        except OpaqueConfigError as exc:
            errors.append(f"object at {path} is invalid: {exc}")
    return errors


def webhook_denial(errors: Sequence[str]) -> str | None:
    """``Result.Message`` of the webhook's denial, or None when allowed."""
    if not errors:
        return None
    return f"{len(errors)} configs failed to validate: " + "; ".join(errors)


def apiserver_denial(resource: str, name: str, message: str) -> str:
    """What an API client sees (HTTP 403, reason Invalid) when the webhook denies (§5.4)."""
    return (
        f'{resource}.resource.k8s.io "{name}" is forbidden: admission webhook "{names.WEBHOOK_NAME}" '
        f"denied the request: {message}"
    )
