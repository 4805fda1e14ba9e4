"""The twin node's own nvidia-smi (static MIG): exact listings against the observed H100, and the MIG life cycle
the upstream static-MIG helpers drive (enable, create 1g with its compute instance, list, tear down)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from checks.catalog import load_instance
from checks.twin.nvidia import host_smi, mig_state
from checks.twin.nvidia.hardware import virtual_gpus

# shared/ lies beside the checkout (as for CI); the other probe tests read the same file.
OBSERVED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "observed" / "h100x1-probe.txt"


def state(tmp_path: Path, instance: str = "gpu_1x_h100_sxm5") -> str:
    p = tmp_path / "mig-state.json"
    p.write_text(json.dumps(mig_state.initial_state(virtual_gpus(load_instance(instance)))))
    return str(p)


def smi(path: str, cmd: str) -> tuple[int, str]:
    return host_smi.run(cmd.split(), path)


def observed(section: str) -> str:
    if not OBSERVED.exists():
        pytest.skip(f"{OBSERVED} not present")
    m = re.search(rf"== {re.escape(section)} (.*?)\n\n", OBSERVED.read_text(), re.S)
    assert m, f"section {section!r} missing from {OBSERVED}"
    return m.group(1) + "\n"


def test_listings_match_observed_h100(tmp_path: Path) -> None:
    p = state(tmp_path)
    for section, cmd in (("mig -lgip", "mig -lgip"), ("mig -lgipp", "mig -lgipp")):
        assert smi(p, cmd) == (0, observed(section)), section
    assert smi(p, "mig -lgi") == (0, "No MIG-enabled devices found.\n")
    assert smi(p, "-i 7 mig -lgip") == (6, "No devices were found\n")


def test_mig_life_cycle(tmp_path: Path) -> None:
    p = state(tmp_path)
    assert smi(p, "--query-gpu=index,mig.mode.current --format=csv") == (0, "index, mig.mode.current\n0, Disabled\n")
    assert smi(p, "-i 0 -mig 1")[1].startswith("Enabled MIG Mode for GPU 00000000:00:06.0")
    code, out = smi(p, "mig -cgi 1g.10gb -C")
    assert code == 0 and "Successfully created GPU instance ID" in out and "compute instance ID  0" in out, out
    assert "7/7" not in smi(p, "mig -lgip")[1] and " 6/7 " in smi(p, "mig -lgip")[1]
    assert re.search(r"MIG 1g\.10gb\s+Device  0: \(UUID: MIG-", smi(p, "-L")[1])
    assert "1g.10gb" in smi(p, "mig -lgi")[1]
    code, out = smi(p, "-mig 0")
    assert code == 6 and "In use by another client" in out  # GIs exist
    assert "Successfully destroyed compute instance" in smi(p, "mig -dci")[1]
    assert "Successfully destroyed GPU instance" in smi(p, "mig -dgi")[1]
    assert smi(p, "-mig 0")[0] == 0
    assert "0, Disabled" in smi(p, "--query-gpu=index,mig.mode.current --format=csv")[1]


def test_ampere_mode_change_stays_pending(tmp_path: Path) -> None:
    p = state(tmp_path, "gpu_1x_a100_sxm4")
    assert "pending enable state" in smi(p, "-i 0 -mig 1")[1]
    assert "0, Disabled" in smi(p, "--query-gpu=index,mig.mode.current --format=csv")[1]


def test_plugin_view_follows_state(tmp_path: Path) -> None:
    p = state(tmp_path)
    smi(p, "-i 0 -mig 1")
    smi(p, "mig -cgi 1g.10gb -C")
    gpus = mig_state.apply(virtual_gpus(load_instance("gpu_1x_h100_sxm5")), Path(p))
    assert gpus[0].mig_enabled and [m.profile for m in gpus[0].static_mig] == ["1g.10gb"]
    assert gpus[0].static_mig[0].uuid.startswith("MIG-")


def test_texts_verified_on_a_real_h200_with_mig_off(tmp_path: Path) -> None:
    """Outputs captured on a real H200 (driver 580.159.04, MIG disabled): the same texts and exit codes."""
    p = state(tmp_path)
    for cmd in ("mig -lgi", "mig -lci", "mig -dci", "mig -dgi", "mig -cgi 1g.10gb -C", "mig -i 0 -lgi"):
        assert smi(p, cmd) == (0, "No MIG-enabled devices found.\n"), cmd
    assert smi(p, "--query-gpu=index,mig.mode.current --format=csv,noheader") == (0, "0, Disabled\n")
    assert smi(p, "--query-gpu=index,foo --format=csv") == (2, 'Field "foo" is not a valid field to query.\n\n')
    assert smi(p, "mig -x") == (2, 'Option "-x" is not recognized.\n')
    assert smi(p, "--version")[1].splitlines()[-1] == "CUDA Version        : 13.0"
