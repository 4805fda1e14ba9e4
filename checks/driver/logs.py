"""klog-formatted log lines of the driver's binaries, with the verbosity level each is logged at.

Texts from ``nvidia-dra-driver.md`` §4.1, §6.1, §8, §9.1, §10, §16.2. A :class:`LogLine` knows its
level; :func:`emit` drops lines above the configured ``-v`` so the twin's logs change with
``logVerbosity`` the way a real pod's do, and the suite can grep for the same strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from checks.driver import gates as gate_table


@dataclass(frozen=True)
class LogLine:
    """One log record before formatting."""

    level: int
    """klog V-level; 0 = always."""
    text: str
    """Message (already with structured ``key="value"`` pairs when the source logs structured)."""
    file: str = "main.go"
    """Source file shown in the header."""
    line: int = 1
    """Source line shown in the header."""
    severity: str = "I"
    """``I``, ``W``, ``E`` or ``F``."""


def klog_header(when: dt.datetime, pid: int, file: str, line: int, severity: str = "I") -> str:
    """``I1126 17:58:00.123456       1 file.go:123] `` — klog's text header."""
    return (
        f"{severity}{when.month:02d}{when.day:02d} {when.hour:02d}:{when.minute:02d}:{when.second:02d}."
        f"{when.microsecond:06d} {pid:>7d} {file}:{line}] "
    )


def format_line(rec: LogLine, when: dt.datetime, pid: int = 1) -> str:
    """Header + text."""
    return klog_header(when, pid, rec.file, rec.line, rec.severity) + rec.text


def structured(msg: str, **kv: object) -> str:
    """klog structured form: ``"msg" k="v" n=1``."""
    parts = [f'"{msg}"']
    for k, v in kv.items():
        parts.append(f"{k}={v}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f'{k}="{v}"')
    return " ".join(parts)


def emit(lines: Iterable[LogLine], verbosity: int, when: dt.datetime, pid: int = 1) -> list[str]:
    """Format the lines whose level is <= ``verbosity``."""
    return [format_line(r, when, pid) for r in lines if r.level <= verbosity]


def startup(component: str, gates: Mapping[str, bool], flags: Mapping[str, object], verbosity: int) -> list[LogLine]:
    """Level-0 startup block of the plugins and controller (§16.2): commit, gates map, flags.

    The upstream ``Flags:`` rendering is a Go struct dump; we print ``name:value`` pairs in the same spirit
    (the bats tests grep ``Verbosity:``, ``nodeName``, ``additionalNamespaces:``). Approximation noted.
    """
    flag_text = " ".join(f"{k}:{v}" for k, v in flags.items())
    return [
        LogLine(0, "Commit: 95932046", "utils.go", 39),
        LogLine(0, f"Verbosity: {verbosity}", "utils.go", 40),
        LogLine(0, "Feature gates: " + gate_table.go_map_literal(gate_table.all_gates(gates)), "utils.go", 41),
        LogLine(0, f"Flags: {{{flag_text}}}", "utils.go", 42),
        LogLine(0, "Started debug signal handler(s)", "util.go", 51),
    ]


def metrics_server(endpoint: str, path: str) -> LogLine:
    """Kubelet plugins' metrics server start line (§9.1)."""
    return LogLine(0, structured("Starting metrics HTTP server", endpoint=endpoint, path=path),
                   "prometheus_httpserver.go", 48)


def announce(device: str) -> LogLine:
    """Per-device V4 line the DynMIG bats test greps (§4.1)."""
    return LogLine(4, f"About to announce device {device}", "driver.go", 301)


def layout(kubernetes_version: str, split: bool) -> list[LogLine]:
    """DynamicMIG slice-layout decision lines (§4.1)."""
    if split:
        msg = f"Detected Kubernetes version {kubernetes_version} (>= 1.35), plan to use separate ResourceSlices"
    else:
        msg = f"Detected Kubernetes version {kubernetes_version} (< 1.35), plan to use combined ResourceSlices"
    return [
        LogLine(1, "featuregates.DynamicMIG enabled: construct ResourceSlice objects according to KEP 4815 "
                "(partitionable devices)", "driver.go", 250),
        LogLine(2, msg, "driver.go", 262),
    ]


def prepared(namespace: str, name: str, uid: str, cdi_ids: Iterable[str]) -> LogLine:
    """Level-0 success line after Prepare (§6.1)."""
    return LogLine(0, f"Returning newly prepared devices for claim '{namespace}/{name}:{uid}': "
                   f"[{' '.join(cdi_ids)}]", "driver.go", 401)


def shutdown() -> LogLine:
    """Exit line of plugins and controller (§16.2)."""
    return LogLine(0, "shutdown", "main.go", 220)


def webhook_start(port: int) -> LogLine:
    """Webhook start line — klog.Info concatenation without a space (§5.4)."""
    return LogLine(0, f"starting webhook server on:{port}", "main.go", 96)


def leader_election(enabled: bool, lock_id: str, namespace: str, name: str) -> list[LogLine]:
    """Controller leader-election lines up to becoming leader (§8)."""
    if not enabled:
        return [LogLine(0, "Leader election disabled, starting controller directly", "main.go", 180)]
    lock = f"{namespace}/{name}"
    return [
        LogLine(0, "Leader election enabled", "main.go", 185),
        LogLine(0, structured("Leader election candidate registered", lockID=lock_id, leaseName=name,
                              leaseNamespace=namespace), "main.go", 190),
        LogLine(0, structured("Starting leader election loop", lockID=lock_id), "main.go", 195),
        LogLine(0, structured("Attempting to acquire leader lease...", lock=lock), "leaderelection.go", 257),
    ]


def became_leader(lock_id: str, namespace: str, name: str) -> list[LogLine]:
    """Lines once the Lease is held (§8)."""
    return [
        LogLine(0, structured("Successfully acquired lease", lock=f"{namespace}/{name}"), "leaderelection.go", 271),
        LogLine(0, structured("Became leader, starting controller", lockID=lock_id), "main.go", 205),
    ]


# §7 — NVMLDeviceHealthCheck. The roadmap's "Starting NVML event monitor" does not exist in the code.
HEALTH_STARTUP: tuple[str, ...] = (
    "creating NVML events for device health monitor",
    "registering NVML events for device health monitor",
    "started device health monitoring",
    "Starting to watch for device health notifications",
)
"""The four V4 lines the GPU plugin logs when the health monitor starts, in order."""


def health_startup() -> list[LogLine]:
    return [LogLine(4, text, "device_health.go", 90 + 10 * i) for i, text in enumerate(HEALTH_STARTUP)]


def health_event(kind: str, uuid: str, xid: int | None, key: str, value: str, effect: str,
                 tainted: int) -> list[LogLine]:
    """Lines of one health event: the warning, the XID processing lines (V4) and the republish line (V4)."""
    out = [LogLine(0, f"Received {kind} health event for device {uuid}", "driver.go", 520, "W")]
    if xid is not None:
        out += [LogLine(4, f"Processing event XID={xid} event", "device_health.go", 240),
                LogLine(4, f"Sending XID={xid} health event for device {uuid}", "device_health.go", 262)]
    else:
        out.append(LogLine(0, f"GPU is lost error: {kind}; Tainting all devices with {key}",
                           "device_health.go", 215, "W"))
    out.append(LogLine(4, f'Republishing ResourceSlice: {tainted} device(s) tainted with {key}="{value}" '
                          f"(effect={effect})", "driver.go", 548))
    return out


# §10 — SIGUSR2.
def dump_written(path: str) -> LogLine:
    return LogLine(0, f"Wrote: {path}", "util.go", 75)


# §6.1, §14.2 — checkpoint.
CHECKSUM_DIFF: str = ("checkpoint failed checksum verification; unified diff (on-disk vs re-marshaled by current "
                      "binary):")
"""Error the GPU plugin logs when the checkpoint's checksum does not verify (UG3 greps its first part)."""


def checkpoint_created() -> LogLine:
    return LogLine(0, "Create empty checkpoint", "device_state.go", 282)


def checkpoint_invalidated(stored: str, current: str) -> LogLine:
    return LogLine(0, f'Invalidating checkpoint: checkpoint nodeBootID "{stored}" != current "{current}"',
                   "device_state.go", 277)


# §9.1 — controller HTTP server.
def controller_http(endpoint: str, path: str) -> list[LogLine]:
    return [LogLine(0, structured("Starting metrics", path=path), "main.go", 160),
            LogLine(0, structured("Starting HTTP server", endpoint=endpoint), "main.go", 170)]
