"""``dra-lab twin up --driver [--chart] [--set]`` (issue 11 item 6): one command to a twin with the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from checks.cli.twin import parse_gates, parse_set
from checks.kube.binaries import find_tool


def test_parse_set_reads_scalars_like_helm() -> None:
    assert parse_set("logVerbosity=6") == ("logVerbosity", 6)
    assert parse_set("featureGates.DynamicMIG=true") == ("featureGates.DynamicMIG", True)
    assert parse_set("image.tag=v1.2") == ("image.tag", "v1.2")
    assert parse_set("a=") == ("a", "")


def test_parse_gates() -> None:
    assert parse_gates("DRAExtendedResource=true, DRAPartitionableDevices=False") == (
        ("DRAExtendedResource", True), ("DRAPartitionableDevices", False))
    assert parse_gates("") == ()


def test_set_without_driver_and_bad_set_are_usage_errors() -> None:
    dra_lab = str(Path(sys.executable).parent / "dra-lab")
    for args, why in ((["--set", "a=1"], "--chart and --set only apply with --driver"),
                      (["--driver", "--set", "novalue"], "is not KEY=VALUE"),
                      (["--instance", "gpu_1x_a100_sxm4", "--mig-enabled", "3"], "GPU index 3 out of range"),
                      (["--feature-gates", "DRAExtendedResource"], "is not NAME=true|false"),
                      (["--feature-gates", "Bogus=true"], "unknown DRA feature gate 'Bogus'")):
        r = subprocess.run([dra_lab, "twin", "up", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_twin_up_with_driver_installs_the_chart(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dra-lab"), "twin", "up", "--instance", "gpu_1x_a10",
         "--kubeconfig", str(kc), "--driver", "--set", "logVerbosity=6"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the process exits; the install line comes before "press Ctrl-C"
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        out = "".join(lines)
        assert "driver installed: release dra-lab-driver in dra-driver-nvidia-gpu" in out, out
        kubectl = str(find_tool("kubectl").path)
        pods = json.loads(subprocess.run(
            [kubectl, "--kubeconfig", str(kc), "get", "pods", "-n", "dra-driver-nvidia-gpu", "-o", "json"],
            capture_output=True, text=True, timeout=30, check=True).stdout)["items"]
        plugin = [p for p in pods if "kubelet-plugin" in p["metadata"]["name"]]
        assert plugin and all(c["ready"] for p in plugin for c in p["status"]["containerStatuses"])
        env = {e["name"]: e.get("value") for c in plugin[0]["spec"]["containers"] for e in c.get("env") or []}
        assert env.get("LOG_VERBOSITY") == "6"  # the --set value reached the chart
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang is a bug; do not leave it running
            proc.kill()
            pytest.fail("dra-lab twin up did not stop on SIGTERM")
    assert proc.returncode == 0
