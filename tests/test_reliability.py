"""No run breaks the next (issue 14), end to end against a twin used as a real cluster would be.

The twin is started here and handed to the real CLI (a subprocess) as a kubeconfig; the runs are interrupted
with real signals at the moments the issue names, and what is left is read back with the official client and
the real helm:

- Ctrl-C during the driver install leaves no release and no namespace the run created;
- a SIGKILLed stress run whose GPU plugin then goes away: ``dra-lab clean`` still finishes, forcing only the
  pods that can never end, removes the dead run's lock, and a fresh run passes afterwards;
- the next run after a SIGKILL refuses in one line naming the leftovers, and ``--clean-leftovers`` runs;
- two runs at once: the second refuses naming the first's run id, or waits with ``--lock-timeout`` and passes;
- the run lock itself on the twin's real API: conditional writes, release, takeover of a stale lease.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.driver import names
from checks.kube import objects as K
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.labels import RUN_ID_LABEL
from checks.kube.lease import LOCK_NAME, LOCK_NAMESPACE, LeaseSettings, LockHeld, RunLock
from checks.kube.wait import source_for, wait_until
from checks.scenarios.driverconfig import RELEASE
from checks.twin.lambda_twin import Twin
from checks.twin.nvidia import chart_path

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from checks.cli import main; main(sys.argv[1:])", *args]


def dra_lab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def check_args(kubeconfig: Path, out: Path, *extra: str) -> list[str]:
    return ["check", "--kubeconfig", str(kubeconfig), "--yes", "--instance", "gpu_1x_h100_sxm5",
            "--chart", str(chart_path()), "--output", str(out), *extra]


@pytest.fixture
def h100(twin_factory: Callable[..., Twin]) -> Iterator[tuple[Twin, ClusterClient]]:
    twin = twin_factory("gpu_1x_h100_sxm5")
    with ClusterClient(ClusterTarget(twin.kubeconfig)) as cluster:
        yield twin, cluster


def labelled(cluster: ClusterClient) -> list[str]:
    out = []
    for plural in ("pods", "resourceclaims", "namespaces"):
        out += [f"{plural}/{o['metadata']['name']}" for o in K.list_(cluster, plural, label_selector=RUN_ID_LABEL)]
    return out


def releases(cluster: ClusterClient) -> list[str]:
    proc = cluster.helm("list", "--all-namespaces", "--output", "json", timeout=60)
    return [str(r["name"]) for r in json.loads(proc.stdout or "[]")]


def wait_exists(cluster: ClusterClient, plural: str, namespace: str | None, name: str) -> None:
    """Watch until the object exists: the moment a run reached a given step."""
    wait_until(source_for(cluster, plural, namespace, field_selector=f"metadata.name={name}"), bool, timeout=120,
               what=f"{plural} {name} to exist")


def test_ctrl_c_during_driver_install_leaves_no_release(h100: tuple[Twin, ClusterClient], tmp_path: Path) -> None:
    twin, cluster = h100
    proc = subprocess.Popen(_argv(*check_args(twin.kubeconfig, tmp_path / "out", "-k", "stress")), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_exists(cluster, "namespaces", None, names.NAMESPACE)  # the run creates it, then helm installs into it
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=180)
    assert releases(cluster) == [], "the interrupted install's release is still there"
    assert K.try_get(cluster, "namespaces", names.NAMESPACE) is None or \
        K.get(cluster, "namespaces", names.NAMESPACE)["metadata"].get("deletionTimestamp")
    assert labelled(cluster) == []
    assert K.try_get(cluster, "leases", LOCK_NAME, LOCK_NAMESPACE) is None
    assert json.loads((tmp_path / "out" / "results.json").read_text())["interrupted"] is True


def _kill_during_stress(twin: Twin, cluster: ClusterClient, out: Path) -> str:
    """Start a stress run, SIGKILL it once its pods hold the shared claim; return its run id."""
    proc = subprocess.Popen(_argv(*check_args(twin.kubeconfig, out, "-k", "stress", "--stress-pods", "6")),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        state = wait_until(source_for(cluster, "pods", None, label_selector=RUN_ID_LABEL),
                           lambda s: any((p.get("status") or {}).get("phase") == "Running" for p in s.values()),
                           timeout=120, what="a stress pod Running")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    (pod,) = list(state.values())[:1]
    return str(pod["metadata"]["labels"][RUN_ID_LABEL])


def test_clean_after_sigkill_with_the_plugin_gone_finishes_and_the_next_run_passes(
        h100: tuple[Twin, ClusterClient], tmp_path: Path) -> None:
    twin, cluster = h100
    killed = _kill_during_stress(twin, cluster, tmp_path / "killed")
    # The plugin goes away with the release: the killed run's pods can no longer be unprepared (they would stay
    # Terminating forever on a real node too; issue 14 saw `dra-lab clean` time out on them).
    cluster.helm("uninstall", RELEASE, "--namespace", names.NAMESPACE, "--wait", timeout=120)
    t0 = time.monotonic()
    proc = dra_lab("clean", "--twin-kubeconfig", str(twin.kubeconfig), "--run-id", killed, "--release",
                   "--timeout", "60")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "forced (grace period 0)" in proc.stdout and "no GPU kubelet plugin" in proc.stdout, proc.stdout
    assert f"stale lock lease {LOCK_NAMESPACE}/{LOCK_NAME} of run {killed}" in proc.stdout, proc.stdout
    assert took < 60 and labelled(cluster) == [] and releases(cluster) == []
    again = dra_lab(*check_args(twin.kubeconfig, tmp_path / "again", "-k", "stress", "--stress-pods", "4"))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert labelled(cluster) == [] and releases(cluster) == []


def test_next_run_refuses_leftovers_in_one_line_and_cleans_them_when_asked(
        h100: tuple[Twin, ClusterClient], tmp_path: Path) -> None:
    twin, cluster = h100
    killed = _kill_during_stress(twin, cluster, tmp_path / "killed")
    refused = dra_lab(*check_args(twin.kubeconfig, tmp_path / "refused", "-k", "stress"), timeout=60)
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-2000:]
    assert killed in lines[0] and "hold devices" in lines[0] and "--clean-leftovers" in lines[0]
    ok = dra_lab(*check_args(twin.kubeconfig, tmp_path / "ok", "-k", "stress", "--stress-pods", "4",
                             "--clean-leftovers"))
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    notes = json.loads((tmp_path / "ok" / "results.json").read_text())["notes"]
    assert any(f"removed leftovers of run {killed}" in n for n in notes), notes
    assert labelled(cluster) == [] and releases(cluster) == []
    assert K.try_get(cluster, "namespaces", names.NAMESPACE) is None or \
        K.get(cluster, "namespaces", names.NAMESPACE)["metadata"].get("deletionTimestamp")


def test_two_runs_at_once_one_refuses_naming_the_other_one_waits(
        h100: tuple[Twin, ClusterClient], tmp_path: Path) -> None:
    twin, cluster = h100
    first = subprocess.Popen(_argv(*check_args(twin.kubeconfig, tmp_path / "first", "-k", "stress",
                                               "--stress-iterations", "3", "--run-id", "r20261203-000001-aaaa")),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_exists(cluster, "leases", LOCK_NAMESPACE, LOCK_NAME)
    second = dra_lab(*check_args(twin.kubeconfig, tmp_path / "second", "-k", "stress"), timeout=60)
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert second.returncode == 2 and len(lines) == 1 and "r20261203-000001-aaaa" in lines[0], second.stderr
    waiting = dra_lab(*check_args(twin.kubeconfig, tmp_path / "third", "-k", "stress", "--stress-pods", "3",
                                  "--lock-timeout", "180"))
    first.communicate(timeout=180)
    assert first.returncode == 0
    assert waiting.returncode == 0, waiting.stdout[-3000:] + waiting.stderr[-2000:]
    assert labelled(cluster) == [] and releases(cluster) == []


def test_run_lock_on_the_api(h100: tuple[Twin, ClusterClient]) -> None:
    _twin, cluster = h100
    a = RunLock(cluster, "r20261203-000001-aaaa")
    a.acquire()
    b = RunLock(cluster, "r20261203-000002-bbbb")
    with pytest.raises(LockHeld, match="r20261203-000001-aaaa"):
        b.acquire()
    assert a.renew()
    a.release()
    assert K.try_get(cluster, "leases", LOCK_NAME, LOCK_NAMESPACE) is None
    b.acquire()
    # A holder that stopped renewing: seen from a clock 2 lease durations later, its lease is stale.
    later = datetime.now(UTC) + timedelta(seconds=2 * b.settings.duration_s)
    b._stop.set()  # b stops renewing (as a SIGKILLed run would), without releasing
    c = RunLock(cluster, "r20261203-000003-cccc", LeaseSettings(wall=lambda: later))
    lease: Any = K.get(cluster, "leases", LOCK_NAME, LOCK_NAMESPACE)
    lease["metadata"]["annotations"] = {}  # not this host's dead process: only the expiry can free it
    K.request(cluster, "PUT", K.resource_for("leases").path(LOCK_NAMESPACE, LOCK_NAME), body=lease)
    c.acquire()
    assert c.took_over == "r20261203-000002-bbbb"
    assert not b.renew() and "r20261203-000003-cccc" in b.lost
    c.release()


def test_chart_that_cannot_be_pulled_is_one_failure_at_install(h100: tuple[Twin, ClusterClient],
                                                                tmp_path: Path) -> None:
    """Issue 14 item 6: one error (helm's own line) and every other check 'not run', not one error per check."""
    twin, cluster = h100
    proc = dra_lab("check", "--kubeconfig", str(twin.kubeconfig), "--yes", "--instance", "gpu_1x_h100_sxm5",
                   "--chart", "oci://127.0.0.1:9/nowhere/chart", "--output", str(tmp_path / "out"), "-q")
    assert proc.returncode == 1, proc.stdout[-2000:]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    bad = [c for c in doc["checks"] if c["outcome"] in ("error", "failed")]
    assert len(bad) == 1 and "helm upgrade" in bad[0]["error"], bad
    not_run = [c for c in doc["checks"] if c["skip_reason"].startswith("not run: the driver chart cannot be installed")]
    assert len(not_run) >= 20
    assert releases(cluster) == [] and labelled(cluster) == []
    assert K.try_get(cluster, "namespaces", names.NAMESPACE) is None or \
        K.get(cluster, "namespaces", names.NAMESPACE)["metadata"].get("deletionTimestamp")


def test_a_twin_run_leaves_no_kubeconfig_or_token_under_its_outputs(tmp_path: Path) -> None:
    """Issue 14 item 6: the twin's folder (kubeconfig with its bearer token) lives outside the outputs."""
    out = tmp_path / "out"
    proc = dra_lab("check", "--twin", "gpu_1x_a10", "-m", "not_feasible", "--output", str(out), "-q")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.name == "kubeconfig" or "token:" in p.read_text(errors="replace")]
