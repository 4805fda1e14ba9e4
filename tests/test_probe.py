"""Host probe: report round trip, real H100/H200 fixtures vs the MIG oracle and vs reference/observed, procfs, CLI."""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from checks.host import HostReport, compare_with_oracle, probe, procfs
from checks.host.report import NvmlPlacement

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "probe"
OBSERVED = REPO.parent / "shared" / "reference" / "observed"
HOSTS = sorted(p.stem for p in FIXTURES.glob("h100x*.json"))


def _oracle() -> Callable[[str], Any]:
    mig = importlib.import_module("checks.mig")
    lookup = getattr(mig, "gpu", None)
    return lookup if lookup is not None else importlib.import_module("checks.mig.geometry").gpu


def load(host: str) -> HostReport:
    return HostReport.from_json((FIXTURES / f"{host}.json").read_text())


def test_fixtures_for_one_and_two_gpu_hosts_exist() -> None:
    assert {"h100x1", "h100x2"} <= set(HOSTS)


@pytest.mark.parametrize("host", HOSTS)
def test_fixture_parses_and_round_trips(host: str) -> None:
    report = load(host)
    assert report.nvidia_driver
    again = HostReport.from_json(report.to_json())
    assert again == report
    assert json.loads(again.to_json()) == json.loads(report.to_json())


def test_from_json_names_the_bad_field() -> None:
    data = json.loads((FIXTURES / "h100x1.json").read_text())
    bad = copy.deepcopy(data)
    bad["gpus"][0]["minor"] = "zero"
    with pytest.raises(ValueError, match=r"\$\.gpus\[0\]\.minor"):
        HostReport.from_dict(bad)
    extra = copy.deepcopy(data)
    extra["imex"]["surprise"] = 1
    with pytest.raises(ValueError, match=r"unknown field.*surprise"):
        HostReport.from_dict(extra)


@pytest.mark.parametrize("host", HOSTS)
def test_oracle_h100_table_equals_what_nvml_reported(host: str) -> None:
    report = load(host)
    assert report.gpus and all(g.name == "NVIDIA H100 80GB HBM3" for g in report.gpus)
    assert compare_with_oracle(report, _oracle()) == []
    # The comparison is not vacuous: every oracle profile was matched against an NVML answer with placements.
    geometry = _oracle()(report.gpus[0].name)
    for gpu in report.gpus:
        assert {p.name for p in gpu.mig_profiles} == {p.name for p in geometry.profiles}
        assert all(p.placements for p in gpu.mig_profiles)


def test_oracle_h200_table_equals_what_nvml_reported_on_a_cloud_h200() -> None:
    """A real 1x H200 cloud VM (device machine, driver 580.159.04): every profile, placement, SM and engine count
    of the oracle matches NVML, and the sizes that drifted are the documented alternatives."""
    report = load("h200x1")
    (gpu,) = report.gpus
    assert gpu.name == "NVIDIA H200" and not gpu.mig_mode_current
    assert compare_with_oracle(report, _oracle()) == []
    geometry = _oracle()(gpu.name)
    assert {p.name for p in gpu.mig_profiles} == {p.name for p in geometry.profiles}
    assert all(p.placements for p in gpu.mig_profiles)
    seven = next(p for p in geometry.profiles if p.name == "7g.141gb")
    assert seven.memory_mib == 143360 and not seven.memory_estimated


def test_oracle_comparison_reports_each_kind_of_difference() -> None:
    report = load("h100x1")
    gpu = report.gpus[0]
    by_name = {p.name: p for p in gpu.mig_profiles}
    by_name["3g.40gb"].sms = 48  # the wrong value go-nvml's mock uses (reference §5.1)
    by_name["1g.20gb"].placements = [NvmlPlacement(0, 2), NvmlPlacement(2, 2)]
    by_name["7g.80gb"].placements = None
    by_name["7g.80gb"].placements_error = "not_supported"
    gpu.mig_profiles.remove(by_name["4g.40gb"])
    found = {(m.profile, m.field) for m in compare_with_oracle(report, _oracle())}
    assert found == {
        ("3g.40gb", "sms"),
        ("1g.20gb", "placement starts"),
        ("7g.80gb", "placements"),
        ("4g.40gb", "profile"),
    }


def test_oracle_memory_accepts_documented_drift_only() -> None:
    oracle = _oracle()
    report = load("h100x1")
    geometry = oracle(report.gpus[0].name)
    profile = next(p for p in report.gpus[0].mig_profiles if p.name == "1g.10gb")
    want = next(p for p in geometry.profiles if p.name == "1g.10gb")
    for alternative in want.memory_mib_alternatives:
        profile.memory_mib = alternative
        assert compare_with_oracle(report, oracle) == []
    profile.memory_mib = want.memory_mib + 1000
    assert [m.field for m in compare_with_oracle(report, oracle)] == ["memory_mib"]


def test_unknown_gpu_is_a_mismatch_not_a_skip() -> None:
    report = load("h100x1")
    report.gpus[0].name = "NVIDIA Imaginary 1TB"
    [mismatch] = compare_with_oracle(report, _oracle())
    assert mismatch.field == "oracle lookup" and mismatch.profile == "*"


# --- agreement with reference/observed (what the real hosts reported earlier) -----------------------------

needs_observed = pytest.mark.skipif(not OBSERVED.is_dir(), reason="../shared/reference/observed not present")


def _observed(name: str) -> str:
    return (OBSERVED / name).read_text()


@needs_observed
@pytest.mark.parametrize(("host", "observed"), [("h100x1", "h100x1-probe.txt"), ("h100x2", "h100x2-fabric-probe.txt")])
def test_fixture_agrees_with_observed_host_facts(host: str, observed: str) -> None:
    text = _observed(observed)
    report = load(host)
    names = dict(re.findall(r"GPU (\d+): (.+?) \(UUID", text))  # nvidia-smi -L (nvlink -s repeats the lines)
    assert [g.name for g in report.gpus] == [names[k] for k in sorted(names, key=int)]
    major = int(re.search(r"(\d+) nvidia-caps-imex-channels", text).group(1))  # type: ignore[union-attr]
    assert report.imex.channels_major == major
    assert "cannot access '/dev/nvidia-caps-imex-channels'" in text
    assert not report.imex.channel_dir_exists and report.imex.channel_nodes == 0
    count = re.search(r"ImexChannelCount: (\d+)", text)
    create = re.search(r"CreateImexChannel0: (\d+)", text)
    assert count and create
    assert (report.imex.imex_channel_count, report.imex.create_imex_channel0) == (int(count[1]), int(create[1]))


@needs_observed
def test_driver_version_agrees_with_observed() -> None:
    observed = re.search(r"NVRM version: .*?Kernel Module for \S+\s+(\S+)", _observed("h100x1-probe.txt"))
    assert observed is not None
    for host in HOSTS:
        assert load(host).driver_version == observed.group(1)


@needs_observed
def test_fabric_state_agrees_with_observed() -> None:
    text = _observed("h100x2-fabric-probe.txt")
    states = re.findall(
        r"State\s+:\s+(\S+)\s+Status\s+:\s+(\S+)\s+CliqueId\s+:\s+(\d+)\s+ClusterUUID\s+:\s+(\S+)", text
    )
    report = load("h100x2")
    got = [(f.state, f.status, f.clique_id, f.cluster_uuid) for f in (g.fabric for g in report.gpus) if f]
    assert got == [(s.lower(), st.upper(), int(c), u) for s, st, c, u in states]
    # topo -m reported NV18 between the two GPUs: 18 active links each, P2P over NVLink works.
    assert "NV18" in text
    assert [g.active_nvlinks for g in report.gpus] == [18, 18]
    assert report.pairs[0].nvlink_p2p == "ok" and report.pairs[0].via_switch  # links end at NVSwitches
    # x1: no NVLink and no fabric (nvidia-smi shows Fabric N/A; NVML says NOT_SUPPORTED).
    x1 = load("h100x1").gpus[0]
    assert x1.active_nvlinks == 0 and x1.fabric is not None and x1.fabric.state == "not_supported"


# --- procfs against a host-shaped tree ---------------------------------------------------------------------

def _host_tree(root: Path, *, channels: int = 0, major: int | None = 242) -> Path:
    (root / "proc/driver/nvidia/capabilities").mkdir(parents=True)
    devices = "Character devices:\n  1 mem\n195 nvidia\n241 nvidia-caps\n"
    if major is not None:
        devices += f"{major} nvidia-caps-imex-channels\n"
    devices += "\nBlock devices:\n  7 loop\n242 not-a-char-device\n"
    (root / "proc/devices").write_text(devices)
    (root / "proc/driver/nvidia/params").write_text('ImexChannelCount: 2048\nCreateImexChannel0: 0\nRmMsg: ""\n')
    (root / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (x@)\n")
    (root / "proc/driver/nvidia/capabilities/fabric-imex-mgmt").write_text("")
    if channels:
        chan = root / "dev/nvidia-caps-imex-channels"
        chan.mkdir(parents=True)
        for i in range(channels):
            (chan / f"channel{i}").write_text("")
    return root


def test_procfs_reads_imex_facts(tmp_path: Path) -> None:
    root = _host_tree(tmp_path, channels=12)
    imex = procfs.imex_facts(root)
    assert imex.channels_major == 242
    assert imex.nvidia_char_majors == {"nvidia": 195, "nvidia-caps": 241, "nvidia-caps-imex-channels": 242}
    assert (imex.imex_channel_count, imex.create_imex_channel0) == (2048, 0)
    assert imex.fabric_imex_mgmt_cap and imex.channel_dir_exists
    assert imex.channel_nodes == 12
    assert imex.channel_nodes_sample[:3] == ["channel0", "channel1", "channel2"]  # numeric, not lexical order
    assert not imex.channel0_is_char_device  # a regular file is not a channel
    assert procfs.driver_version_from_proc(root) == "580.159.04"


def test_procfs_sysfs_params_fallback_and_missing_major(tmp_path: Path) -> None:
    root = _host_tree(tmp_path, major=None)
    (root / "proc/driver/nvidia/params").unlink()
    sysdir = root / "sys/module/nvidia/parameters"
    sysdir.mkdir(parents=True)
    (sysdir / "NVreg_CreateImexChannel0").write_text("1\n")
    imex = procfs.imex_facts(root)
    assert imex.channels_major is None
    assert imex.create_imex_channel0 == 1 and imex.params_source == "/sys/module/nvidia/parameters"


def test_procfs_finds_daemons_by_process_unit_and_binary(tmp_path: Path) -> None:
    (tmp_path / "proc/4242").mkdir(parents=True)
    (tmp_path / "proc/4242/comm").write_text("nv-fabricmanage\n")  # comm is cut at 15 characters
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/nvidia-imex.service").write_text("[Unit]\n")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/nvidia-imex").write_text("")
    found = {d.name: d for d in procfs.daemons(tmp_path)}
    fm, imexd = found["nvidia-fabricmanager"], found["nvidia-imex"]
    assert fm.running and fm.present and not fm.unit_files
    assert not imexd.running and imexd.unit_files == ["/lib/systemd/system/nvidia-imex.service"]
    assert imexd.binary == "/usr/bin/nvidia-imex"


# --- this machine has no NVIDIA driver ----------------------------------------------------------------------

def test_probe_without_driver_is_a_clear_result(tmp_path: Path) -> None:
    report = probe(xid_wait_s=0, root=_host_tree(tmp_path))
    if report.nvidia_driver:
        pytest.skip("this machine has an NVIDIA driver")
    assert report.reason.startswith("no NVIDIA driver")
    assert report.gpus == [] and report.imex.channels_major == 242  # /proc facts still read
    assert HostReport.from_json(report.to_json()) == report


def test_host_package_needs_only_stdlib_and_pynvml() -> None:
    code = ("import sys, checks.host, checks.host.__main__; "
            "bad = sorted(m for m in ('pydantic', 'click', 'yaml', 'kubernetes', 'checks.mig') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checks", "probe", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_cli_json_and_summary() -> None:
    proc = _cli("--json", "--xid-wait", "0")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= {"nvidia_driver", "reason", "gpus", "imex"}
    summary = _cli("--from", str(FIXTURES / "h100x2.json"))
    assert summary.returncode == 0, summary.stderr
    assert "MIG oracle: NVML profiles, ids, placements, SMs and memory agree" in summary.stdout
    assert "IMEX verdict: degraded" in summary.stdout


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"nvidia_driver": "maybe"}')
    for args in (["--from", str(broken)], ["--xid-wait", "-1"], ["--from", str(tmp_path / "missing.json")]):
        proc = _cli(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("dra-lab: "), proc.stderr
