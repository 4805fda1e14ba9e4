"""Identifiers of the NVIDIA DRA driver for GPUs: what its objects, labels, containers and devices are called.

Every value is a fact from ``shared/reference/nvidia-dra-driver.md`` (section cited per block). The suite
uses these to find things on a real cluster; the twin uses the same constants to build them, so a name
that drifts breaks both sides at once instead of silently agreeing with itself.
"""

from __future__ import annotations

from typing import Final

# §1.1, §16.1 — DRA driver names.
GPU_DRIVER: Final = "gpu.nvidia.com"
"""DRA driver name of ``gpu-kubelet-plugin``."""
CD_DRIVER: Final = "compute-domain.nvidia.com"
"""DRA driver name of ``compute-domain-kubelet-plugin`` (also used by the controller)."""

# §1.2 — chart identity.
CHART_NAME: Final = "dra-driver-nvidia-gpu"
CHART_VERSION: Final = "0.5.0-dev"
APP_VERSION: Final = "0.5.0-dev"
LEGACY_CHART_NAME: Final = "nvidia-dra-driver-gpu"
"""Chart name of releases <= v25.12.0; upgrades pass ``nameOverride`` with it (§1.2)."""
IMAGE_REPOSITORY: Final = "registry.k8s.io/dra-driver-nvidia/dra-driver-nvidia-gpu"
DEFAULT_IMAGE_TAG: Final = "v" + APP_VERSION
"""``image.tag`` empty → ``v`` + appVersion (§1.2)."""

# §1.5 — namespace the docs and tests install into; the release name the bats suite uses.
NAMESPACE: Final = "dra-driver-nvidia-gpu"
BATS_RELEASE: Final = "dra-driver-nvidia-gpu-batssuite"

# §1.4 — component selector label.
COMPONENT_LABEL: Final = f"{CHART_NAME}-component"
"""Selector label key ``<name>-component`` for the default chart name."""
COMPONENT_KUBELET_PLUGIN: Final = "kubelet-plugin"
COMPONENT_CONTROLLER: Final = "controller"
COMPONENT_WEBHOOK: Final = "webhook"


def component_label(name: str = CHART_NAME) -> str:
    """Selector label key for chart name ``name`` (follows ``nameOverride``, §1.4)."""
    return f"{name}-component"


# §1.3 — object names (``<name>`` = chart name unless nameOverride).
def kubelet_plugin_daemonset(name: str = CHART_NAME) -> str:
    """DaemonSet running the two kubelet plugins."""
    return f"{name}-kubelet-plugin"


def controller_deployment(name: str = CHART_NAME) -> str:
    """Deployment of ``compute-domain-controller``; also the leader-election Lease name (§1.3, §8)."""
    return f"{name}-controller"


def webhook_deployment(name: str = CHART_NAME) -> str:
    """Webhook Deployment and Service name."""
    return f"{name}-webhook"


def webhook_configuration(name: str = CHART_NAME) -> str:
    """ValidatingWebhookConfiguration name."""
    return f"{name}-webhook-config"


LEASE_NAME: Final = controller_deployment()
"""Leader-election Lease with chart defaults: ``dra-driver-nvidia-gpu-controller`` in :data:`NAMESPACE` (§8)."""
LEASE_NAME_BINARY_DEFAULT: Final = "nvidia-compute-domain-controller"
"""``--leader-election-lease-lock-name`` default when the binary runs without the chart (§8)."""

# §1.8-1.10, §16.1 — container names.
CONTAINER_INIT: Final = "init-container"
CONTAINER_COMPUTE_DOMAINS: Final = "compute-domains"
CONTAINER_GPUS: Final = "gpus"
CONTAINER_CONTROLLER: Final = "compute-domain"
CONTAINER_WEBHOOK: Final = "webhook"
WEBHOOK_NAME: Final = "gpu.nvidia.com"
"""Name of the single webhook inside the ValidatingWebhookConfiguration (§1.10)."""
WEBHOOK_PATH: Final = "/validate-resource-claim-parameters"

# §1.1 — binaries in the image's /usr/bin.
BIN_GPU_PLUGIN: Final = "gpu-kubelet-plugin"
BIN_CD_PLUGIN: Final = "compute-domain-kubelet-plugin"
BIN_CONTROLLER: Final = "compute-domain-controller"
BIN_CD_DAEMON: Final = "compute-domain-daemon"
BIN_WEBHOOK: Final = "webhook"

# §1.11 — DeviceClasses.
CLASS_GPU: Final = "gpu.nvidia.com"
CLASS_MIG: Final = "mig.nvidia.com"
CLASS_VFIO: Final = "vfio.gpu.nvidia.com"
CLASS_CD_DAEMON: Final = "compute-domain-daemon.nvidia.com"
CLASS_CD_CHANNEL: Final = "compute-domain-default-channel.nvidia.com"
GPU_EXTENDED_RESOURCE: Final = "nvidia.com/gpu"

DEVICE_CLASS_CEL: Final[dict[str, str]] = {
    CLASS_GPU: "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'",
    CLASS_MIG: "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'",
    CLASS_VFIO: "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'vfio'",
    CLASS_CD_DAEMON: (
        "device.driver == 'compute-domain.nvidia.com' && "
        "device.attributes['compute-domain.nvidia.com'].type == 'daemon'"
    ),
    CLASS_CD_CHANNEL: (
        "device.driver == 'compute-domain.nvidia.com' && "
        "device.attributes['compute-domain.nvidia.com'].type == 'channel' && "
        "device.attributes['compute-domain.nvidia.com'].id == 0"
    ),
}
"""Verbatim CEL of each DeviceClass (§1.11)."""

# §5.1 — opaque config API group.
CONFIG_API_VERSION: Final = "resource.nvidia.com/v1beta1"
CRD_GROUP: Final = "resource.nvidia.com"
CRD_COMPUTE_DOMAINS: Final = "computedomains.resource.nvidia.com"
CRD_COMPUTE_DOMAIN_CLIQUES: Final = "computedomaincliques.resource.nvidia.com"
CD_FINALIZER: Final = "resource.nvidia.com/computeDomain"
CD_NODE_LABEL: Final = "resource.nvidia.com/computeDomain"

# §7 — health taints.
TAINT_XID: Final = "gpu.nvidia.com/xid"
TAINT_GPU_LOST: Final = "gpu.nvidia.com/gpu-lost"
TAINT_UNMONITORED: Final = "gpu.nvidia.com/unmonitored"
IGNORED_XIDS: Final = (13, 31, 43, 45, 68, 109)

# §4.5 — DynamicMIG counters; capacity name → counter name (camelCase → kebab-case).
CAPACITY_TO_COUNTER: Final[dict[str, str]] = {
    "multiprocessors": "multiprocessors",
    "copyEngines": "copy-engines",
    "decoders": "decoders",
    "encoders": "encoders",
    "jpegEngines": "jpeg-engines",
    "ofaEngines": "ofa-engines",
    "memory": "memory",
}


def counter_set_name(minor: int) -> str:
    """Shared counter set of one physical GPU: ``gpu-<minor>-counter-set``."""
    return f"gpu-{minor}-counter-set"


def memory_slice_counter(index: int) -> str:
    """DynamicMIG per-memory-slice counter ``memory-slice-<i>``."""
    return f"memory-slice-{index}"


def memory_slice_capacity(index: int) -> str:
    """Static MIG per-memory-slice capacity ``memorySlice<i>`` (§4.4)."""
    return f"memorySlice{index}"


def gpu_device_name(minor: int) -> str:
    """Full-GPU device name ``gpu-<minor>`` (NVML minor, not index; §4.2)."""
    return f"gpu-{minor}"


def vfio_device_name(index: int) -> str:
    """VFIO device name ``gpu-vfio-<idx>`` (§4.2)."""
    return f"gpu-vfio-{index}"


def slice_generate_name(index: int, node: str, driver: str = GPU_DRIVER) -> str:
    """``generateName`` of the index-th slice of a node's pool: ``<%05x>-<driver>-<node>-`` (§4.1)."""
    return f"{index:05x}-{driver}-{node}-"


# §6.2 — CDI.
CDI_VENDOR_GPU: Final = "k8s.gpu.nvidia.com"
CDI_CLASS_CLAIM: Final = "claim"


def cdi_device_id(claim_uid: str, device: str) -> str:
    """Fully qualified CDI device the GPU plugin returns to the kubelet for one prepared device."""
    return f"{CDI_VENDOR_GPU}/{CDI_CLASS_CLAIM}={claim_uid}-{device}"


def cdi_spec_file(claim_uid: str) -> str:
    """Transient per-claim CDI spec file name under CDI_ROOT."""
    return f"{CDI_VENDOR_GPU}-claim_{claim_uid}.yaml"


# §4.3 / upstream-e2e-tests §1.3, §1.10, §1.11 — attribute key sets the bats tests assert.
ATTR_KEYS_GPU: Final = frozenset(
    {
        "architecture",
        "brand",
        "cudaComputeCapability",
        "cudaDriverVersion",
        "driverVersion",
        "productName",
        "resource.kubernetes.io/pciBusID",
        "resource.kubernetes.io/pcieRoot",
        "type",
        "uuid",
        "addressingMode",
    }
)
"""GB5/DM1: exactly these 11 keys on a ``type=gpu`` device (plus ``numaNode`` on a NUMA host)."""
ATTR_KEYS_DYNAMIC_MIG: Final = (ATTR_KEYS_GPU - {"uuid"}) | {"parentUUID", "profile"}
"""DM2: 12 keys — no ``uuid`` because the MIG device does not exist yet."""
ATTR_KEYS_STATIC_MIG: Final = ATTR_KEYS_DYNAMIC_MIG | {"uuid"}
"""SM2: 13 keys."""
NUMA_NODE_ATTR: Final = "resource.kubernetes.io/numaNode"
PCI_BUS_ID_ATTR: Final = "resource.kubernetes.io/pciBusID"
PCIE_ROOT_ATTR: Final = "resource.kubernetes.io/pcieRoot"

# §1.8 — node affinity terms of the kubelet-plugin DaemonSet (any one suffices).
PLUGIN_NODE_AFFINITY_TERMS: Final = (
    ("feature.node.kubernetes.io/pci-10de.present", "true"),
    ("feature.node.kubernetes.io/pci-0302_10de.present", "true"),
    ("feature.node.kubernetes.io/pci-0300_10de.present", "true"),
    ("feature.node.kubernetes.io/cpu-model.vendor_id", "NVIDIA"),
    ("nvidia.com/gpu.present", "true"),
)
GPU_PRESENT_LABEL: Final = "nvidia.com/gpu.present"

# §9 — metrics.
METRIC_REQUESTS_TOTAL: Final = "nvidia_dra_requests_total"
METRIC_REQUEST_DURATION: Final = "nvidia_dra_request_duration_seconds"
METRIC_REQUESTS_INFLIGHT: Final = "nvidia_dra_requests_inflight"
METRIC_PREPARED_DEVICES: Final = "nvidia_dra_prepared_devices"
METRIC_PREPARE_ERRORS: Final = "nvidia_dra_node_prepare_errors_total"
METRIC_UNPREPARE_ERRORS: Final = "nvidia_dra_node_unprepare_errors_total"
METRIC_CD_INFO: Final = "nvidia_dra_compute_domain_info"

# §10 — SIGUSR2 goroutine dump.
GOROUTINE_DUMP: Final = "/tmp/goroutine-stacks.dump"
"""Where every Go binary of the driver writes all goroutine stacks on SIGUSR2 (inside its container)."""
GOROUTINE_DUMP_MARKER: Final = "main.RunPlugin"
"""Frame the bats test B9 expects in the dump of both kubelet plugins."""

# §6.1, §16.1 — plugin state on the host.
PLUGINS_DIR: Final = "/var/lib/kubelet/plugins"
"""Default ``kubeletPlugin.kubeletPluginsDirectoryPath`` (mounted at the same path in the plugin containers)."""
GPU_CHECKPOINT: Final = f"{PLUGINS_DIR}/{GPU_DRIVER}/checkpoint.json"
"""The GPU plugin's checkpoint (``PrepareStarted``/``PrepareCompleted`` claims + node boot id)."""
CD_CHECKPOINT: Final = f"{PLUGINS_DIR}/{CD_DRIVER}/checkpoint.json"

# §9.1, §2 — HTTP endpoints (container ports inside the pods; the chart declares no containerPort for them).
GPU_PLUGIN_METRICS_PORT: Final = 8080
CD_PLUGIN_METRICS_PORT: Final = 8081
CONTROLLER_METRICS_PORT: Final = 8080
METRICS_PATH: Final = "/metrics"

# §7 — health events: env of the extra ignored XIDs.
ADDITIONAL_XIDS_ENV: Final = "ADDITIONAL_XIDS_TO_IGNORE"

# §1.13 — opt-in NetworkPolicies (Egress only, TCP 443 and 6443).
NETWORK_POLICY_PORTS: Final = (443, 6443)


def network_policy(component: str, name: str = CHART_NAME) -> str:
    """NetworkPolicy name of ``controller`` / ``kubelet-plugin``: ``<name>-<component>``."""
    return f"{name}-{component}"
