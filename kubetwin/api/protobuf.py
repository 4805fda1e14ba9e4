"""Decode the Kubernetes protobuf request bodies real clients send to the twin.

client-go based tools send protobuf for built-in kinds: helm's release storage writes its ``Secret`` (or
``ConfigMap``) bodies as ``application/vnd.kubernetes.protobuf``, and kubectl v1.37's typed-client commands do
the same (``kubectl create namespace|configmap|secret|serviceaccount|deployment|job|cronjob|service``,
``kubectl run``). There is no way to make them fall back: client-go retries with JSON only after a 415 for
*CBOR*, and the content type of a typed client is fixed by kubectl, not negotiated through discovery. So the
twin decodes these bodies and answers in JSON (clients decode responses by their Content-Type).

Decoding is generic: :data:`MESSAGES` holds field-number tables written from the message definitions in
``k8s.io/api/{core,apps,batch}/v1/generated.proto`` and ``k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto``
(facts: field numbers, JSON names, types), and :func:`message` walks the wire format with them. A field the
tables do not know makes the whole body fail with 415 (and the message/field named) rather than silently
dropping data.

JSON shape. gogo-protobuf writes every non-pointer Go field, so zero values (``""``, ``0``, ``false``, empty
embedded structs) are on the wire although JSON would omit them; they are dropped again here, which is what
decoding into the Go struct and re-encoding as JSON does. Fields that are pointers in Go (``replicas``,
``terminationGracePeriodSeconds``, ``automountServiceAccountToken`` …) are marked ``?`` in the tables and keep
their zero value, because there zero means "set to zero", not "unset". Go-embedded structs (``ProbeHandler`` in
``Probe``, ``VolumeSource`` in ``Volume``, ``LocalObjectReference`` in key selectors) are marked ``^`` and
flattened into the parent, as their JSON is.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MAGIC = b"k8s\x00"

Obj = dict[str, Any]


class ProtobufError(ValueError):
    """The body is not a protobuf-encoded object the twin can read."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited; fixed widths skipped."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            yield num, v
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated field")
            yield num, buf[i:i + n]
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")


# --------------------------------------------------------------------------------------------------
# Field tables. Notation per field: "<number> <jsonName> <type>[*][?][^]" — ``*`` repeated, ``?`` a Go pointer
# (keep zero values), ``^`` a Go-embedded struct (flatten into the parent). Types: ``s`` string, ``i`` integer,
# ``b`` bool, ``bytes`` (base64 in JSON), ``q`` resource.Quantity, ``ios`` IntOrString, ``t`` metav1.Time,
# ``m:<v>`` map<string, v>, ``-`` ignored (status, managedFields: the server owns them), else a message name.

MESSAGES: dict[str, str] = {
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "ObjectMeta": "1 name s; 2 generateName s; 3 namespace s; 4 selfLink s; 5 uid s; 6 resourceVersion s; "
                  "7 generation i; 8 creationTimestamp t; 9 deletionTimestamp t; 10 deletionGracePeriodSeconds i?; "
                  "11 labels m:s; 12 annotations m:s; 13 ownerReferences OwnerReference*; 14 finalizers s*; "
                  "17 managedFields -",
    "OwnerReference": "1 kind s; 3 name s; 4 uid s; 5 apiVersion s; 6 controller b?; 7 blockOwnerDeletion b?",
    "LabelSelector": "1 matchLabels m:s; 2 matchExpressions LabelSelectorRequirement*",
    "LabelSelectorRequirement": "1 key s; 2 operator s; 3 values s*",
    "Preconditions": "1 uid s?; 2 resourceVersion s?",
    "DeleteOptions": "1 gracePeriodSeconds i?; 2 preconditions Preconditions?; 3 orphanDependents b?; "
                     "4 propagationPolicy s; 5 dryRun s*; 6 ignoreStoreReadErrorWithClusterBreakingPotential b?",
    # k8s.io/api/core/v1
    "Namespace": "1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status -",
    "NamespaceSpec": "1 finalizers s*",
    "ConfigMap": "1 metadata ObjectMeta; 2 data m:s; 3 binaryData m:bytes; 4 immutable b?",
    "Secret": "1 metadata ObjectMeta; 2 data m:bytes; 3 type s; 4 stringData m:s; 5 immutable b?",
    "ServiceAccount": "1 metadata ObjectMeta; 2 secrets ObjectReference*; 3 imagePullSecrets LocalObjectReference*; "
                      "4 automountServiceAccountToken b?",
    "ObjectReference": "1 kind s; 2 namespace s; 3 name s; 4 uid s; 5 apiVersion s; 6 resourceVersion s; "
                       "7 fieldPath s",
    "LocalObjectReference": "1 name s",
    "Service": "1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status -",
    "ServiceSpec": "1 ports ServicePort*; 2 selector m:s; 3 clusterIP s; 18 clusterIPs s*; 4 type s; "
                   "5 externalIPs s*; 7 sessionAffinity s; 8 loadBalancerIP s; 9 loadBalancerSourceRanges s*; "
                   "10 externalName s; 11 externalTrafficPolicy s; 12 healthCheckNodePort i; "
                   "13 publishNotReadyAddresses b; 19 ipFamilies s*; 17 ipFamilyPolicy s?; "
                   "20 allocateLoadBalancerNodePorts b?; 21 loadBalancerClass s?; 22 internalTrafficPolicy s?; "
                   "23 trafficDistribution s?",
    "ServicePort": "1 name s; 2 protocol s; 6 appProtocol s?; 3 port i; 4 targetPort ios; 5 nodePort i",
    "Pod": "1 metadata ObjectMeta; 2 spec PodSpec; 3 status -",
    "PodTemplateSpec": "1 metadata ObjectMeta; 2 spec PodSpec",
    "PodSpec": "1 volumes Volume*; 20 initContainers Container*; 2 containers Container*; 3 restartPolicy s; "
               "4 terminationGracePeriodSeconds i?; 5 activeDeadlineSeconds i?; 6 dnsPolicy s; 7 nodeSelector m:s; "
               "8 serviceAccountName s; 9 serviceAccount s; 21 automountServiceAccountToken b?; 10 nodeName s; "
               "11 hostNetwork b; 12 hostPID b; 13 hostIPC b; 27 shareProcessNamespace b?; "
               "14 securityContext PodSecurityContext?; 15 imagePullSecrets LocalObjectReference*; 16 hostname s; "
               "17 subdomain s; 19 schedulerName s; 22 tolerations Toleration*; 24 priorityClassName s; "
               "25 priority i?; 29 runtimeClassName s?; 30 enableServiceLinks b?; 31 preemptionPolicy s?; "
               "32 overhead m:q; 35 setHostnameAsFQDN b?; 37 hostUsers b?; 38 schedulingGates PodSchedulingGate*; "
               "39 resourceClaims PodResourceClaim*; 40 resources ResourceRequirements?; 41 hostnameOverride s?",
    "PodSecurityContext": "1 seLinuxOptions -; 2 runAsUser i?; 6 runAsGroup i?; 3 runAsNonRoot b?; "
                          "4 supplementalGroups i*; 5 fsGroup i?; 9 fsGroupChangePolicy s?",
    "PodSchedulingGate": "1 name s",
    "PodResourceClaim": "1 name s; 3 resourceClaimName s?; 4 resourceClaimTemplateName s?",
    "Container": "1 name s; 2 image s; 3 command s*; 4 args s*; 5 workingDir s; 6 ports ContainerPort*; "
                 "19 envFrom EnvFromSource*; 7 env EnvVar*; 8 resources ResourceRequirements; 24 restartPolicy s?; "
                 "9 volumeMounts VolumeMount*; 10 livenessProbe Probe?; 11 readinessProbe Probe?; "
                 "22 startupProbe Probe?; 13 terminationMessagePath s; 20 terminationMessagePolicy s; "
                 "14 imagePullPolicy s; 15 securityContext SecurityContext?; 16 stdin b; 17 stdinOnce b; 18 tty b",
    "ContainerPort": "1 name s; 2 hostPort i; 3 containerPort i; 4 protocol s; 5 hostIP s",
    "EnvVar": "1 name s; 2 value s; 3 valueFrom EnvVarSource?",
    "EnvVarSource": "1 fieldRef ObjectFieldSelector?; 2 resourceFieldRef ResourceFieldSelector?; "
                    "3 configMapKeyRef ConfigMapKeySelector?; 4 secretKeyRef SecretKeySelector?",
    "ObjectFieldSelector": "1 apiVersion s; 2 fieldPath s",
    "ResourceFieldSelector": "1 containerName s; 2 resource s; 3 divisor q",
    "ConfigMapKeySelector": "1 localObjectReference LocalObjectReference^; 2 key s; 3 optional b?",
    "SecretKeySelector": "1 localObjectReference LocalObjectReference^; 2 key s; 3 optional b?",
    "EnvFromSource": "1 prefix s; 2 configMapRef ConfigMapEnvSource?; 3 secretRef SecretEnvSource?",
    "ConfigMapEnvSource": "1 localObjectReference LocalObjectReference^; 2 optional b?",
    "SecretEnvSource": "1 localObjectReference LocalObjectReference^; 2 optional b?",
    "ResourceRequirements": "1 limits m:q; 2 requests m:q; 3 claims ResourceClaim*",
    "ResourceClaim": "1 name s; 2 request s",
    "SecurityContext": "1 capabilities Capabilities?; 2 privileged b?; 4 runAsUser i?; 8 runAsGroup i?; "
                       "5 runAsNonRoot b?; 6 readOnlyRootFilesystem b?; 7 allowPrivilegeEscalation b?; 9 procMount s?",
    "Capabilities": "1 add s*; 2 drop s*",
    "VolumeMount": "1 name s; 2 readOnly b; 7 recursiveReadOnly s?; 3 mountPath s; 4 subPath s; "
                   "5 mountPropagation s?; 6 subPathExpr s",
    "Volume": "1 name s; 2 volumeSource VolumeSource^",
    "VolumeSource": "1 hostPath HostPathVolumeSource?; 2 emptyDir EmptyDirVolumeSource?; 6 secret SecretVolumeSource?; "
                    "10 persistentVolumeClaim PersistentVolumeClaimVolumeSource?; 19 configMap ConfigMapVolumeSource?",
    "HostPathVolumeSource": "1 path s; 2 type s?",
    "EmptyDirVolumeSource": "1 medium s; 2 sizeLimit q?",
    "SecretVolumeSource": "1 secretName s; 2 items KeyToPath*; 3 defaultMode i?; 4 optional b?",
    "ConfigMapVolumeSource": "1 localObjectReference LocalObjectReference^; 2 items KeyToPath*; 3 defaultMode i?; "
                             "4 optional b?",
    "PersistentVolumeClaimVolumeSource": "1 claimName s; 2 readOnly b",
    "KeyToPath": "1 key s; 2 path s; 3 mode i?",
    "Toleration": "1 key s; 2 operator s; 3 value s; 4 effect s; 5 tolerationSeconds i?",
    "Probe": "1 handler ProbeHandler^; 2 initialDelaySeconds i; 3 timeoutSeconds i; 4 periodSeconds i; "
             "5 successThreshold i; 6 failureThreshold i; 7 terminationGracePeriodSeconds i?",
    "ProbeHandler": "1 exec ExecAction?; 2 httpGet HTTPGetAction?; 3 tcpSocket TCPSocketAction?",
    "ExecAction": "1 command s*",
    "HTTPGetAction": "1 path s; 2 port ios; 3 host s; 4 scheme s; 5 httpHeaders HTTPHeader*",
    "HTTPHeader": "1 name s; 2 value s",
    "TCPSocketAction": "1 port ios; 2 host s",
    # k8s.io/api/apps/v1
    "Deployment": "1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status -",
    "DeploymentSpec": "1 replicas i?; 2 selector LabelSelector?; 3 template PodTemplateSpec; "
                      "4 strategy DeploymentStrategy; 5 minReadySeconds i; 6 revisionHistoryLimit i?; 7 paused b; "
                      "9 progressDeadlineSeconds i?",
    "DeploymentStrategy": "1 type s; 2 rollingUpdate RollingUpdateDeployment?",
    "RollingUpdateDeployment": "1 maxUnavailable ios?; 2 maxSurge ios?",
    # k8s.io/api/batch/v1
    "Job": "1 metadata ObjectMeta; 2 spec JobSpec; 3 status -",
    "JobSpec": "1 parallelism i?; 2 completions i?; 3 activeDeadlineSeconds i?; 7 backoffLimit i?; "
               "12 backoffLimitPerIndex i?; 13 maxFailedIndexes i?; 4 selector LabelSelector?; 5 manualSelector b?; "
               "6 template PodTemplateSpec; 8 ttlSecondsAfterFinished i?; 9 completionMode s?; 10 suspend b?; "
               "14 podReplacementPolicy s?; 15 managedBy s?",
    "CronJob": "1 metadata ObjectMeta; 2 spec CronJobSpec; 3 status -",
    "CronJobSpec": "1 schedule s; 8 timeZone s?; 2 startingDeadlineSeconds i?; 3 concurrencyPolicy s; 4 suspend b?; "
                   "5 jobTemplate JobTemplateSpec; 6 successfulJobsHistoryLimit i?; 7 failedJobsHistoryLimit i?",
    "JobTemplateSpec": "1 metadata ObjectMeta; 2 spec JobSpec",
}
"""Message name → field table (see the notation above). Only what the served clients send is listed."""

KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Service"): "Service",
    ("v1", "Pod"): "Pod",
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("v1", "DeleteOptions"): "DeleteOptions",
    ("meta.k8s.io/v1", "DeleteOptions"): "DeleteOptions",
}
"""(apiVersion, kind) of the ``runtime.Unknown`` envelope → root message; adding a kind is one entry."""


@dataclass(frozen=True)
class Field:
    """One parsed table entry."""

    name: str
    """JSON field name."""
    type: str
    """Scalar code, ``m:<v>`` map, ``-`` ignored, or a message name."""
    repeated: bool
    """A list in JSON."""
    pointer: bool
    """A Go pointer: zero values are kept."""
    inline: bool
    """A Go-embedded struct: its fields go into the parent object."""


def _parse_table(spec: str) -> dict[int, Field]:
    out: dict[int, Field] = {}
    for entry in spec.split(";"):
        num, name, code = entry.split()
        flags = ""
        while code and code[-1] in "*?^":
            flags += code[-1]
            code = code[:-1]
        out[int(num)] = Field(name, code, "*" in flags, "?" in flags, "^" in flags)
    return out


_TABLES: dict[str, dict[int, Field]] = {name: _parse_table(spec) for name, spec in MESSAGES.items()}
_MIN_SECONDS = -62135596800  # Go's zero time.Time (year 1) in Unix seconds: "unset"


def _signed(v: int) -> int:
    """int32/int64 varints are two's complement in 64 bits."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _need_bytes(v: int | bytes, what: str) -> bytes:
    if not isinstance(v, bytes):
        raise ProtobufError(f"{what}: expected a length-delimited field")
    return v


def _time(buf: bytes) -> str | None:
    secs = 0
    for n, v in fields(buf):
        if n == 1 and isinstance(v, int):
            secs = _signed(v)
    if not buf or secs <= _MIN_SECONDS:
        return None
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(buf: bytes) -> str:
    for n, v in fields(buf):
        if n == 1:
            return _need_bytes(v, "Quantity").decode()
    return "0"


def _int_or_string(buf: bytes) -> int | str:
    kind, ival, sval = 0, 0, ""
    for n, v in fields(buf):
        if n == 1 and isinstance(v, int):
            kind = v
        elif n == 2 and isinstance(v, int):
            ival = _signed(v)
        elif n == 3:
            sval = _need_bytes(v, "IntOrString").decode()
    return sval if kind == 1 else ival


_SCALARS: dict[str, Callable[[int | bytes, str], Any]] = {
    "s": lambda v, w: _need_bytes(v, w).decode(),
    "bytes": lambda v, w: base64.b64encode(_need_bytes(v, w)).decode(),
    "i": lambda v, w: _signed(v) if isinstance(v, int) else _raise(f"{w}: expected a varint"),
    "b": lambda v, w: bool(v) if isinstance(v, int) else _raise(f"{w}: expected a varint"),
    "q": lambda v, w: _quantity(_need_bytes(v, w)),
    "ios": lambda v, w: _int_or_string(_need_bytes(v, w)),
    "t": lambda v, w: _time(_need_bytes(v, w)),
}


def _raise(msg: str) -> Any:
    raise ProtobufError(msg)


def _value(type_: str, v: int | bytes, where: str) -> Any:
    scalar = _SCALARS.get(type_)
    if scalar is not None:
        return scalar(v, where)
    return message(type_, _need_bytes(v, where))


def _map_entry(type_: str, buf: bytes, where: str) -> tuple[str, Any]:
    key, val = "", _value(type_, b"", where) if type_ in ("s", "bytes", "q") else None
    for n, v in fields(buf):
        if n == 1:
            key = _need_bytes(v, where).decode()
        elif n == 2:
            val = _value(type_, v, where)
    return key, val


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False or value == {}


def message(name: str, buf: bytes) -> Obj:
    """Decode one message of type ``name`` into its JSON object (see the module docstring)."""
    table = _TABLES.get(name)
    if table is None:
        if not buf:
            return {}
        raise ProtobufError(f"no protobuf table for message {name}")
    out: Obj = {}
    keep: set[str] = set()
    for num, v in fields(buf):
        f = table.get(num)
        if f is None:
            raise ProtobufError(f"unknown field {num} of {name}")
        where = f"{name}.{f.name}"
        if f.type == "-":
            continue
        if f.type.startswith("m:"):
            k, val = _map_entry(f.type[2:], _need_bytes(v, where), where)
            out.setdefault(f.name, {})[k] = val
            continue
        value = _value(f.type, v, where)
        if f.inline:
            out.update(value)
        elif f.repeated:
            out.setdefault(f.name, []).append(value)
        else:
            out[f.name] = value
            if f.pointer:
                keep.add(f.name)
    return {k: v for k, v in out.items() if (k in keep and v is not None) or not _empty(v)}


def object_meta(buf: bytes) -> Obj:
    """``ObjectMeta`` (managedFields are dropped: the server recomputes them)."""
    return message("ObjectMeta", buf)


def decode(body: bytes) -> Obj:
    """A protobuf-encoded object (``k8s\\x00`` + ``runtime.Unknown``) as its JSON dict."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for n, v in fields(body[len(MAGIC):]):
        if n == 1 and isinstance(v, bytes):
            for tn, tv in fields(v):
                if tn == 1:
                    api_version = _need_bytes(tv, "TypeMeta").decode()
                elif tn == 2:
                    kind = _need_bytes(tv, "TypeMeta").decode()
        elif n == 2 and isinstance(v, bytes):
            raw = v
    root = KINDS.get((api_version, kind))
    if root is None:
        raise ProtobufError(f"no protobuf decoder for {api_version}/{kind}")
    out = message(root, raw)
    if kind != "DeleteOptions":
        out = {"apiVersion": api_version, "kind": kind, **out}
    return out


__all__ = ["KINDS", "MESSAGES", "ProtobufError", "decode", "fields", "message", "object_meta"]
