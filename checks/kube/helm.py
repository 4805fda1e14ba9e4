"""Installing, inspecting and removing the driver's Helm release — safely.

Safety first: a person's cluster may already run the driver, installed by hand or by another tool. dra-lab
marks every release it installs with the helm *release* label :data:`MANAGED_LABEL` (helm 4 ``--labels``,
stored on the release record, not on the chart's objects) and refuses to upgrade or uninstall a release
without it unless told to adopt it.

Values always travel in a private 0600 file passed with ``-f``, never with ``--set``: a command line is
visible to every user of the machine (``ps``) and lands in logs.

Why the extra wait after helm returns: ``helm --wait`` returns before the kubelet-plugin pods are Ready
(reference nvidia-dra-driver.md §14.2), and nothing works until they are — so :func:`upgrade_install` waits
for the plugin DaemonSet's rollout and its pods Ready with the watch-based waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from checks.driver import names
from checks.errors import UsageError
from checks.kube.wait import WaitOptions, source_for, wait_for, wait_pods_ready

if TYPE_CHECKING:
    from checks.kube.client import ClusterClient

#: Helm release label marking releases dra-lab installed (and may therefore change or remove).
MANAGED_LABEL = "dra-lab.io/managed"
#: Pod label key the chart puts on each component's pods (reference nvidia-dra-driver.md §1.4).
DEFAULT_COMPONENT_LABEL = names.COMPONENT_LABEL
#: Component value of the kubelet-plugin pods (§1.4).
KUBELET_PLUGIN_COMPONENT = names.COMPONENT_KUBELET_PLUGIN


class ReleaseNotManaged(UsageError):
    """A release exists that dra-lab did not install; it is left alone unless adoption is asked for."""


@dataclass(frozen=True)
class ReleaseStatus:
    """What ``helm list`` says about one release."""

    name: str
    """Release name."""
    namespace: str
    """Release namespace."""
    revision: int
    """Current revision number."""
    status: str
    """``deployed``, ``failed``, ``pending-install``, ..."""
    chart: str
    """``<chart>-<version>`` as helm prints it."""
    app_version: str
    """The chart's appVersion."""
    managed: bool
    """Whether the release carries :data:`MANAGED_LABEL` (installed or adopted by dra-lab)."""


@dataclass(frozen=True)
class InstallOptions:
    """How :func:`upgrade_install` behaves beyond the release identity."""

    version: str | None = None
    """Chart version (``--version``); None = the newest the reference offers (or the local chart)."""
    wait_timeout_s: float = 600.0
    """Budget for helm itself (``--timeout``) and, separately, for the plugin pods to become Ready."""
    adopt: bool = False
    """Take over a release that dra-lab did not install (marks it managed)."""
    helm_wait: bool = False
    """Also pass ``--wait`` (helm's own readiness wait); our plugin wait runs either way."""
    wait_for_plugin: bool = True
    """Wait for the kubelet-plugin DaemonSet rollout and its pods Ready after helm returns."""
    component_label: str = DEFAULT_COMPONENT_LABEL
    """Pod label key of the components (follows the chart's ``nameOverride``)."""
    extra_args: tuple[str, ...] = ()
    """More helm flags (e.g. ``--devel``); never values — those go in the values file."""
    wait_options: WaitOptions | None = field(default=None, compare=False)
    """Clock/observer for the plugin wait (tests)."""


def release_status(cluster: ClusterClient, release: str, namespace: str) -> ReleaseStatus | None:
    """The release's state, or None when no release of that name exists in ``namespace``."""
    pattern = f"^{re.escape(release)}$"
    found = _helm_list(cluster, namespace, pattern)
    if not found:
        return None
    managed = bool(_helm_list(cluster, namespace, pattern, selector=f"{MANAGED_LABEL}=true"))
    entry = found[0]
    return ReleaseStatus(
        name=str(entry.get("name")), namespace=str(entry.get("namespace", namespace)),
        revision=int(entry.get("revision") or 0), status=str(entry.get("status", "")),
        chart=str(entry.get("chart", "")), app_version=str(entry.get("app_version", "")), managed=managed,
    )


def _helm_list(cluster: ClusterClient, namespace: str, pattern: str, selector: str | None = None
               ) -> list[dict[str, Any]]:
    # helm v4 lists releases in every status by default and no longer has --all (v3 needed it).
    args = ["list", "--namespace", namespace, "--output", "json", "--filter", pattern]
    if selector:
        args += ["--selector", selector]
    proc = cluster.helm(*args, timeout=120)
    text = proc.stdout.strip()
    data = json.loads(text) if text else []
    return [e for e in data if isinstance(e, dict)]


def _guard(current: ReleaseStatus | None, release: str, namespace: str, adopt: bool) -> None:
    if current is not None and not current.managed and not adopt:
        raise ReleaseNotManaged(
            f"release {release!r} in namespace {namespace!r} was not installed by dra-lab; refusing to change "
            f"it (pass adopt / --adopt to take it over)", where="helm")


def upgrade_install(cluster: ClusterClient, release: str, chart_ref: str, namespace: str, values: dict[str, Any],
                    options: InstallOptions | None = None) -> ReleaseStatus:
    """``helm upgrade --install`` the chart with ``values``, then wait for the kubelet plugin to be Ready.

    Refuses (:class:`ReleaseNotManaged`) to modify an existing release that dra-lab did not install, unless
    ``options.adopt``. Returns the release status after the install.
    """
    opts = options or InstallOptions()
    _guard(release_status(cluster, release, namespace), release, namespace, opts.adopt)
    fd, values_name = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=cluster.run_dir)
    values_path = Path(values_name)
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp files are 0600: values may carry secrets
            yaml.safe_dump(values, fh, sort_keys=True)
        args = ["upgrade", release, chart_ref, "--install", "--create-namespace", "--namespace", namespace,
                "-f", str(values_path), "--labels", f"{MANAGED_LABEL}=true",
                "--timeout", f"{int(opts.wait_timeout_s)}s"]
        if opts.version:
            args += ["--version", opts.version]
        if opts.helm_wait:
            args += ["--wait"]
        args += list(opts.extra_args)
        cluster.helm(*args, timeout=opts.wait_timeout_s + 60)
    finally:
        values_path.unlink(missing_ok=True)
    if opts.wait_for_plugin:
        wait_plugin_ready(cluster, release, namespace, timeout=opts.wait_timeout_s,
                          component_label=opts.component_label, options=opts.wait_options)
    status = release_status(cluster, release, namespace)
    if status is None:
        raise RuntimeError(f"helm reported success but release {release!r} is not listed in {namespace!r}")
    return status


def _selects_component(ds: dict[str, Any], component_label: str, component: str) -> bool:
    match = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return bool(match.get(component_label) == component)


def daemonset_rolled_out(ds: dict[str, Any]) -> bool:
    """Rollout complete as ``kubectl rollout status`` judges it, and at least one pod wanted."""
    meta, status = ds.get("metadata") or {}, ds.get("status") or {}
    desired = int(status.get("desiredNumberScheduled") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and desired >= 1
        and int(status.get("updatedNumberScheduled") or 0) == desired
        and int(status.get("numberReady") or 0) == desired
    )


def wait_plugin_ready(cluster: ClusterClient, release: str, namespace: str, *, timeout: float,
                      component_label: str = DEFAULT_COMPONENT_LABEL,
                      options: WaitOptions | None = None) -> list[dict[str, Any]]:
    """Wait for the release's kubelet-plugin DaemonSet to roll out, then for its pods Ready; return the pods.

    The DaemonSet is found by the release's ``app.kubernetes.io/instance`` label and its pod selector (the
    component label), so a ``nameOverride`` changes nothing here.
    """
    selector = f"{component_label}={KUBELET_PLUGIN_COMPONENT}"
    source = source_for(cluster, "daemonsets", namespace, label_selector=f"app.kubernetes.io/instance={release}")
    opts = options or WaitOptions()
    if opts.on_timeout is None:
        opts.on_timeout = lambda _state: plugin_pod_trouble(cluster, namespace, selector)
    ds = wait_for(
        source,
        lambda d: _selects_component(d, component_label, KUBELET_PLUGIN_COMPONENT) and daemonset_rolled_out(d),
        timeout=timeout, what=f"kubelet-plugin DaemonSet of release {release} rolled out", options=opts,
    )
    desired = int((ds.get("status") or {}).get("desiredNumberScheduled") or 1)
    pods_opts = WaitOptions(clock=opts.clock)
    pods_opts.on_timeout = lambda _state: plugin_pod_trouble(cluster, namespace, selector)
    return wait_pods_ready(cluster, namespace, selector, count=desired, timeout=timeout, options=pods_opts)


def plugin_pod_trouble(cluster: ClusterClient, namespace: str, selector: str) -> str:
    """Why the plugin pods are not running cleanly, in one line: each container that is not ready or has
    restarted, its state (e.g. ``CrashLoopBackOff``) and restarts, and the last log line of its failed instance —
    so a rollout timeout names the cause (a gate rule, or an injected crash, the plugin printed before exiting).
    Empty when every container is ready and never restarted."""
    from checks.kube import objects as K

    parts: list[str] = []
    for pod in K.list_(cluster, "pods", namespace, label_selector=selector):
        pname = pod["metadata"]["name"]
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            restarts = int(cs.get("restartCount") or 0)
            waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if not restarts and not waiting and cs.get("ready"):
                continue
            last = ""
            with contextlib.suppress(Exception):  # enrichment only: a missing log must not hide the state
                tail = K.pod_log(cluster, namespace, pname, cs["name"], previous=restarts > 0, tail_lines=5)
                lines = [ln for ln in tail.splitlines() if ln.strip()]
                last = lines[-1][:300] if lines else ""
            state = waiting or ("running" if cs.get("ready") else "not ready")
            parts.append(f"plugin {pname}/{cs['name']}: {state}, {restarts} restarts"
                         + (f", last log: {last}" if last else ""))
    return "; ".join(parts + not_ready_nodes(cluster))


def not_ready_nodes(cluster: ClusterClient) -> list[str]:
    """``node NAME NotReady (Ready=Unknown NodeStatusUnknown: Kubelet stopped posting node status.)`` for every
    node whose Ready condition is not True: a plugin DaemonSet never rolls out there, and its reason says why."""
    from checks.kube import objects as K

    out: list[str] = []
    for node in K.list_(cluster, "nodes"):
        conds = (node.get("status") or {}).get("conditions") or []
        ready: dict[str, Any] = next((c for c in conds if c.get("type") == "Ready"), {})
        if ready.get("status") != "True":
            out.append(f"node {node['metadata']['name']} NotReady (Ready={ready.get('status', '<none>')} "
                       f"{ready.get('reason', '')}: {ready.get('message', '')})")
    return out


def uninstall(cluster: ClusterClient, release: str, namespace: str, *, adopt: bool = False,
              timeout_s: float = 300.0) -> bool:
    """Uninstall a dra-lab release (or an adopted one); False when there was nothing to uninstall."""
    current = release_status(cluster, release, namespace)
    if current is None:
        return False
    _guard(current, release, namespace, adopt)
    cluster.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", f"{int(timeout_s)}s",
                 timeout=timeout_s + 60)
    return True
