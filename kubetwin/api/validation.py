"""Field validation with the apiserver's wording (kubernetes-dra.md §1.2, §1.5, §8.6).

A malformed object must fail on the twin exactly as on a real cluster: same HTTP 422, same ``field`` paths,
same ``reason`` (``FieldValueRequired``...) and the same message text (``Required value``,
``Invalid value: "x": <why>``, ``Unsupported value: "x": supported values: "a", "b"``,
``Duplicate value: "x"``, ``Forbidden: ...``), because checks and users match on them. The rules are the
subset of ``pkg/apis/*/validation`` that manifests for the driver, its tests and our own controllers can hit.

Validators are registered per (apiVersion, kind) in :data:`VALIDATORS`; every kind also gets metadata
validation. CEL compilation of selectors is left to the scheduler's CEL environment (an invalid expression
there fails allocation with the real error); here only emptiness and size are checked.

Over 600 lines on purpose: the shared cause builders and name validators are used by every kind's rules,
and each kind's rules are short functions registered in one table; splitting by kind would spread one
registry over many small files without separating concerns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from kubetwin.api.errors import Cause
from kubetwin.api.selectors import label_selector_matches

Obj = dict[str, Any]
Validator = Callable[[Obj, Obj | None], list[Cause]]

# ------------------------------------------------------------------------------------------- messages


def _render(value: Any) -> str:
    """A bad value as ``field.Error`` prints it: strings quoted, numbers/bools bare, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}" if detail else "Required value", field)


def invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_render(value)}: {detail}", field)


def unsupported(field: str, value: Any, supported: Iterable[str]) -> Cause:
    values = ", ".join(json.dumps(s) for s in supported)
    return Cause("FieldValueNotSupported", f"Unsupported value: {_render(value)}: supported values: {values}", field)


def duplicate(field: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {_render(value)}", field)


def _unique_label_name(field: str, name: Any, seen: set[str]) -> list[Cause]:
    """A list item's ``name``: required, a DNS-1123 label, and unique among ``seen`` (which it joins).

    A name that is not a valid label is not also reported as a duplicate, as the apiserver does.
    """
    if not name:
        return [required(field)]
    errs = _check(field, name, dns_label)
    if not errs and name in seen:
        errs.append(duplicate(field, name))
    seen.add(str(name))
    return errs


def forbidden(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)


def too_long(field: str, limit: int, unit: str = "bytes") -> Cause:
    return Cause("FieldValueTooLong", f"Too long: may not be more than {limit} {unit}", field)


def not_found(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueNotFound", f"Not found: {_render(value)}: {detail}", field)


def invalid_message(kind: str, group: str, name: str, causes: list[Cause]) -> str:
    """``<Kind>.<group> "<name>" is invalid: <field>: <msg>`` (several causes: ``[e1, e2]``)."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return f'{qualified} "{name}" is invalid: {text}'


# ------------------------------------------------------------------------------------ name validation

_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_C_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                        r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
                        r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")

DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                     "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
                     "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                         "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
                         "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                     "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                     "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
QUALIFIED_NAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                      "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                      "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def _length_and_pattern(value: str, limit: int, pattern: re.Pattern[str], message: str) -> list[str]:
    """The shape of apimachinery's name validators: a length limit, then a regex with its fixed message."""
    errs = [f"must be no more than {limit} characters"] if len(value) > limit else []
    if not pattern.match(value):
        errs.append(message)
    return errs


def dns_label(value: str) -> list[str]:
    """``IsDNS1123Label``: the reasons ``value`` is not an RFC 1123 label."""
    return _length_and_pattern(value, 63, _LABEL_RE, DNS1123_LABEL_MSG)


def dns_subdomain(value: str) -> list[str]:
    """``IsDNS1123Subdomain``."""
    return _length_and_pattern(value, 253, _SUBDOMAIN_RE, DNS1123_SUBDOMAIN_MSG)


def dns1035_label(value: str) -> list[str]:
    """``IsDNS1035Label`` (Service names)."""
    return _length_and_pattern(value, 63, _DNS1035_RE, DNS1035_LABEL_MSG)


def path_segment(value: str) -> list[str]:
    """``IsValidPathSegmentName``: what kinds without a stricter rule require of a name."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


def qualified_name(value: str) -> list[str]:
    """``IsQualifiedName``: label and annotation keys (``[prefix/]name``)."""
    prefix, _, name = value.rpartition("/")
    if "/" in prefix:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
                "and '/' (e.g. 'example.com/MyName')"]
    errs = []
    if value.count("/") == 1:
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 characters")
        if not _QUALIFIED_NAME_RE.match(name):
            errs.append(QUALIFIED_NAME_MSG)
    return errs


def label_value(value: str) -> list[str]:
    """``IsValidLabelValue``."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(LABEL_VALUE_MSG)
    return errs


def _check(field: str, value: Any, fn: Callable[[str], list[str]]) -> list[Cause]:
    if not isinstance(value, str):
        return [invalid(field, value, "must be a string")]
    return [invalid(field, value, msg) for msg in fn(value)]


# --------------------------------------------------------------------------------------------- metadata

NameRule = Callable[[str], list[str]]

_NAME_RULES: dict[str, NameRule] = {
    "Namespace": dns_label, "Service": dns1035_label,
    "Event": path_segment, "Lease": dns_subdomain,
}
"""Name rule per kind; unlisted kinds use RFC 1123 subdomains (what most ``ValidateObjectMeta`` callers pass)."""

CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "DeviceClass", "ResourceSlice", "DeviceTaintRule", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "PriorityClass", "StorageClass", "APIService",
})
"""Kinds with no namespace (a namespace in the body is Forbidden)."""

NAMESPACED = frozenset({
    "Pod", "Service", "ConfigMap", "Secret", "ServiceAccount", "Event", "Endpoints", "PersistentVolumeClaim",
    "PodTemplate", "ReplicationController", "LimitRange", "ResourceQuota", "Deployment", "ReplicaSet",
    "DaemonSet", "StatefulSet", "ControllerRevision", "Job", "CronJob", "Lease", "Role", "RoleBinding",
    "ResourceClaim", "ResourceClaimTemplate", "PodDisruptionBudget", "EndpointSlice",
})
"""Built-in namespaced kinds; for kinds in neither set (custom resources) the scope is not checked here."""

ANNOTATIONS_MAX = 256 * 1024


def validate_metadata(kind: str, obj: Obj, *, namespaced: bool | None = None) -> list[Cause]:
    """``ValidateObjectMeta``: name/generateName, namespace presence, label and annotation syntax."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required("metadata.name", "name or generateName is required")]
    causes: list[Cause] = []
    rule = _NAME_RULES.get(kind, dns_subdomain)
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes.extend(_check("metadata.name", name, rule))
    if namespaced is None:
        namespaced = True if kind in NAMESPACED else False if kind in CLUSTER_SCOPED else None
    if namespaced is None:
        pass
    elif namespaced and not meta.get("namespace"):
        causes.append(required("metadata.namespace"))
    elif not namespaced and meta.get("namespace"):
        causes.append(forbidden("metadata.namespace", "not allowed on this type"))
    elif namespaced:
        causes.extend(_check("metadata.namespace", meta["namespace"], dns_label))
    for key, value in (meta.get("labels") or {}).items():
        causes.extend(invalid("metadata.labels", key, m) for m in qualified_name(key))
        if not isinstance(value, str):
            causes.append(invalid(f"metadata.labels[{key}]", value, "must be a string"))
        else:
            causes.extend(invalid("metadata.labels", value, m) for m in label_value(value))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        causes.extend(invalid("metadata.annotations", key.lower(), m) for m in qualified_name(key.lower()))
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > ANNOTATIONS_MAX:
        causes.append(too_long("metadata.annotations", ANNOTATIONS_MAX))
    return causes


# ---------------------------------------------------------------------------------------------- pods

RESTART_POLICIES = ("Always", "OnFailure", "Never")
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def _containers(spec: Obj, prefix: str, claim_names: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(spec.get(key) or []):
            f = f"{prefix}{key}[{i}]"
            if not isinstance(c, dict):
                causes.append(invalid(f, c, "must be an object"))
                continue
            name = c.get("name")
            causes.extend(_unique_label_name(f"{f}.name", name, seen))
            if not c.get("image") and key != "ephemeralContainers":
                causes.append(required(f"{f}.image"))
            rp = c.get("restartPolicy")
            if rp is not None and (key != "initContainers" or rp != "Always"):
                causes.append(unsupported(f"{f}.restartPolicy", rp, ["Always"]) if key == "initContainers"
                              else forbidden(f"{f}.restartPolicy", "may not be set for non-init containers"))
            claims = (c.get("resources") or {}).get("claims") or []
            seen_claims: set[str] = set()
            for j, claim in enumerate(claims):
                cf = f"{f}.resources.claims[{j}]"
                cname = (claim or {}).get("name")
                if not cname:
                    causes.append(required(f"{cf}.name"))
                    continue
                key_ = f"{cname}/{(claim or {}).get('request', '')}"
                if key_ in seen_claims:
                    causes.append(duplicate(cf, cname))
                elif cname not in claim_names:
                    detail = ("must be one of the names in pod.spec.resourceClaims which is empty" if not claim_names
                              else "must be one of the names in pod.spec.resourceClaims: "
                              + ", ".join(sorted(claim_names)))
                    causes.append(not_found(cf, cname, detail))
                seen_claims.add(key_)
    return causes


def validate_pod_spec(spec: Any, prefix: str = "spec.", *,
                      restart_policies: tuple[str, ...] = RESTART_POLICIES) -> list[Cause]:
    """``ValidatePodSpec`` (the parts manifests hit): containers, restartPolicy, resourceClaims."""
    if not isinstance(spec, dict):
        return [required(prefix.rstrip("."))]
    causes: list[Cause] = []
    if not spec.get("containers"):
        causes.append(required(f"{prefix}containers"))
    rp = spec.get("restartPolicy")
    if rp is None:
        causes.append(required(f"{prefix}restartPolicy"))
    elif rp not in restart_policies:
        causes.append(unsupported(f"{prefix}restartPolicy", rp, restart_policies))
    claim_names: set[str] = set()
    for i, rc in enumerate(spec.get("resourceClaims") or []):
        f = f"{prefix}resourceClaims[{i}]"
        name = (rc or {}).get("name")
        causes.extend(_unique_label_name(f"{f}.name", name, claim_names))
        has_name, has_tmpl = bool(rc.get("resourceClaimName")), bool(rc.get("resourceClaimTemplateName"))
        if not has_name and not has_tmpl:
            causes.append(invalid(f, name, "at least one of `resourceClaimName` or `resourceClaimTemplateName` "
                                           "must be set"))
        elif has_name and has_tmpl:
            causes.append(invalid(f, name, "at most one of `resourceClaimName` or `resourceClaimTemplateName` "
                                           "may be set"))
        for key in ("resourceClaimName", "resourceClaimTemplateName"):
            if rc.get(key):
                causes.extend(_check(f"{f}.{key}", rc[key], dns_subdomain))
    causes.extend(_containers(spec, prefix, claim_names))
    tgp = spec.get("terminationGracePeriodSeconds")
    if isinstance(tgp, int) and tgp < 0:
        causes.append(invalid(f"{prefix}terminationGracePeriodSeconds", tgp,
                              "must be greater than or equal to 0"))
    return causes


def _mutable_pod_view(spec: Obj, old_spec: Obj) -> Obj:
    """The pod spec with the fields an update may change replaced by the old values."""
    view: Obj = json.loads(json.dumps(spec))
    for key in ("containers", "initContainers"):
        olds = {c.get("name"): c for c in old_spec.get(key) or []}
        for c in view.get(key) or []:
            if c.get("name") in olds and "image" in olds[c["name"]]:
                c["image"] = olds[c["name"]]["image"]
    for key in ("activeDeadlineSeconds",):
        if key in old_spec:
            view[key] = old_spec[key]
        else:
            view.pop(key, None)
    old_tol = old_spec.get("tolerations") or []
    new_tol = view.get("tolerations") or []
    if all(t in new_tol for t in old_tol):
        view["tolerations"] = old_tol
        if "tolerations" not in old_spec:
            view.pop("tolerations", None)
    # Removing scheduling gates is allowed; binding sets nodeName once (pods/binding).
    gates_old = old_spec.get("schedulingGates") or []
    if all(g in gates_old for g in view.get("schedulingGates") or []):
        view.pop("schedulingGates", None)
        if gates_old:
            view["schedulingGates"] = gates_old
    if not old_spec.get("nodeName") and view.get("nodeName"):
        view.pop("nodeName")
    return view


def validate_pod(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_pod_spec(obj.get("spec"))
    if old is not None and isinstance(obj.get("spec"), dict):
        old_spec = old.get("spec") or {}
        if _mutable_pod_view(obj["spec"], old_spec) != old_spec:
            causes.append(forbidden("spec", POD_UPDATE_FORBIDDEN))
    return causes


# ------------------------------------------------------------------------------------------ workloads


def _selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """A workload's ``spec.selector`` against its template's labels (not an object: selects nothing)."""
    return isinstance(selector, dict) and label_selector_matches(selector, labels)


def _workload(restart_policies: tuple[str, ...], *, selector_required: bool = True) -> Validator:
    def validate(obj: Obj, old: Obj | None) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        selector = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if selector is None:
            if selector_required:
                causes.append(required("spec.selector"))
        elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append(invalid("spec.selector", selector,
                                  "empty selector is invalid for deployment" if obj.get("kind") == "Deployment"
                                  else "empty selector is not valid"))
        elif not _selector_matches(selector, labels):
            causes.append(invalid("spec.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`"))
        for field in ("replicas", "parallelism", "completions", "backoffLimit"):
            value = spec.get(field)
            if isinstance(value, int) and value < 0:
                causes.append(invalid(f"spec.{field}", value, "must be greater than or equal to 0"))
        template = spec.get("template")
        if not isinstance(template, dict):
            causes.append(required("spec.template"))
        else:
            causes.extend(validate_pod_spec(template.get("spec"), "spec.template.spec.",
                                            restart_policies=restart_policies))
        if old is not None and selector_required and old.get("spec", {}).get("selector") != selector \
                and obj.get("kind") in ("Deployment", "DaemonSet", "ReplicaSet"):
            causes.append(invalid("spec.selector", selector, "field is immutable"))
        return causes
    return validate


# ------------------------------------------------------------------------------------------------- DRA

ALLOCATION_MODES = ("All", "ExactCount")
CEL_MAX = 10 * 1024
OPAQUE_MAX = 10 * 1024
REQUEST_REF = "must be the name of a request in the claim or the name of a request and a subrequest separated by '/'"


def _selectors(selectors: Any, f: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, sel in enumerate(selectors or []):
        sf = f"{f}[{i}]"
        cel = (sel or {}).get("cel")
        if not isinstance(cel, dict):
            causes.append(required(f"{sf}.cel"))
            continue
        expr = cel.get("expression")
        if not expr:
            causes.append(required(f"{sf}.cel.expression"))
        elif len(str(expr).encode()) > CEL_MAX:
            causes.append(too_long(f"{sf}.cel.expression", CEL_MAX))
    return causes


def _opaque_configs(configs: Any, f: str, request_names: set[str] | None) -> list[Cause]:
    causes: list[Cause] = []
    for i, cfg in enumerate(configs or []):
        cf = f"{f}[{i}]"
        if request_names is not None:
            for j, ref in enumerate((cfg or {}).get("requests") or []):
                if ref not in request_names:
                    causes.append(invalid(f"{cf}.requests[{j}]", ref, REQUEST_REF))
        opaque = (cfg or {}).get("opaque")
        if not isinstance(opaque, dict):
            causes.append(required(f"{cf}.opaque"))
            continue
        driver = opaque.get("driver")
        if not driver:
            causes.append(required(f"{cf}.opaque.driver"))
        else:
            causes.extend(_check(f"{cf}.opaque.driver", driver, dns_subdomain))
        params = opaque.get("parameters")
        if params is None:
            causes.append(required(f"{cf}.opaque.parameters"))
        elif len(json.dumps(params, separators=(",", ":")).encode()) > OPAQUE_MAX:
            causes.append(too_long(f"{cf}.opaque.parameters", OPAQUE_MAX))
    return causes


def _exact(req: Obj, f: str) -> list[Cause]:
    """An ``exactly`` request or a ``firstAvailable`` subrequest (same fields)."""
    causes: list[Cause] = []
    dc = req.get("deviceClassName")
    if not dc:
        causes.append(required(f"{f}.deviceClassName"))
    else:
        causes.extend(_check(f"{f}.deviceClassName", dc, dns_subdomain))
    causes.extend(_selectors(req.get("selectors"), f"{f}.selectors"))
    mode = req.get("allocationMode", "ExactCount")
    count = req.get("count")
    if mode == "ExactCount":
        if count is not None and count <= 0:
            causes.append(invalid(f"{f}.count", count, "must be greater than zero"))
    elif mode == "All":
        if count:
            causes.append(invalid(f"{f}.count", count, "must not be specified when allocationMode is 'All'"))
    else:
        causes.append(unsupported(f"{f}.allocationMode", mode, ALLOCATION_MODES))
    return causes


def validate_claim_spec(spec: Any, prefix: str = "spec") -> list[Cause]:
    """``ResourceClaimSpec`` rules of kubernetes-dra.md §1.2."""
    devices = (spec or {}).get("devices") if isinstance(spec, dict) else None
    if not isinstance(devices, dict):
        return []
    causes: list[Cause] = []
    names: set[str] = set()
    refs: set[str] = set()
    for i, req in enumerate(devices.get("requests") or []):
        f = f"{prefix}.devices.requests[{i}]"
        if not isinstance(req, dict):
            causes.append(invalid(f, req, "must be an object"))
            continue
        name = req.get("name")
        causes.extend(_unique_label_name(f"{f}.name", name, names))
        if name:
            refs.add(str(name))
        has_exactly, has_first = req.get("exactly") is not None, bool(req.get("firstAvailable"))
        if has_exactly and has_first:
            causes.append(invalid(f, None, "exactly one of `exactly` or `firstAvailable` is required, but multiple "
                                           "fields are set"))
        elif not has_exactly and not has_first:
            causes.append(required(f, "exactly one of `exactly` or `firstAvailable` is required"))
        if has_exactly:
            causes.extend(_exact(req["exactly"] or {}, f"{f}.exactly"))
        sub_names: set[str] = set()
        for j, sub in enumerate(req.get("firstAvailable") or []):
            sf = f"{f}.firstAvailable[{j}]"
            sname = (sub or {}).get("name")
            causes.extend(_unique_label_name(f"{sf}.name", sname, sub_names))
            if sname:
                refs.add(f"{name}/{sname}")
            causes.extend(_exact(sub or {}, sf))
    for i, con in enumerate(devices.get("constraints") or []):
        f = f"{prefix}.devices.constraints[{i}]"
        for j, ref in enumerate((con or {}).get("requests") or []):
            if ref not in refs:
                causes.append(invalid(f"{f}.requests[{j}]", ref, REQUEST_REF))
        match, distinct = (con or {}).get("matchAttribute"), (con or {}).get("distinctAttribute")
        if match is None and distinct is None:
            causes.append(required(f"{f}.matchAttribute"))
        elif match is not None and distinct is not None:
            causes.append(invalid(f, None, "exactly one of `matchAttribute` or `distinctAttribute` is required, "
                                           "but multiple fields are set"))
        for key, value in (("matchAttribute", match), ("distinctAttribute", distinct)):
            if value is not None and "/" not in str(value):
                causes.append(invalid(f"{f}.{key}", value, "a fully qualified name must be a domain and a name "
                                                           "separated by a slash"))
    causes.extend(_opaque_configs(devices.get("config"), f"{prefix}.devices.config", refs))
    return causes


def _immutable(field: str, new: Any, old: Any) -> list[Cause]:
    return [] if new == old else [invalid(field, new, "field is immutable")]


def validate_resource_claim(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_claim_spec(obj.get("spec"))
    if old is not None:
        causes.extend(_immutable("spec", obj.get("spec"), old.get("spec")))
    status = obj.get("status") or {}
    if status.get("reservedFor") and not status.get("allocation"):
        causes.append(forbidden("status.reservedFor", "may not be specified when `allocated` is not set"))
    uids: set[str] = set()
    for i, ref in enumerate(status.get("reservedFor") or []):
        f = f"status.reservedFor[{i}]"
        for key in ("resource", "name", "uid"):
            if not (ref or {}).get(key):
                causes.append(required(f"{f}.{key}"))
        uid = (ref or {}).get("uid")
        if uid and uid in uids:
            causes.append(duplicate(f"{f}.uid", uid))
        if uid:
            uids.add(str(uid))
    if old is not None:
        old_status = old.get("status") or {}
        old_alloc, new_alloc = old_status.get("allocation"), status.get("allocation")
        if old_alloc and new_alloc and old_alloc != new_alloc:
            causes.append(invalid("status.allocation", new_alloc, "field is immutable"))
        if (old.get("metadata") or {}).get("deletionTimestamp"):
            old_uids = {r.get("uid") for r in old_status.get("reservedFor") or []}
            if uids - old_uids:
                causes.append(forbidden("status.reservedFor", "new entries may not be added while "
                                        "`deallocationRequested` or `deletionTimestamp` are set"))
    return causes


def validate_resource_claim_template(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = validate_claim_spec(spec.get("spec"), "spec.spec")
    for key in (spec.get("metadata") or {}):
        if key not in ("labels", "annotations"):
            causes.append(forbidden(f"spec.metadata.{key}", "only labels and annotations may be set"))
    if old is not None:
        causes.extend(_immutable("spec", obj.get("spec"), old.get("spec")))
    return causes


def validate_device_class(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _selectors(spec.get("selectors"), "spec.selectors")
    causes.extend(_opaque_configs(spec.get("config"), "spec.config", None))
    return causes


NODE_SELECTION = ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection")
_SELECTION_TEXT = "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"


def _qualified_attr(name: str) -> list[str]:
    domain, _, ident = name.rpartition("/")
    errs = []
    if domain:
        errs.extend(dns_subdomain(domain))
        if len(domain) > 63:
            errs.append("must be no more than 63 characters")
    if not _C_IDENT_RE.match(ident):
        errs.append("a valid C identifier must start with alphabetic character or '_', followed by a string of "
                    "alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for "
                    "validation is '[A-Za-z_][A-Za-z0-9_]*')")
    elif len(ident) > 32:
        errs.append("must be no more than 32 characters")
    return errs


def _device(dev: Obj, f: str, per_device: bool) -> list[Cause]:
    causes: list[Cause] = []
    for name, attr in (dev.get("attributes") or {}).items():
        af = f"{f}.attributes[{name}]"
        causes.extend(invalid(f"{f}.attributes", name, m) for m in _qualified_attr(name))
        values = [k for k in ("int", "bool", "string", "version") if (attr or {}).get(k) is not None]
        if len(values) != 1:
            causes.append(invalid(af, attr, "exactly one value must be specified"))
            continue
        if values[0] == "string" and len(attr["string"]) > 64:
            causes.append(too_long(f"{af}.string", 64))
        if values[0] == "version":
            if len(attr["version"]) > 64:
                causes.append(too_long(f"{af}.version", 64))
            elif not _SEMVER_RE.match(attr["version"]):
                causes.append(invalid(f"{af}.version", attr["version"],
                                      "must be a string compatible with semver.org spec 2.0.0"))
    for name in (dev.get("capacity") or {}):
        causes.extend(invalid(f"{f}.capacity", name, m) for m in _qualified_attr(name))
    if per_device:
        chosen = [k for k in ("nodeName", "nodeSelector", "allNodes") if dev.get(k) not in (None, False)]
        if len(chosen) != 1:
            causes.append(invalid(f, None, "exactly one of `nodeName`, `nodeSelector`, `allNodes` is required"))
    for i, cc in enumerate(dev.get("consumesCounters") or []):
        if not (cc or {}).get("counterSet"):
            causes.append(required(f"{f}.consumesCounters[{i}].counterSet"))
    return causes


def validate_resource_slice(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    driver = spec.get("driver")
    if not driver:
        causes.append(required("spec.driver"))
    else:
        causes.extend(_check("spec.driver", driver, dns_subdomain))
        if isinstance(driver, str) and len(driver) > 63:
            causes.append(too_long("spec.driver", 63))
    pool = spec.get("pool") or {}
    if not pool.get("name"):
        causes.append(required("spec.pool.name"))
    else:
        for part in str(pool["name"]).split("/"):
            causes.extend(invalid("spec.pool.name", pool["name"], m) for m in dns_subdomain(part))
    count = pool.get("resourceSliceCount")
    if not isinstance(count, int) or count <= 0:
        causes.append(invalid("spec.pool.resourceSliceCount", count or 0, "must be greater than zero"))
    gen = pool.get("generation", 0)
    if isinstance(gen, int) and gen < 0:
        causes.append(invalid("spec.pool.generation", gen, "must be greater than or equal to 0"))
    chosen = [k for k in NODE_SELECTION if spec.get(k) is not None]
    if not chosen:
        causes.append(required("spec", _SELECTION_TEXT))
    elif len(chosen) > 1:
        causes.append(invalid("spec", None, _SELECTION_TEXT + ", but multiple fields are set"))
    if spec.get("nodeName") == "":
        causes.append(invalid("spec.nodeName", "", "must not be empty"))
    elif spec.get("nodeName"):
        causes.extend(_check("spec.nodeName", spec["nodeName"], dns_subdomain))
    for key in ("allNodes", "perDeviceNodeSelection"):
        if spec.get(key) is False:
            causes.append(invalid(f"spec.{key}", False, "may only be set to true"))
    if isinstance(spec.get("nodeSelector"), dict) and len(spec["nodeSelector"].get("nodeSelectorTerms") or []) != 1:
        causes.append(invalid("spec.nodeSelector.nodeSelectorTerms",
                              spec["nodeSelector"].get("nodeSelectorTerms") or [],
                              "must have exactly one node selector term"))
    if spec.get("sharedCounters") and spec.get("devices"):
        causes.append(invalid("spec", None, "only one of `sharedCounters` or `devices` is allowed"))
    seen: set[str] = set()
    for i, dev in enumerate(spec.get("devices") or []):
        f = f"spec.devices[{i}]"
        name = (dev or {}).get("name")
        causes.extend(_unique_label_name(f"{f}.name", name, seen))
        causes.extend(_device(dev or {}, f, bool(spec.get("perDeviceNodeSelection"))))
    set_names: set[str] = set()
    for i, cs in enumerate(spec.get("sharedCounters") or []):
        f = f"spec.sharedCounters[{i}]"
        name = (cs or {}).get("name")
        causes.extend(_unique_label_name(f"{f}.name", name, set_names))
        for cname in (cs or {}).get("counters") or {}:
            causes.extend(invalid(f"{f}.counters", cname, m) for m in dns_label(cname))
    if old is not None:
        old_spec = old.get("spec") or {}
        causes.extend(_immutable("spec.driver", spec.get("driver"), old_spec.get("driver")))
        causes.extend(_immutable("spec.pool.name", pool.get("name"), (old_spec.get("pool") or {}).get("name")))
        causes.extend(_immutable("spec.nodeName", spec.get("nodeName"), old_spec.get("nodeName")))
    return causes


# -------------------------------------------------------------------------------------------- registry

VALIDATORS: dict[tuple[str, str], Validator] = {
    ("v1", "Pod"): validate_pod,
    ("apps/v1", "Deployment"): _workload(("Always",)),
    ("apps/v1", "ReplicaSet"): _workload(("Always",)),
    ("apps/v1", "DaemonSet"): _workload(("Always",)),
    ("batch/v1", "Job"): _workload(("OnFailure", "Never"), selector_required=False),
    ("resource.k8s.io/v1", "ResourceClaim"): validate_resource_claim,
    ("resource.k8s.io/v1", "ResourceClaimTemplate"): validate_resource_claim_template,
    ("resource.k8s.io/v1", "DeviceClass"): validate_device_class,
    ("resource.k8s.io/v1", "ResourceSlice"): validate_resource_slice,
}
"""Kind-specific validation per (apiVersion, kind); metadata is validated for every kind."""


def validate(api_version: str, kind: str, obj: Obj, old: Obj | None = None, *,
             namespaced: bool | None = None) -> list[Cause]:
    """All validation causes of ``obj`` (create when ``old`` is None, else update); empty means valid.

    ``namespaced`` overrides the built-in scope table (the Api knows it from the registry, e.g. for CRs).
    """
    causes = validate_metadata(kind, obj, namespaced=namespaced)
    fn = VALIDATORS.get((api_version, kind))
    if fn is not None:
        causes.extend(fn(obj, old))
    return causes
