"""ComputeDomain / IMEX facts of the driver: object names, labels, slice devices, CDI channel nodes, log texts.

Every value is from ``shared/reference/nvidia-dra-driver.md`` §11 (and §6.4 for CDI). The suite uses them to
find and judge the objects the compute-domain controller and plugin make on a real cluster; the twin's emulated
controller, plugin and daemon (:mod:`checks.twin.nvidia.binaries.cd_controller` & co.) build the same objects
from the same constants, so a drifting name breaks both sides instead of agreeing with itself.
"""

from __future__ import annotations

from typing import Final

from checks.driver.logs import LogLine

API_GROUP: Final = "resource.nvidia.com"
API_VERSION: Final = "v1beta1"
CD_PLURAL: Final = "computedomains"
CLIQUE_PLURAL: Final = "computedomaincliques"

FINALIZER: Final = "resource.nvidia.com/computeDomain"
"""Finalizer the controller puts on the CD, its DaemonSet and its RCTs (§11.1)."""
CD_LABEL: Final = "resource.nvidia.com/computeDomain"
"""Label ``=<cdUID>`` on the RCTs, the DaemonSet, its pods, cliques — and on the *node* (set by the CD plugin when
a workload channel is prepared there; the DaemonSet's nodeSelector) (§11.3)."""
TARGET_LABEL: Final = "resource.nvidia.com/computeDomainTarget"
"""``Workload`` or ``Daemon`` on the two RCTs."""
CLIQUE_LABEL: Final = "resource.nvidia.com/computeDomain.cliqueID"
"""Daemon pods patch ``<cliqueID or "">`` onto themselves; also on clique objects."""
GPU_CLIQUE_NODE_LABEL: Final = "nvidia.com/gpu.clique"
"""Node label with the clique ID (only with ``gpuCliqueLabelEnabled``)."""

CHANNEL_CLASS: Final = "compute-domain-default-channel.nvidia.com"
DAEMON_CLASS: Final = "compute-domain-daemon.nvidia.com"
DAEMON_SERVICE_ACCOUNT: Final = "compute-domain-daemon-service-account"
DAEMON_CONTAINER: Final = "compute-domain-daemon"
BIN_DAEMON: Final = "compute-domain-daemon"

MAX_CHANNELS: Final = 2048
"""IMEX channels the plugin knows (hard-coded, §11.4); only ``channel-0`` is published."""
MAX_NODES_PER_IMEX_DOMAIN: Final = 18
"""Controller default of ``MAX_NODES_PER_IMEX_DOMAIN`` (§11.3)."""
CHANNEL_DIR: Final = "/dev/nvidia-caps-imex-channels"
"""Where CDI puts the channel device nodes in a workload container (§11.4)."""
IMEX_PROC_DEVICES_NAME: Final = "nvidia-caps-imex-channels"
"""The ``/proc/devices`` entry whose major the channel nodes get; observed ``242`` on Lambda H100 hosts."""
MIN_DRIVER_FOR_DNS_NAMES: Final = "570.158.01"
"""GPU driver needed by IMEXDaemonsWithDNSNames (§11.5)."""
PREPARE_RETRY_TIMEOUT_S: Final = 45.0
"""``ErrorRetryMaxTimeout``: retryable prepare errors are retried this long per kubelet call (§11.4)."""


def daemon_object_name(cd_uid: str) -> str:
    """DaemonSet and daemon RCT name in the driver namespace: ``computedomain-daemon-<cdUID>`` (§11.3)."""
    return f"computedomain-daemon-{cd_uid}"


def clique_object_name(cd_uid: str, clique_id: str) -> str:
    """ComputeDomainClique name ``<cdUID>.<cliqueID>`` (the clique ID itself is ``<clusterUUID>.<n>``, §11.2)."""
    return f"{cd_uid}.{clique_id}"


def channel_device_name(channel: int = 0) -> str:
    """Slice device name of an IMEX channel (only ``channel-0`` is published)."""
    return f"channel-{channel}"


def cdi_claim_id(claim_uid: str, device: str) -> str:
    """Per-claim CDI id of the CD plugin: ``k8s.compute-domain.nvidia.com/claim=<uid>-<device>`` (§6.4)."""
    return f"k8s.compute-domain.nvidia.com/claim={claim_uid}-{device}"


CDI_BASE_ID: Final = "k8s.compute-domain.nvidia.com/device=all"
"""Base-spec device every daemon claim gets (§6.4)."""


def dns_name(index: int) -> str:
    """IMEX peer name in DNS mode: ``compute-domain-daemon-NNNN`` (§11.6)."""
    return f"compute-domain-daemon-{index:04d}"


# --- log texts the bats suite and our checks grep (§11.4–§11.6, upstream-e2e-tests.md CL1–CL3, CM1–CM3) ----------

def fabric_identified(device: int, uuid: str, cluster_uuid: str, clique: str) -> LogLine:
    return LogLine(0, f"identified fabric clique UUID/ID (device {device}/{uuid}): {cluster_uuid}/{clique}",
                   "nvlib.go", 354)


def no_clique_not_supported(device: int, uuid: str) -> LogLine:
    return LogLine(0, f"no-clique fallback: NVLink fabric not supported by driver (device {device}/{uuid}, error: "
                      "ERROR_NOT_SUPPORTED)", "nvlib.go", 305)


def no_clique_zero_cluster(device: int, uuid: str) -> LogLine:
    return LogLine(0, f"no-clique fallback: cluster UUID is zero, treat as fabric not attached (device "
                      f"{device}/{uuid})", "nvlib.go", 339)


def driver_version_validation(found: str) -> list[LogLine]:
    """Lines of the IMEXDaemonsWithDNSNames driver check (success path)."""
    return [
        LogLine(0, "Starting driver version validation for IMEXDaemonsWithDNSNames feature...", "device_state.go", 300),
        LogLine(0, f"Minimum required version: {MIN_DRIVER_FOR_DNS_NAMES}", "device_state.go", 301),
        LogLine(0, f"Driver version validation passed: {found} >= {MIN_DRIVER_FOR_DNS_NAMES}", "device_state.go", 310),
    ]


def version_key(version: str) -> tuple[int, ...]:
    """``570.158.01`` → ``(570, 158, 1)`` for comparisons."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


NO_CLIQUE_DAEMON: Final = "no cliqueID: skipping controller and IMEX daemon management"
WAIT_DAEMON_INFO: Final = "Wait for updated ComputeDomainDaemonInfo list"
"""V1 line of the daemon's update loop (CL3)."""
NOT_READY_ERROR: Final = "error asserting ComputeDomain Ready: current node not ready in ComputeDomain"
NAMESPACE_ERROR: Final = "the ResourceClaim's namespace is different than the ComputeDomain's namespace"
LABEL_CONFLICT: Final = "label already exists for a different ComputeDomain"
CDI_NOT_APPLIED: Final = "CDI container edits did not apply -- is CDI enabled in your container runtime?"


def removed_from_clique(ip: str, clique: str, cd_namespace: str, cd_name: str) -> str:
    """Daemon shutdown line with ComputeDomainCliques (CM1 greps both halves)."""
    return (f"Successfully removed daemon with IP {ip} from CDClique {clique} "
            f"(from ComputeDomain {cd_namespace}/{cd_name})")


def removed_from_status(ip: str, cd_namespace: str, cd_name: str) -> str:
    """Daemon shutdown line in legacy mode (daemons write ``CD.status.nodes``)."""
    return f"Successfully removed node with IP {ip} from ComputeDomain {cd_namespace}/{cd_name}"


def channel_ls_line(major: int, channel: int, stamp: str) -> str:
    """One ``ls -la`` line of a CDI-injected channel node (char device, mode 0666, root-owned)."""
    return f"crw-rw-rw- 1 root root {major}, {channel} {stamp} channel{channel}"
