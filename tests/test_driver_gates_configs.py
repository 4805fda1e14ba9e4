"""Feature-gate rules (§3.3) and opaque config decoding/validation texts (§5) of checks.driver."""
# ruff: noqa: E501  (tables of exact upstream error texts read better unwrapped)

from __future__ import annotations

from typing import Any

import pytest

from checks.driver import configs, gates
from checks.driver.configs import AllocatedDevice, ConfigEntry, OpaqueConfigError, decode

API = "resource.nvidia.com/v1beta1"


def test_parse_feature_gates_helm_form() -> None:
    assert gates.parse_feature_gates("DynamicMIG=true,TimeSlicingSettings=false,") == {
        "DynamicMIG": True,
        "TimeSlicingSettings": False,
    }
    assert gates.parse_feature_gates("") == {}
    with pytest.raises(gates.GateParseError, match="unrecognized feature gate: Bogus"):
        gates.parse_feature_gates("Bogus=true")
    with pytest.raises(gates.GateParseError, match="invalid value of DynamicMIG=maybe"):
        gates.parse_feature_gates("DynamicMIG=maybe")


def test_render_env_round_trips() -> None:
    env = gates.render_env({"TimeSlicingSettings": True, "DynamicMIG": True})
    assert env == "DynamicMIG=true,TimeSlicingSettings=true,"
    assert gates.parse_feature_gates(env) == {"DynamicMIG": True, "TimeSlicingSettings": True}


@pytest.mark.parametrize(
    ("set_gates", "text"),
    [
        ({"IMEXDaemonsWithDNSNames": False}, "feature gate ComputeDomainCliques requires IMEXDaemonsWithDNSNames to also be enabled"),
        ({"DynamicMIG": True, "PassthroughSupport": True}, "feature gate DynamicMIG is currently mutually exclusive with PassthroughSupport"),
        ({"DynamicMIG": True, "NVMLDeviceHealthCheck": True}, "feature gate DynamicMIG is currently mutually exclusive with NVMLDeviceHealthCheck"),
        ({"DynamicMIG": True, "MPSSupport": True}, "feature gate DynamicMIG is currently mutually exclusive with MPSSupport"),
        ({"PassthroughSupport": True, "NVMLDeviceHealthCheck": True}, "feature gate PassthroughSupport is currently mutually exclusive with NVMLDeviceHealthCheck"),
        ({"DeviceMetadata": True}, "feature gate DeviceMetadata requires PassthroughSupport to also be enabled"),
    ],
)
def test_forbidden_combinations(set_gates: dict[str, bool], text: str) -> None:
    assert gates.validate_gates("gpu-kubelet-plugin", set_gates) == f"feature gate validation failed: {text}"
    assert gates.validate_gates("compute-domain-controller", set_gates) == f"feature gate validation failed: {text}"
    assert gates.validate_gates("webhook", set_gates) is None


def test_allowed_combinations_and_rule_order() -> None:
    assert gates.validate_gates("gpu-kubelet-plugin", {}) is None
    assert gates.validate_gates("gpu-kubelet-plugin", {"DynamicMIG": True, "TimeSlicingSettings": True}) is None
    # Docs claim MPSSupport+NVMLDeviceHealthCheck is exclusive; code does not enforce it (§15.1).
    assert gates.validate_gates("gpu-kubelet-plugin", {"MPSSupport": True, "NVMLDeviceHealthCheck": True}) is None
    both = {"DynamicMIG": True, "PassthroughSupport": True, "DeviceMetadata": True, "MPSSupport": True}
    assert gates.rule_error(both) == "feature gate DynamicMIG is currently mutually exclusive with PassthroughSupport"


def test_go_map_literal_prints_all_gates_sorted() -> None:
    text = gates.go_map_literal(gates.all_gates({}))
    assert text.startswith('map[string]bool{"ComputeDomainCliques":true, "ConsumableShares":false')
    assert '"MPSSupport":false' in text


def gpu_cfg(**body: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "GpuConfig", **body}


def test_strict_decoding_unknown_fields() -> None:
    with pytest.raises(OpaqueConfigError) as e:
        decode({"apiVersion": API, "kind": "ComputeDomainChannelConfig", "domainID": "x", "unexpectedField": "foo"})
    assert str(e.value) == 'strict decoding error: unknown field "unexpectedField"'
    with pytest.raises(OpaqueConfigError) as e:
        decode({"apiVersion": API, "kind": "MigDeviceConfig", "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {}}})
    assert str(e.value) == 'strict decoding error: unknown field "sharing.timeSlicingConfig"'
    # Non-strict (checkpoint) decoding keeps going.
    assert decode(gpu_cfg(x=1), strict=False).kind == "GpuConfig"
    with pytest.raises(OpaqueConfigError, match="cannot unmarshal string into Go struct field"):
        decode(gpu_cfg(sharing={"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": "x"}}))


def _validate(params: dict[str, Any], g: dict[str, bool]) -> str | None:
    cfg = decode(params)
    try:
        cfg.normalize(g)
        cfg.validate(g)
    except OpaqueConfigError as exc:
        return str(exc)
    return None


TS = {"TimeSlicingSettings": True}
MPS = {"MPSSupport": True}


@pytest.mark.parametrize(
    ("params", "g", "text"),
    [
        (gpu_cfg(sharing={"strategy": "TimeSlicing"}), {},
         '"TimeSlicing" is selected as the GPU sharing strategy, but the "TimeSlicingSettings" feature gate is not enabled'),
        (gpu_cfg(sharing={"strategy": "MPS"}), {},
         '"MPS" is selected as the GPU sharing strategy, but the "MPSSupport" feature gate is not enabled'),
        (gpu_cfg(sharing={"strategy": "Magic"}), TS,
         "unknown GPU sharing strategy: Magic, supported GPU sharing strategies: TimeSlicing, MPS"),
        (gpu_cfg(sharing={"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Invalid Interval"}}), TS,
         "unknown time-slice interval: Invalid Interval, supported time-slice intervals: Default, Short, Medium, Long"),
        (gpu_cfg(sharing={"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": -1}}), MPS,
         "active thread percentage must not be negative"),
        (gpu_cfg(sharing={"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 101}}), MPS,
         "active thread percentage must not be greater than 100"),
        ({"apiVersion": API, "kind": "VfioDeviceConfig", "iommu": {"backendPolicy": "Fast"}}, {},
         "unknown IOMMU backend policy: Fast, supported IOMMU backend policies: LegacyOnly, PreferIommuFD"),
        ({"apiVersion": API, "kind": "ComputeDomainDaemonConfig"}, {}, "domainID cannot be empty"),
        (gpu_cfg(sharing={"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Short"}}), TS, None),
        (gpu_cfg(), {}, None),
    ],
)
def test_validation_texts(params: dict[str, Any], g: dict[str, bool], text: str | None) -> None:
    assert _validate(params, g) == text


def test_normalisation_defaults() -> None:
    cfg = decode(gpu_cfg(sharing={"strategy": "TimeSlicing"}))
    cfg.normalize(TS)
    assert cfg.sharing is not None and cfg.sharing.interval == "Default"
    vfio = decode({"apiVersion": API, "kind": "VfioDeviceConfig"})
    vfio.normalize({})
    assert (vfio.iommu_backend_policy, vfio.iommu_enable_api_device) == ("LegacyOnly", False)


@pytest.mark.parametrize(
    ("sharing", "text"),
    [
        ({"strategy": "TimeSlicing", "mpsConfig": {}}, "cannot use MpsConfig with the 'TimeSlicing' strategy"),
        ({"strategy": "MPS", "timeSlicingConfig": {"interval": "Short"}}, "cannot use TimeSlicingConfig with the 'MPS' strategy"),
        ({"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "1Ki"}}, "invalid limit: default value set too low: 1Ki"),
        ({"strategy": "MPS", "mpsConfig": {"defaultPerDevicePinnedMemoryLimit": {"abc": "1Gi"}}},
         "invalid device: unable to parse key as an integer: abc"),
        ({"strategy": "MPS", "mpsConfig": {"defaultPerDevicePinnedMemoryLimit": {"3": "1Gi"}}}, "invalid device: invalid device index: 3"),
    ],
)
def test_prepare_time_rules(sharing: dict[str, Any], text: str) -> None:
    cfg = decode(gpu_cfg(sharing=sharing))
    with pytest.raises(OpaqueConfigError) as e:
        configs.prepare_checks(cfg, device_count=1)
    assert str(e.value) == text


def test_precedence_later_wins_and_defaults_last() -> None:
    ts_short = {"requests": ["gpu"], "opaque": {"driver": "gpu.nvidia.com", "parameters": gpu_cfg(
        sharing={"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Short"}})}}
    ts_long = {"opaque": {"driver": "gpu.nvidia.com", "parameters": gpu_cfg(
        sharing={"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}})}}
    other = {"opaque": {"driver": "other.example.com", "parameters": {"whatever": 1}}}
    decoded = configs.opaque_configs(
        [ConfigEntry.from_api(ts_long)], [ConfigEntry.from_api(ts_short), ConfigEntry.from_api(other)]
    )
    results = [AllocatedDevice("gpu", "gpu-0", "gpu"), AllocatedDevice("mig", "gpu-1-mig-1g10gb-19-0", "mig")]
    chosen = configs.resolve(decoded, results, gates=TS)
    assert chosen["gpu-0"].sharing is not None and chosen["gpu-0"].sharing.interval == "Short"
    assert chosen["gpu-1-mig-1g10gb-19-0"].kind == "MigDeviceConfig"
    assert chosen["gpu-1-mig-1g10gb-19-0"].sharing is None

    wrong = configs.opaque_configs([], [ConfigEntry.from_api({"requests": ["mig"], "opaque": ts_short["opaque"]})])
    with pytest.raises(OpaqueConfigError) as e:
        configs.resolve(wrong, results, gates=TS)
    assert str(e.value) == 'cannot apply GpuConfig to device "gpu-1-mig-1g10gb-19-0" of type "mig" (request: mig)'

    with pytest.raises(OpaqueConfigError, match="only opaque parameters are supported by this driver"):
        configs.opaque_configs([], [ConfigEntry.from_api({"requests": []})])


def test_prepare_error_chain_for_unknown_field() -> None:
    entry = ConfigEntry.from_api({"opaque": {"driver": "gpu.nvidia.com", "parameters": gpu_cfg(x="1")}})
    with pytest.raises(OpaqueConfigError) as e:
        configs.opaque_configs([], [entry])
    text = configs.prepare_error("default", "rc", "uid-1", configs.opaque_configs_error(e.value))
    assert text == (
        "error preparing devices for claim default/rc:uid-1: prepare devices failed: error getting opaque device "
        'configs: error decoding config parameters: strict decoding error: unknown field "x"'
    )


def test_webhook_denial_message() -> None:
    spec = {"devices": {"config": [
        {"opaque": {"driver": "gpu.nvidia.com", "parameters": gpu_cfg(
            sharing={"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Invalid Interval"}})}},
        {"opaque": {"driver": "compute-domain.nvidia.com", "parameters": {"bad": True}}},
        {"opaque": {"driver": "gpu.nvidia.com", "parameters": {"apiVersion": API, "kind": "VfioDeviceConfig"}}},
    ]}}
    errs = configs.webhook_errors(spec, TS)
    assert configs.webhook_denial(errs[:1]) == (
        "1 configs failed to validate: object at spec.devices.config[0].opaque.parameters is invalid: "
        "unknown time-slice interval: Invalid Interval, supported time-slice intervals: Default, Short, Medium, Long"
    )
    assert errs[1] == (
        "expected a recognized configuration type at spec.devices.config[2].opaque.parameters but got: "
        "*v1beta1.VfioDeviceConfig"
    )
    tmpl = configs.webhook_errors({"spec": spec}, {}, template=True)
    assert tmpl[0].startswith("object at spec.spec.devices.config[0].opaque.parameters is invalid: \"TimeSlicing\"")
    assert configs.webhook_denial([]) is None
