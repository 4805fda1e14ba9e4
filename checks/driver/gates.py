"""Feature gates of the NVIDIA DRA driver: the table, ``FEATURE_GATES`` parsing, and the start-time rules.

Facts from ``nvidia-dra-driver.md`` §3. The rules live here, not in the twin, because the suite needs the
same texts to assert what a crash-looping container printed on a real cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from checks.driver import names


@dataclass(frozen=True)
class Gate:
    """One driver feature gate (reference §3.1)."""

    name: str
    """Gate name as written in ``FEATURE_GATES`` and ``featureGates.<name>``."""
    default: bool
    """Value when not set."""
    stage: str
    """``Alpha`` or ``Beta``."""
    since: str
    """Driver minor version that introduced it (the gate's "Version" field)."""


GATES: Final[tuple[Gate, ...]] = (
    Gate("TimeSlicingSettings", False, "Alpha", "0.2"),
    Gate("MPSSupport", False, "Alpha", "0.2"),
    Gate("IMEXDaemonsWithDNSNames", True, "Beta", "0.2"),
    Gate("PassthroughSupport", False, "Alpha", "0.3"),
    Gate("DynamicMIG", False, "Alpha", "0.3"),
    Gate("NVMLDeviceHealthCheck", False, "Alpha", "0.3"),
    Gate("ComputeDomainCliques", True, "Beta", "0.3"),
    Gate("CrashOnNVLinkFabricErrors", True, "Beta", "0.3"),
    Gate("DeviceMetadata", False, "Alpha", "0.4"),
    Gate("DRAListTypeAttributes", False, "Alpha", "0.4"),
    Gate("FabricManagerPartitioning", False, "Alpha", "0.5"),
    Gate("HostManagedIMEXDaemon", False, "Alpha", "0.5"),
    Gate("ConsumableShares", False, "Alpha", "0.5"),
)
"""Driver gates in reference order."""

LOGGING_GATES: Final[dict[str, bool]] = {
    "ContextualLogging": True,
    "LoggingAlphaOptions": False,
    "LoggingBetaOptions": True,
}
"""Kubernetes logging gates that share the registry (§3.1); ``ContextualLogging`` is forced on."""

DEFAULTS: Final[dict[str, bool]] = {g.name: g.default for g in GATES}
KNOWN: Final = frozenset(DEFAULTS) | frozenset(LOGGING_GATES)

COMPONENTS_THAT_VALIDATE: Final = frozenset(
    {names.BIN_GPU_PLUGIN, names.BIN_CD_PLUGIN, names.BIN_CONTROLLER, names.BIN_CD_DAEMON}
)
"""Binaries that run ``ValidateFeatureGates()`` at start; the webhook and Helm do not (§3.3)."""


class GateParseError(ValueError):
    """``FEATURE_GATES`` could not be parsed; the message is component-base's text."""


def gates_of_release(version: str) -> frozenset[str]:
    """Gate names a driver release knows: those whose ``since`` minor is not newer than the release's (§3.1).

    ``version`` is a chart/app version like ``0.4.0`` or ``v0.5.0-dev``; a 0.4 binary does not know
    ``ConsumableShares`` (since 0.5) and fails flag parsing on it, as any unknown gate.
    """
    m = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if m is None:
        return KNOWN
    have = (int(m.group(1)), int(m.group(2)))
    driver = {g.name for g in GATES if tuple(int(x) for x in g.since.split(".")) <= have}
    return frozenset(driver) | frozenset(LOGGING_GATES)


def parse_feature_gates(text: str, known: frozenset[str] | None = None) -> dict[str, bool]:
    """Parse ``"A=true,B=false,"`` (Helm renders a trailing comma) into the explicitly set gates.

    Unknown names and non-boolean values raise :class:`GateParseError` with the wording of
    component-base's ``featuregate.Set`` (reference §2 notes unknown names fail flag parsing; the exact
    wording is component-base's, an inference).
    """
    result: dict[str, bool] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise GateParseError(f"missing bool value for {key}")
        if key not in (KNOWN if known is None else known):
            raise GateParseError(f"unrecognized feature gate: {key}")
        parsed = _parse_bool(value.strip())
        if parsed is None:
            raise GateParseError(
                f'invalid value of {key}={value.strip()}, err: strconv.ParseBool: parsing "{value.strip()}": '
                "invalid syntax"
            )
        result[key] = parsed
    return result


def _parse_bool(value: str) -> bool | None:
    """Go's ``strconv.ParseBool`` accepted spellings."""
    if value in {"1", "t", "T", "true", "TRUE", "True"}:
        return True
    if value in {"0", "f", "F", "false", "FALSE", "False"}:
        return False
    return None


def effective(gates: Mapping[str, bool]) -> dict[str, bool]:
    """Defaults overlaid with ``gates``: the complete map the binaries act on (driver gates only)."""
    out = dict(DEFAULTS)
    out.update({k: v for k, v in gates.items() if k in DEFAULTS})
    return out


def all_gates(gates: Mapping[str, bool]) -> dict[str, bool]:
    """Every registered gate incl. the logging ones, as the startup log prints them."""
    out = dict(LOGGING_GATES)
    out.update(effective(gates))
    out["ContextualLogging"] = True
    for k in LOGGING_GATES:
        if k in gates and k != "ContextualLogging":
            out[k] = gates[k]
    return out


def go_map_literal(gates: Mapping[str, bool]) -> str:
    """Go ``%#v`` of a ``map[string]bool``: keys sorted, ``"K":v`` joined by ``", "``."""
    body = ", ".join(f'"{k}":{"true" if v else "false"}' for k, v in sorted(gates.items()))
    return "map[string]bool{" + body + "}"


_RULES: Final[tuple[tuple[str, str, bool, str], ...]] = (
    # (gate a, gate b, b must be on (True) / must be off (False), error text) — checked in this order (§3.3).
    ("ComputeDomainCliques", "IMEXDaemonsWithDNSNames", True,
     "feature gate ComputeDomainCliques requires IMEXDaemonsWithDNSNames to also be enabled"),
    ("DynamicMIG", "PassthroughSupport", False,
     "feature gate DynamicMIG is currently mutually exclusive with PassthroughSupport"),
    ("DynamicMIG", "NVMLDeviceHealthCheck", False,
     "feature gate DynamicMIG is currently mutually exclusive with NVMLDeviceHealthCheck"),
    ("DynamicMIG", "MPSSupport", False,
     "feature gate DynamicMIG is currently mutually exclusive with MPSSupport"),
    ("PassthroughSupport", "NVMLDeviceHealthCheck", False,
     "feature gate PassthroughSupport is currently mutually exclusive with NVMLDeviceHealthCheck"),
    ("DeviceMetadata", "PassthroughSupport", True,
     "feature gate DeviceMetadata requires PassthroughSupport to also be enabled"),
)


def rule_error(gates: Mapping[str, bool]) -> str | None:
    """The first violated ``ValidateFeatureGates()`` rule's text, or None (§3.3). Defaults apply."""
    eff = effective(gates)
    for a, b, b_required, text in _RULES:
        if eff[a] and eff[b] != b_required:
            return text
    return None


def validate_gates(component: str, gates: Mapping[str, bool]) -> str | None:
    """What ``component`` reports for ``gates`` at start: ``feature gate validation failed: <rule>`` or None.

    The process prints ``Error: `` + this to stderr and exits 1 (§3.3). The webhook never validates.
    """
    if component not in COMPONENTS_THAT_VALIDATE:
        return None
    err = rule_error(gates)
    return None if err is None else f"feature gate validation failed: {err}"


def render_env(gates: Mapping[str, bool]) -> str:
    """``FEATURE_GATES`` as the chart renders it: ``Key=value,`` for every key, trailing comma (§1.8).

    Helm iterates maps in sorted key order, so the output is sorted.
    """
    return "".join(f"{k}={'true' if v else 'false'}," for k, v in sorted(gates.items()))
