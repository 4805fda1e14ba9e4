"""Every bad input of issue 14 (item 6) is one line on stderr and exit 2, within 10 s, through the real CLI.

Each row is a command a new user could type; the test runs it as a subprocess (as people do) and asserts the
exit code, that stderr is exactly one non-empty line containing the expected words, that no traceback or
pytest block appears, and the wall time. Rows that need a live cluster use the session's twin; the "cluster
in use" and "leftovers" rows set that state up on it first (a lease held by another run; a labelled pod of a
killed run holding a claim) and remove it afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.kube import objects as K
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.labels import labels_for, namespace_name
from checks.kube.lease import LOCK_NAME, LOCK_NAMESPACE
from checks.twin.lambda_twin import Twin

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 10.0
"""Issue 14: one line and exit 2 within 10 s."""
OTHER_RUN = "r20261203-010203-dead"
"""The run id of a run that is 'still running' (lease) or was killed (leftovers)."""


def dra_lab(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "import sys; from checks.cli import main; main(sys.argv[1:])",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    return proc, time.monotonic() - t0


@dataclass(frozen=True)
class Case:
    """One bad input."""

    name: str
    """Row id."""
    args: Callable[[Path, Path], list[str]]
    """Command line from (a scratch folder, the twin's kubeconfig)."""
    says: tuple[str, ...]
    """Words the one line must contain."""
    setup: Callable[[ClusterClient], Callable[[], None]] | None = None
    """Puts state on the twin; returns how to remove it."""


def _garbage(tmp: Path) -> str:
    p = tmp / "garbage.yaml"
    p.write_text("apiVersion: v1\nclusters: [ {name: x\n  - : : :\n\tusers: {")
    return str(p)


def _unreachable(tmp: Path) -> str:
    """A well-formed kubeconfig whose server is a closed local port (connection refused at once)."""
    p = tmp / "unreachable.yaml"
    p.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:9", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}]}))
    return str(p)


def _a_file(tmp: Path) -> Path:
    f = tmp / "plain-file"
    f.write_text("not a folder\n")
    return f


def _lock_held(cluster: ClusterClient) -> Callable[[], None]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    K.create(cluster, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": LOCK_NAME, "namespace": LOCK_NAMESPACE},
                       "spec": {"holderIdentity": OTHER_RUN, "leaseDurationSeconds": 300, "acquireTime": now,
                                "renewTime": now}}, LOCK_NAMESPACE)
    return lambda: K.delete(cluster, "leases", LOCK_NAME, LOCK_NAMESPACE)


def _leftovers(cluster: ClusterClient) -> Callable[[], None]:
    """What a SIGKILLed stress run leaves: its namespace, a claim and a pod using it (all labelled)."""
    ns = namespace_name(OTHER_RUN, "test_shared_claim_many_pods")
    lab = labels_for(OTHER_RUN, "test_shared_claim_many_pods")
    K.create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": lab}})
    K.create(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stress-pod-1", "labels": lab},
                       "spec": {"containers": [{"name": "c", "image": "ubuntu:24.04",
                                                "resources": {"claims": [{"name": "gpu"}]}}],
                                "resourceClaims": [{"name": "gpu", "resourceClaimName": "rc-shared-gpu"}],
                                "nodeSelector": {"dra-lab.io/nowhere": "true"}}}, ns)

    def undo() -> None:
        K.delete(cluster, "pods", "stress-pod-1", ns, grace_period_s=0)
        K.delete(cluster, "namespaces", ns)

    return undo


CASES = [
    Case("garbage-yaml-kubeconfig", lambda t, _k: ["check", "--kubeconfig", _garbage(t), "--yes"],
         ("not valid YAML",)),
    Case("unreachable-server", lambda t, _k: ["check", "--kubeconfig", _unreachable(t), "--yes"],
         ("cannot reach the API server",)),
    Case("wrong-context", lambda _t, k: ["check", "--kubeconfig", str(k), "--context", "no-such-context"],
         ("no context 'no-such-context'",)),
    Case("missing-context", lambda _t, k: ["check", "--kubeconfig", str(k)], ("--context", "--yes")),
    Case("clean-unreachable-server", lambda t, _k: ["clean", "--kubeconfig", _unreachable(t), "--yes"],
         ("cannot reach the API server",)),
    Case("outputs-under-a-file", lambda t, _k: ["run", "--outputs", str(_a_file(t) / "out")],
         ("--outputs", "a file, not a folder")),
    Case("check-output-under-a-file", lambda t, _k: ["check", "--output", str(_a_file(t) / "x" / "y")],
         ("--output", "a file, not a folder")),
    Case("unknown-marker", lambda _t, _k: ["check", "-m", "no_such_marker"], ("unknown marker 'no_such_marker'",)),
    Case("broken-marker-expression", lambda _t, _k: ["check", "-m", "stress and ("], ("not a marker expression",)),
    Case("cluster-in-use", lambda _t, k: ["check", "--kubeconfig", str(k), "--yes"],
         ("in use by dra-lab run", OTHER_RUN), setup=_lock_held),
    Case("leftovers-holding-devices", lambda _t, k: ["check", "--kubeconfig", str(k), "--yes"],
         ("leftovers of earlier runs hold devices", OTHER_RUN, "--clean-leftovers"), setup=_leftovers),
]


@pytest.fixture(scope="module")
def cluster(twin: Twin) -> Iterator[ClusterClient]:
    with ClusterClient(ClusterTarget(twin.kubeconfig)) as c:
        yield c


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_exit_2_within_10s(case: Case, twin: Twin, cluster: ClusterClient,
                                                     tmp_path: Path) -> None:
    undo = case.setup(cluster) if case.setup is not None else None
    try:
        proc, took = dra_lab(*case.args(tmp_path, twin.kubeconfig))
    finally:
        if undo is not None:
            undo()
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr[-3000:]
    assert all(w in lines[0] for w in case.says), lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr and "!!!" not in proc.stdout
    assert took < LIMIT_S, f"{took:.1f}s"
    assert not (tmp_path / "out").exists()


def test_no_case_started_a_twin_or_left_state(cluster: ClusterClient) -> None:
    """The rows that set state up removed it (the session twin is shared with other tests)."""
    assert K.try_get(cluster, "leases", LOCK_NAME, LOCK_NAMESPACE) is None
    left: list[Any] = K.list_(cluster, "namespaces", label_selector=f"dra-lab.io/run-id={OTHER_RUN}")
    assert all((ns.get("metadata") or {}).get("deletionTimestamp") for ns in left)
