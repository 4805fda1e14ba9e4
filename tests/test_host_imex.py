"""IMEX verdict against the real H100 fixtures and against the CD plugin's rules (reference §11.4-§11.5)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from checks.host import HostReport, create_channel0, imex_verdict
from checks.host.imex import DEGRADED, NO, NO_DRIVER, YES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "probe"


def load(host: str) -> HostReport:
    return HostReport.from_json((FIXTURES / f"{host}.json").read_text())


def test_one_gpu_h100_falls_back_to_no_clique_because_fabric_is_not_supported() -> None:
    verdict = imex_verdict(load("h100x1"))
    assert verdict.answer == DEGRADED and not verdict.can_run
    fabric = next(f for f in verdict.findings if f.topic == "fabric")
    assert "fabric state NOT_SUPPORTED" in fabric.detail
    assert verdict.mknod_command == "mkdir -p /dev/nvidia-caps-imex-channels && mknod -m 666 " \
                                    "/dev/nvidia-caps-imex-channels/channel0 c 242 0"
    assert any("NVreg_CreateImexChannel0=1" in step for step in verdict.next_steps)
    assert "No IMEX channel device on this host" in verdict.conclusion


def test_two_gpu_h100_falls_back_to_no_clique_because_cluster_uuid_is_zero() -> None:
    verdict = imex_verdict(load("h100x2"))
    assert verdict.answer == DEGRADED
    fabric = next(f for f in verdict.findings if f.topic == "fabric")
    assert "cluster UUID all zeros" in fabric.detail and "GPU 1" in fabric.detail
    assert next(f for f in verdict.findings if f.topic == "nvlink").ok


def test_missing_major_means_the_plugin_cannot_start() -> None:
    report = load("h100x2")
    report.imex.channels_major = None
    verdict = imex_verdict(report)
    assert verdict.answer == NO and verdict.mknod_command is None
    assert "nvidia-caps-imex-channels" in next(f for f in verdict.findings if f.topic == "imex-major").detail


@pytest.mark.parametrize(("field", "value"), [("state", "in_progress"), ("status", "ERROR_UNKNOWN")])
def test_incomplete_fabric_registration_makes_the_strict_plugin_refuse(field: str, value: str) -> None:
    report = load("h100x2")
    fabric = report.gpus[1].fabric
    assert fabric is not None
    setattr(fabric, field, value)
    assert imex_verdict(report).answer == NO


def test_a_real_clique_means_channel_injection_works() -> None:
    report = load("h100x2")
    for gpu in report.gpus:
        assert gpu.fabric is not None
        gpu.fabric.cluster_uuid = "5f0e1d2c-0000-4000-8000-00000000abcd"
        gpu.fabric.clique_id = 7
    verdict = imex_verdict(report)
    assert verdict.answer == YES and verdict.can_run
    # GPUs that disagree on the clique make the plugin refuse to start.
    assert report.gpus[1].fabric is not None
    report.gpus[1].fabric.clique_id = 8
    assert imex_verdict(report).answer == NO


def test_existing_channel0_needs_no_step() -> None:
    report = load("h100x1")
    report.imex.channel_dir_exists = True
    report.imex.channel0_is_char_device = True
    report.imex.channel0_major = 242
    report.imex.channel_nodes = 1
    verdict = imex_verdict(report)
    assert verdict.mknod_command is None
    assert "exists" in next(f for f in verdict.findings if f.topic == "channel-node").detail
    assert create_channel0(report, allow_changes=True).startswith("nothing to do")


def test_no_driver_verdict() -> None:
    verdict = imex_verdict(HostReport(nvidia_driver=False, reason="no NVIDIA driver: test"))
    assert verdict.answer == NO_DRIVER and "no NVIDIA driver: test" in verdict.summary


def test_create_channel0_changes_nothing_without_permission(tmp_path: Path) -> None:
    message = create_channel0(load("h100x1"), allow_changes=False, root=str(tmp_path))
    assert message.startswith("not changed") and "c 242 0" in message
    assert list(tmp_path.iterdir()) == []


def test_module_param_attempt_only_with_permission(tmp_path: Path) -> None:
    """Roadmap item 10's next step: without allow_changes nothing is written or run; with it the modprobe.d file
    is written and a reload refused while the GPUs are in use is reported as 'needs a reboot'."""
    from checks.host import try_create_channel0_param

    report = load("h100x1")
    ran: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str]) -> tuple[int, str]:
        ran.append(tuple(argv))
        return 1, "modprobe: FATAL: Module nvidia is in use."

    dry = try_create_channel0_param(report, allow_changes=False, root=str(tmp_path), run=runner)
    assert not dry.attempted and not ran and not (tmp_path / "etc").exists()
    assert "NVreg_CreateImexChannel0=1" in dry.summary
    done = try_create_channel0_param(report, allow_changes=True, root=str(tmp_path), run=runner)
    assert done.attempted and not done.reloaded and ran == [("modprobe", "-r", "nvidia_uvm", "nvidia_drm",
                                                             "nvidia_modeset", "nvidia")]
    assert "options nvidia NVreg_CreateImexChannel0=1" in (tmp_path / "etc/modprobe.d/dra-lab-imex.conf").read_text()
    assert "reboot" in done.summary and done.channels_after == 0
