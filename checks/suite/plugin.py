"""The pytest plugin behind ``dra-lab check`` (and ``pytest --pyargs checks.suite``).

What it adds to plain pytest, each because the upstream bats suite lacked it:

- selection by declared capability (``@pytest.mark.needs``) with a reason for every skip;
- one driver installation per distinct :class:`DriverConfig` (``@pytest.mark.driver``), checks sorted so
  each configuration is installed once, on any cluster through ``helm upgrade --install``;
- a namespace per check named with the run id, every object labelled, cleanup on pass, failure, Ctrl-C and
  SIGTERM (SIGTERM is turned into KeyboardInterrupt so pytest's teardown runs), plus a final label sweep;
- artifacts of every failing check (pods, claims, events, slices, driver logs), referenced from JUnit;
- ``results.json`` always written, also on interruption;
- ``--dry-run``: the plan without touching the cluster.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from checks.catalog import Instance, load_instance
from checks.catalog import needs as C
from checks.driver import names
from checks.errors import UsageError
from checks.kube.labels import EMULATED_GPUS_LABEL
from checks.scenarios.driverconfig import (
    DEFAULT,
    PLUGIN_SELECTOR,
    RELEASE,
    DriverConfig,
    InstallState,
    for_instance,
)
from checks.suite.context import CheckContext
from checks.suite.settings import FLAGS, OPTIONS, SuiteSettings, from_pytest

UPSTREAM_TAGS = {
    "fastfeedback": "upstream tag: quick checks",
    "multi_gpu": "upstream tag multi-gpu: needs 2+ GPUs",
    "dynmig": "upstream tag dynmig: DynamicMIG",
    "version_specific": "upstream tag version-specific: depends on driver/K8s versions",
    "gpu_busgrind": "upstream tag gpu-busgrind",
    "gpu_workloads": "upstream tag gpu-workloads",
    "gpu_sharing": "upstream tag gpu-sharing",
    "gpu_robustness": "upstream tag gpu-robustness",
    "extres": "upstream tag extres: DRA extended resources",
    "stress": "stress: many pods sharing one claim",
    "disruptive": "node disruptions (reboot): opt-in with --disruptive, periodic jobs only (roadmap item 14)",
    "mig": "MIG (static or dynamic)",
    "compute_domains": "ComputeDomains / IMEX",
    "not_feasible": "scenarios that cannot run on Lambda single-node instances (always skipped, with a reason)",
    "portable": "roadmap item 12: GPU-Operator-independent basics (select with -m portable)",
    "gpu_operator": "needs the NVIDIA GPU Operator (Lambda has none; deselect with -m 'not gpu_operator')",
    "upgrade": "roadmap item 1: helm upgrade/downgrade between the last-stable and the tested chart",
    "health": "roadmap item 3: NVMLDeviceHealthCheck (own driver configuration)",
    "leader_election": "roadmap item 4: controller leader election",
    "webhook": "roadmap item 8: validating admission webhook",
    "untested_features": "roadmap §8: features with no upstream coverage",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dra-lab", "dra-lab check suite")
    for dest, (env, default, _typ, help_) in OPTIONS.items():
        env_note = f" [env {env}]" if env else ""
        default_note = f" (default {default})" if default not in (None, "") else ""
        group.addoption(f"--{dest.replace('_', '-')}", dest=f"dra_{dest}", default=None,
                        help=f"{help_}{default_note}{env_note}")
    for dest, (env, help_) in FLAGS.items():
        env_note = f" [env {env}=1]" if env else ""
        group.addoption(f"--{dest.replace('_', '-')}", dest=f"dra_{dest}", action="store_true", default=False,
                        help=f"{help_}{env_note}")


@dataclass
class CheckResult:
    """One check's line in results.json."""

    nodeid: str
    outcome: str = "unknown"
    duration_s: float = 0.0
    skip_reason: str = ""
    driver_config: str = ""
    error: str = ""
    artifacts: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Suite:
    """Session state: settings, cluster, facts, installs, results."""

    def __init__(self, config: pytest.Config, settings: SuiteSettings) -> None:
        self.config = config
        self.settings = settings
        self.instance: Instance = load_instance(settings.instance)
        self.results: dict[str, CheckResult] = {}
        self.install = InstallState()
        self.cluster: Any = None
        self.lock: Any = None
        self.live = C.SliceFacts()
        self.real_gpus = True
        self.server_version = ""
        self.started = time.time()
        self.interrupted = False
        self.notes: list[str] = []

    # -- cluster ---------------------------------------------------------------------------------------------
    def open_cluster(self) -> Any:
        """Open the cluster, take the run lock, and refuse (or clean) other runs' leftovers holding devices.

        Everything that can be wrong with the target is one UsageError line here, before any check runs.
        """
        if self.cluster is not None:
            return self.cluster
        from checks.kube.client import ClusterClient, ClusterTarget

        s = self.settings
        if s.kubeconfig is None:
            raise UsageError("no cluster: pass --kubeconfig (or run `dra-lab check --twin INSTANCE`)",
                             where="--kubeconfig")
        if not s.context and not s.yes:
            raise UsageError("refusing to run against a cluster whose context was not named: pass --context NAME "
                             "or --yes", where="--context")
        self.cluster = ClusterClient(ClusterTarget(s.kubeconfig, s.context), run_dir=s.output_dir / ".kube")
        self.server_version = self.cluster.ping().git_version
        from checks.kube import objects as K

        nodes = K.list_(self.cluster, "nodes")  # a read: retried through 429/5xx
        self.real_gpus = not any(((n.get("metadata") or {}).get("labels") or {}).get(EMULATED_GPUS_LABEL) == "true"
                                 for n in nodes)
        if not s.dry_run:
            self._take_lock()
            self._handle_leftovers()
        return self.cluster

    def _take_lock(self) -> None:
        from checks.kube.lease import LeaseSettings, RunLock

        self.lock = RunLock(self.cluster, self.settings.run_id, LeaseSettings(wait_s=self.settings.lock_timeout))
        self.lock.acquire()
        if self.lock.took_over:
            self.notes.append(f"took over the stale cluster lock of run {self.lock.took_over}")

    def _handle_leftovers(self) -> None:
        """Other runs' labelled objects: harmless ones are noted; ones holding devices stop the run (one line)
        unless ``--clean-leftovers``, which removes them first (forcing what cannot end gracefully)."""
        from checks.kube import labels

        left = labels.find_leftovers(self.cluster, self.settings.run_id)
        if not left:
            return
        holding = [lo for lo in left if lo.holding]
        if not self.settings.clean_leftovers:
            labels.refuse_leftovers(left)
        for lo in left:
            if holding and self.settings.clean_leftovers:
                report = labels.cleanup(self.cluster, lo.run_id, timeout=self.settings.timeout(180))
                self.notes.append(f"removed leftovers of run {lo.run_id}: {report.count} object(s), "
                                  f"{len(report.forced)} forced" + (f"; left: {'; '.join(report.left)}"
                                                                    if report.left else ""))
                sys.stderr.write(f"[dra-lab] {self.notes[-1]}\n")
            else:
                self.notes.append(f"leftovers of another run (not holding devices): {lo.line()}")

    def caps(self) -> C.Capabilities:
        return C.Capabilities(instance=self.instance, live=self.live, real_gpus=self.real_gpus,
                              allow_disruptive=self.settings.disruptive,
                              allow_internet=not self.settings.no_internet)

    def refresh_facts(self) -> None:
        from checks.kube import objects as K

        slices = K.list_(self.cluster, "resourceslices")
        gpu_nodes: set[str] = set()
        full = dyn = static = 0
        products: set[str] = set()
        archs: set[str] = set()
        cd = False
        for s in slices:
            spec = s.get("spec") or {}
            if spec.get("driver") == names.CD_DRIVER and spec.get("devices"):
                cd = True
            if spec.get("driver") != names.GPU_DRIVER:
                continue
            for d in spec.get("devices") or []:
                attrs = d.get("attributes") or {}
                typ = (attrs.get("type") or {}).get("string")
                if spec.get("nodeName"):
                    gpu_nodes.add(spec["nodeName"])
                products.add(str((attrs.get("productName") or {}).get("string", "")))
                archs.add(str((attrs.get("architecture") or {}).get("string", "")))
                if typ == "gpu":
                    full += 1
                elif typ == "mig":
                    if d.get("consumesCounters"):
                        dyn += 1
                    else:
                        static += 1
        self.live = C.SliceFacts(gpu_nodes=len(gpu_nodes), full_gpus=full, product_names=tuple(sorted(products)),
                                architectures=tuple(sorted(archs)), dynmig_devices=dyn, static_mig_devices=static,
                                compute_domain_driver=cd)

    # -- driver ------------------------------------------------------------------------------------------------
    def ensure_driver(self, cfg: DriverConfig) -> None:
        """Install ``cfg`` unless it is what is installed; a failed install is reported once (see below)."""
        if self.install.current == cfg:
            return
        if self.install.broken:
            pytest.skip(f"not run: the driver chart cannot be installed ({self.install.broken})")
        if cfg.key in self.install.failed:
            pytest.skip(f"not run: driver configuration '{cfg.key}' failed to install "
                        f"({self.install.failed[cfg.key]})")
        from checks.kube import helm
        from checks.kube import wait as W
        from checks.kube.client import ToolFailed
        from checks.scenarios.driverconfig import claim_namespace

        s = self.settings
        values = cfg.values(driver_root=s.driver_root, image_tag=s.image_tag)
        sys.stderr.write(f"\n[dra-lab] installing driver configuration '{cfg.key}' from {s.chart}\n")
        first = not self.install.attempted
        self.install.attempted = True  # from here on the namespace and release may exist, whatever happens next
        if first:
            self.install.created_namespace = claim_namespace(self.cluster, s.run_id)
        self.install.current = None
        try:
            helm.upgrade_install(self.cluster, RELEASE, s.chart, names.NAMESPACE, values,
                                 helm.InstallOptions(version=s.chart_version, adopt=s.adopt,
                                                     wait_timeout_s=s.timeout(180), wait_for_plugin=False))
        except ToolFailed as exc:
            # helm itself failed (chart not found, not pullable, rejected): every configuration would fail the
            # same way, so it is one failure here and a "not run" for the rest, not one error per check.
            self.install.broken = " ".join(str(exc).split())[:300]
            raise
        self.install.installs.append(cfg.key)
        # helm --wait is not enough (nvidia-dra-driver.md §14.2): wait for the plugin pods and their slices.
        # Wait for the DaemonSet rollout (new pods, not the old ones still Ready) and say why it stalls.
        try:
            helm.wait_plugin_ready(self.cluster, RELEASE, names.NAMESPACE, timeout=s.timeout(180),
                                   options=W.WaitOptions(on_timeout=lambda _state: self.plugin_state()))
            self._wait_slices(cfg)
        except W.WaitTimeout as exc:
            self.install.failed[cfg.key] = f"{exc.what} timed out"
            down = helm.not_ready_nodes(self.cluster)
            if down:  # the cluster, not this configuration: every other one would wait out the same timeout
                self.install.broken = f"{exc.what} timed out; " + "; ".join(down)
            raise
        self.install.current = cfg
        self.refresh_facts()

    def _wait_slices(self, cfg: DriverConfig) -> None:
        """Wait until every GPU node publishes gpu.nvidia.com slices matching the configuration."""
        from checks.kube import wait as W

        want_dyn = cfg.gate("DynamicMIG")

        def ready(state: W.State) -> bool:
            nodes = {(o.get("spec") or {}).get("nodeName") for o in state.values()}
            if not nodes or (None in nodes and len(nodes) == 1):
                return False
            pools: dict[str, list[W.Obj]] = {}
            for o in state.values():
                pools.setdefault(str(((o.get("spec") or {}).get("pool") or {}).get("name")), []).append(o)
            for members in pools.values():  # a pool half-way through (re)publication is not ready
                counts = {((m.get("spec") or {}).get("pool") or {}).get("resourceSliceCount") for m in members}
                if counts != {len(members)}:
                    return False
            if want_dyn and not any((o.get("spec") or {}).get("devices") for o in state.values()):
                return False
            if want_dyn and self.instance.gpu.mig_capable and self.instance.gpu.architecture != "Ampere":
                return any(d.get("consumesCounters") for o in state.values()
                           for d in (o.get("spec") or {}).get("devices") or [])
            if not want_dyn:
                return not any(d.get("consumesCounters") for o in state.values()
                               for d in (o.get("spec") or {}).get("devices") or [])
            return True

        source = W.source_for(self.cluster, "resourceslices", None, field_selector=f"spec.driver={names.GPU_DRIVER}")
        W.wait_until(source, ready, timeout=self.settings.timeout(120),
                     what=f"gpu.nvidia.com ResourceSlices for configuration '{cfg.key}'",
                     options=W.WaitOptions(on_timeout=lambda _state: self.plugin_state()))

    def plugin_state(self) -> str:
        """One line per kubelet-plugin container that is not running cleanly: restarts and its last log line.

        Turns "no slices appeared" into the reason, e.g. a gate rule the plugin printed before exiting.
        """
        from checks.kube import helm

        return (helm.plugin_pod_trouble(self.cluster, names.NAMESPACE, PLUGIN_SELECTOR)
                or "kubelet-plugin pods look healthy")

    def uninstall_driver(self) -> None:
        """Remove the release if this run started an install — also one interrupted half-way — and the driver
        namespace if this run created it."""
        if not self.install.attempted or self.settings.keep_driver:
            return
        from checks.kube import helm
        from checks.scenarios.driverconfig import remove_created_namespace

        try:
            helm.uninstall(self.cluster, RELEASE, names.NAMESPACE, timeout_s=self.settings.timeout(180))
            self.install.current = None
            self.install.attempted = False
            # The namespace goes if any dra-lab run created it (e.g. a killed one whose release this run reused).
            remove_created_namespace(self.cluster, timeout_s=self.settings.timeout(120))
        except Exception as exc:
            self.notes.append(f"driver uninstall failed: {' '.join(str(exc).split())[:300]}")

    # -- results -----------------------------------------------------------------------------------------------
    def result(self, nodeid: str) -> CheckResult:
        return self.results.setdefault(nodeid, CheckResult(nodeid))

    def write_results(self, exitstatus: int | str) -> Path:
        out = self.settings.output_dir
        out.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        for r in self.results.values():
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        doc = {
            "run_id": self.settings.run_id,
            "instance": self.instance.instance_type,
            "gpu": self.instance.gpu.model,
            "server_version": self.server_version,
            "emulated_gpus": not self.real_gpus,
            "chart": self.settings.chart,
            "chart_version": self.settings.chart_version,
            "driver_configs_installed": self.install.installs,
            "started": self.started,
            "finished": time.time(),
            "interrupted": self.interrupted,
            "exit_status": int(exitstatus),
            "counts": counts,
            "checks": [asdict(r) for r in self.results.values()],
            "notes": self.notes,
        }
        path = out / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        tmp.replace(path)
        return path


_SUITE_KEY = pytest.StashKey[Suite]()
_PREV_SIGTERM = pytest.StashKey[Any]()


def suite_of(config: pytest.Config) -> Suite:
    return config.stash[_SUITE_KEY]


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(**requirements): hardware/cluster capabilities the check needs")
    config.addinivalue_line("markers", "driver(config): the DriverConfig the check runs under")
    config.addinivalue_line("markers", "roadmap(*items): roadmap.md item numbers the check carries out (the coverage "
                                       "matrix of `dra-lab plan` counts them)")
    for tag, text in UPSTREAM_TAGS.items():
        config.addinivalue_line("markers", f"{tag}: {text}")
    try:
        settings = from_pytest(config)
        suite = Suite(config, settings)
    except UsageError as exc:
        raise pytest.UsageError(exc.one_line()) from None
    config.stash[_SUITE_KEY] = suite
    import threading

    if threading.current_thread() is threading.main_thread():
        config.stash[_PREV_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give SIGTERM back: the suite may run in-process inside a longer job (``dra-lab run``)."""
    prev = config.stash.get(_PREV_SIGTERM, None)
    if prev is not None:
        signal.signal(signal.SIGTERM, prev)


def needs_of(item: pytest.Item) -> C.Needs:
    merged: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("needs"))):
        merged.update(mark.kwargs)
    return C.Needs.from_marker_kwargs(merged)


def config_of(item: pytest.Item) -> DriverConfig:
    mark = item.get_closest_marker("driver")
    if mark is None or not mark.args:
        return for_instance(DEFAULT, suite_of(item.config).instance)
    cfg = mark.args[0]
    assert isinstance(cfg, DriverConfig), f"{item.nodeid}: @pytest.mark.driver needs a DriverConfig"
    return for_instance(cfg, suite_of(item.config).instance)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: the dry run lists what would really run or skip
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Group by driver configuration (default first), keeping file order inside a group.
    order = {id(it): i for i, it in enumerate(items)}
    base = for_instance(DEFAULT, suite_of(config).instance)
    items.sort(key=lambda it: (config_of(it) != base, config_of(it).key, order[id(it)]))
    suite = suite_of(config)
    if not suite.settings.dry_run:
        return
    caps = suite.caps()
    inst = suite.instance
    lines = [f"dra-lab plan for {inst.instance_type} ({inst.gpu.count}× {inst.gpu.model}), "
             f"run id {suite.settings.run_id}:"]
    configs: list[str] = []
    for it in items:
        cfg = config_of(it).key
        reason = C.why_not(needs_of(it), caps)
        if reason is None and cfg not in configs:
            configs.append(cfg)
        verdict = "run " if reason is None else "skip"
        live = " (final decision after reading the cluster's ResourceSlices)" if reason is None and \
            (needs_of(it).dynmig or needs_of(it).static_mig) else ""
        lines.append(f"  {verdict} {it.nodeid}  [driver: {cfg}]" + (f"  — {reason}" if reason else live))
    lines.append("driver configurations to install, in order: " + (", ".join(configs) or "none"))
    lines.append(f"chart: {suite.settings.chart}" + (f" version {suite.settings.chart_version}"
                                                      if suite.settings.chart_version else ""))
    sys.stdout.write("\n".join(lines) + "\n")
    config.hook.pytest_deselected(items=list(items))
    items[:] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    suite = suite_of(item.config)
    res = suite.result(item.nodeid)
    cfg = config_of(item)
    res.driver_config = cfg.key
    caps = suite.caps()
    if suite.install.current != cfg:
        # Live facts describe the configuration installed now, not the one this check gets (e.g. no DynamicMIG
        # partitions under the default configuration): decide from the instance alone here; the _dra_driver
        # fixture decides again with live facts once the check's configuration is installed.
        caps = dataclasses.replace(caps, live=C.SliceFacts())
    reason = C.why_not(needs_of(item), caps)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def dra_suite(request: pytest.FixtureRequest) -> Iterator[Suite]:
    """The session: opens the cluster; at the end uninstalls the driver and sweeps labelled leftovers."""
    suite = suite_of(request.config)
    try:
        suite.open_cluster()
    except UsageError as exc:
        pytest.exit(exc.one_line(), returncode=2)
    except Exception as exc:  # the cluster failed us before any check: one line, not one error per check
        suite.interrupted = True
        _final_cleanup(suite)
        pytest.exit(f"cannot start the run on the cluster: {' '.join(str(exc).split())[:300]}", returncode=1)
    try:
        yield suite
    finally:
        _final_cleanup(suite)


def _final_cleanup(suite: Suite) -> None:
    from checks.kube import labels

    if suite.cluster is None:
        return
    try:
        report = labels.cleanup(suite.cluster, suite.settings.run_id, timeout=suite.settings.timeout(180))
        if report.errors or report.left:
            suite.notes.append("cleanup incomplete: " + "; ".join(report.errors + report.left))
    except Exception as exc:
        suite.notes.append(f"final cleanup failed: {exc}")
    suite.uninstall_driver()
    if suite.lock is not None:
        if suite.lock.lost:
            suite.notes.append(suite.lock.lost)
        suite.lock.release()


@pytest.fixture(autouse=True)
def _dra_driver(request: pytest.FixtureRequest, dra_suite: Suite) -> None:
    """Install the check's driver configuration (once per distinct one) and apply live-fact skips."""
    cfg = config_of(request.node)
    try:
        dra_suite.ensure_driver(cfg)
    except UsageError as exc:  # e.g. a release dra-lab did not install: nothing else can run either
        pytest.exit(exc.one_line(), returncode=2)
    reason = C.why_not(needs_of(request.node), dra_suite.caps())
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def ctx(request: pytest.FixtureRequest, dra_suite: Suite) -> Generator[CheckContext, None, None]:
    """A namespace of the check's own, labelled with the run id; deleted afterwards whatever happened."""
    from checks.kube import labels
    from checks.kube import objects as K
    from checks.kube import wait as W

    s = dra_suite.settings
    check = request.node.name
    ns = labels.namespace_name(s.run_id, check)
    lab = labels.labels_for(s.run_id, check)
    K.create(dra_suite.cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": lab}})
    c = CheckContext.for_check(dra_suite.cluster, s, ns, lab)
    request.node.stash[_CTX_KEY] = c
    try:
        yield c
    finally:
        dra_suite.result(request.node.nodeid).data.update(c.record)
        try:
            K.delete(dra_suite.cluster, "namespaces", ns)
            W.wait_deleted(dra_suite.cluster, "namespaces", ns, timeout=s.timeout(120))
        except Exception as exc:
            dra_suite.notes.append(f"namespace {ns} not deleted in time: {exc}")


_CTX_KEY = pytest.StashKey[CheckContext]()


@pytest.fixture
def suite(dra_suite: Suite) -> Suite:
    """The session object, for checks that need instance facts or the driver configuration."""
    return dra_suite


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    suite = suite_of(item.config)
    res = suite.result(item.nodeid)
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        res.outcome = rep.outcome
        res.duration_s = round(res.duration_s + rep.duration, 3)
        if rep.skipped and isinstance(rep.longrepr, tuple):
            res.skip_reason = str(rep.longrepr[2]).removeprefix("Skipped: ")
    elif rep.when == "setup":
        res.duration_s = round(rep.duration, 3)
    if rep.failed:
        res.outcome = "failed" if rep.when == "call" else "error"
        res.error = _short_error(rep)
        path = _collect_artifacts(item, suite)
        if path:
            res.artifacts = str(path)
            # junitxml writes properties from the teardown report, which copies item.user_properties.
            item.user_properties.append(("artifacts", str(path)))


def _short_error(rep: pytest.TestReport) -> str:
    text = str(getattr(rep, "longreprtext", "") or rep.longrepr or "")
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return "\n".join(ln[2:].strip() for ln in lines[:20]) or text[-2000:]


def _collect_artifacts(item: pytest.Item, suite: Suite) -> Path | None:
    if suite.cluster is None:
        return None
    from checks.kube import artifacts

    c = item.stash.get(_CTX_KEY, None)
    # A failure before the check's namespace existed (typically installing its driver configuration) still
    # gets evidence: the driver namespace's pods, events and logs, and the slices.
    namespace = c.namespace if c is not None else names.NAMESPACE
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item.nodeid)[-120:]
    out = suite.settings.output_dir / "artifacts" / safe
    try:
        artifacts.collect(suite.cluster, namespace, out, driver_namespace=names.NAMESPACE)
    except Exception as exc:
        out.mkdir(parents=True, exist_ok=True)
        (out / "collect-error.txt").write_text(f"artifact collection failed: {exc}\n")
    return out


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int | str) -> None:
    suite = suite_of(session.config)
    if int(exitstatus) == int(pytest.ExitCode.INTERRUPTED):
        suite.interrupted = True
        # Teardown of the session fixture normally ran; if it did not (interrupt during setup), sweep now.
        _final_cleanup(suite)
    if suite.settings.dry_run:
        return
    path = suite.write_results(exitstatus)
    sys.stderr.write(f"[dra-lab] results: {path}\n")
