"""The IMEX notebook runs end to end under papermill here (no GPU), and the committed real-host samples agree
with reference/observed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "imex_channels.ipynb"
SAMPLES = REPO / "notebooks" / "samples"
FIXTURES = REPO / "tests" / "fixtures" / "probe"
OBSERVED = REPO.parent / "shared" / "reference" / "observed"


def _run(tmp_path: Path, **params: object) -> tuple[dict[str, object], str]:
    out_nb = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out_nb), parameters={"output_dir": str(tmp_path), **params},
                        cwd=str(NOTEBOOK.parent), progress_bar=False, kernel_name="python3")
    return json.loads((tmp_path / "results.json").read_text()), _outputs(out_nb)


def _outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_notebook_reports_no_driver_honestly(tmp_path: Path) -> None:
    from checks.host import probe

    if probe(xid_wait_s=0).nvidia_driver:
        pytest.skip("this machine has an NVIDIA driver")
    results, text = _run(tmp_path, instance_type="gpu_1x_h100_sxm5")
    assert results["nvidia_driver"] is False and results["verdict"] == "no-driver"
    assert "NO NVIDIA DRIVER" in text and "Can single-node compute-domain checks run here? NO-DRIVER" in text
    assert results["action"] == "nothing to do: no driver"


def test_notebook_reads_a_saved_probe(tmp_path: Path) -> None:
    results, text = _run(tmp_path, probe_json=str(FIXTURES / "h100x2.json"), instance_type="gpu_2x_h100_sxm5")
    assert results["verdict"] == "degraded" and results["imex_major"] == 242
    assert results["allow_changes"] is False and str(results["action"]).startswith("not changed")
    assert "mknod -m 666 /dev/nvidia-caps-imex-channels/channel0 c 242 0" in text


def test_notebook_rejects_a_wrongly_typed_parameter(tmp_path: Path) -> None:
    with pytest.raises(pm.PapermillExecutionError, match="UsageError"):
        _run(tmp_path, allow_changes="yes")


@pytest.mark.parametrize("host", ["h100x1", "h100x2"])
def test_real_host_samples_state_the_observed_facts(host: str) -> None:
    sample = SAMPLES / f"imex_channels-{host}.ipynb"
    text = _outputs(sample)
    assert "source: live probe of this host" in text
    assert "driver 580.159.04" in text
    assert "nvidia-caps-imex-channels major in /proc/devices: 242" in text
    assert "/dev/nvidia-caps-imex-channels: ABSENT" in text
    assert "CreateImexChannel0=0, ImexChannelCount=2048" in text
    assert "Can single-node compute-domain checks run here? DEGRADED" in text
    if host == "h100x2":
        assert text.count("state completed, status SUCCESS, clique 0, cluster UUID "
                          "00000000-0000-0000-0000-000000000000") == 2
    if OBSERVED.is_dir():
        observed = "".join(p.read_text() for p in OBSERVED.glob(f"{host}*.txt"))
        assert re.search(r"242 nvidia-caps-imex-channels", observed)
        assert "CreateImexChannel0: 0" in observed
