"""The real kubectl against a running twin: `run`, `wait`, `logs` and `logs -f` of a real container process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from checks.kube.client import ClusterClient, ClusterTarget
from checks.twin.lambda_twin import Twin

# Prints three lines a little apart, then exits 0: `logs -f` must stream them and end when the container ends.
SCRIPT = "for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo done"


def test_kubectl_logs_and_follow(twin: Twin, tmp_path: Path) -> None:
    with ClusterClient(ClusterTarget(twin.kubeconfig), run_dir=tmp_path / "kube") as cl:
        cl.kubectl("create", "namespace", "logs-f")
        cl.kubectl("run", "talker", "-n", "logs-f", "--image=ubuntu:24.04", "--restart=Never", "--",
                   "bash", "-c", SCRIPT)
        cl.kubectl("wait", "-n", "logs-f", "--for=condition=Ready", "pod/talker", "--timeout=30s")
        follow: subprocess.CompletedProcess[str] = cl.kubectl("logs", "-f", "-n", "logs-f", "talker", timeout=60)
        assert follow.stdout.splitlines() == ["line-1", "line-2", "line-3", "done"]
        cl.kubectl("wait", "-n", "logs-f", "--for=jsonpath={.status.phase}=Succeeded", "pod/talker",
                   "--timeout=30s")
        tail = cl.kubectl("logs", "-n", "logs-f", "talker", "--tail=1", "--timestamps")
        stamp, text = tail.stdout.strip().split(" ", 1)
        assert text == "done" and stamp.endswith("Z") and "T" in stamp
        cl.kubectl("delete", "namespace", "logs-f", "--wait=true", "--timeout=60s")
