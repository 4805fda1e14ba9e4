"""Every registered notebook executed through papermill against twins, with small parameters (CI runs these).

- dynmig_fragmentation on an A100-40GB twin (the runner boots it with MIG mode on GPU 0): over capacity and
  fragmentation observed, and the oracle agreeing on every step;
- stress_timing against a twin given by kubeconfig (the real-cluster code path): N×M samples, and neither the
  twin's token nor any other kubeconfig credential in any output file;
- imex_channels on this host (honest about a missing GPU), and a failing cell: executed notebook kept,
  non-zero exit with one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from checks.cli import main
from checks.lab import secrets as S
from checks.lab.notebook_run import LabRequest, run_notebook
from checks.twin.lambda_twin import Twin

pytestmark = pytest.mark.timeout(240)


def _outputs(result_dir: Path) -> set[str]:
    return {p.name for p in result_dir.iterdir()}


def test_dynmig_notebook_on_a100_twin_matches_the_oracle(tmp_path: Path) -> None:
    res = run_notebook(LabRequest("dynmig_fragmentation", "gpu_1x_a100_sxm4", {"timeout_s": 60.0},
                                  outputs=tmp_path))
    assert res.ok, res.error
    assert res.output_dir == (tmp_path / "gpu_1x_a100_sxm4" / "dynmig_fragmentation" / res.run_id).resolve()
    assert {"dynmig_fragmentation.ipynb", "results.json", "steps.csv", "occupancy.png"} <= _outputs(res.output_dir)
    m = res.results["metrics"]
    assert m["gpu"] == "A100-SXM4-40GB" and m["small_profile"] == "1g.5gb" and m["large_profile"] == "3g.20gb"
    assert m["over_capacity_predicted"] and m["over_capacity_observed"]
    assert m["fragmentation_predicted"] and m["fragmentation_observed"] and m["fragmentation_capacity_ok"]
    assert m["fill_allocated"] == 7 and m["disagreements"] == 0 and m["oracle_agrees"]
    steps = res.results["steps"]
    assert [s["observed"] for s in steps if s["phase"] == "fill"] == ["allocated"] * 7 + ["pending"]
    last = steps[-1]
    assert last["phase"] == "release" and last["observed_placement"] == last["predicted_placement"] != ""
    assert res.results["run"]["target"].startswith("twin of gpu_1x_a100_sxm4")
    nb = json.loads((res.output_dir / "dynmig_fragmentation.ipynb").read_text())
    images = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the occupancy map is shown in the executed notebook"


def test_stress_notebook_via_kubeconfig_records_every_sample_and_leaks_no_secret(
        twin_factory: Callable[..., Twin], tmp_path: Path) -> None:
    twin = twin_factory("gpu_1x_a10")  # its run dir (with the kubeconfig) is under tmp_path: outputs go apart
    outputs = tmp_path / "outputs"
    secrets = S.kubeconfig_secrets(twin.kubeconfig)
    token = str(yaml.safe_load(twin.kubeconfig.read_text())["users"][0]["user"]["token"])
    assert token in secrets
    from checks.twin.nvidia import chart_path

    res = run_notebook(LabRequest("stress_timing", "gpu_1x_a10",
                                  {"pods": 3, "iterations": 2, "timeout_s": 60.0, "chart": str(chart_path())},
                                  kubeconfig=twin.kubeconfig, outputs=outputs))
    assert res.ok, res.error
    assert {"stress_timing.ipynb", "results.json", "pods.csv", "latency.csv", "comparison.csv",
            "latency_cdf.png", "timeline.png"} <= _outputs(res.output_dir)
    m = res.results["metrics"]
    assert m["samples"] == m["expected_samples"] == 6 and m["uuid_problems"] == 0
    assert m["total_p50_s"] is not None and m["total_max_s"] >= m["total_p50_s"]
    for path in outputs.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            assert token not in text and token[:24] not in text, path
    assert S.scan(outputs, secrets) == []
    assert str(twin.kubeconfig) in json.dumps(res.results["run"]["parameters"])  # the path, not the content

    again = run_notebook(LabRequest("stress_timing", "gpu_1x_a10",
                                    {"pods": 2, "iterations": 1, "timeout_s": 60.0, "chart": str(chart_path())},
                                    kubeconfig=twin.kubeconfig, outputs=outputs))
    assert again.ok, again.error
    compared = (again.output_dir / "comparison.csv").read_text()
    assert res.run_id in compared, "the second run compares itself with the first"


def test_imex_notebook_reports_this_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["lab", "run", "imex_channels", "--instance", "gpu_1x_h100_sxm5", "--outputs", str(tmp_path)])
    assert "imex_channels on gpu_1x_h100_sxm5 passed" in capsys.readouterr().out
    (result,) = tmp_path.glob("gpu_1x_h100_sxm5/imex_channels/*/results.json")
    data = json.loads(result.read_text())
    assert data["run"]["status"] == "passed"
    if not data["nvidia_driver"]:
        assert data["verdict"] and data["reason"], "no GPU here: the notebook must say so"


def test_failing_cell_keeps_the_executed_notebook_and_exits_1(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lab", "run", "imex_channels", "--instance", "gpu_1x_a10", "--outputs", str(tmp_path),
              "-p", f"probe_json={tmp_path / 'missing.json'}"])
    assert exc.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dra-lab lab:")]
    assert len(err) == 1 and "FileNotFoundError" in err[0] and "imex_channels.ipynb" in err[0]
    (executed,) = tmp_path.glob("gpu_1x_a10/imex_channels/*/imex_channels.ipynb")
    nb = json.loads(executed.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "FileNotFoundError"
    results = json.loads((executed.parent / "results.json").read_text())
    assert results["run"]["status"] == "failed" and "FileNotFoundError" in results["run"]["error"]


def test_dynmig_notebook_on_a_gpu_without_mig_says_not_applicable(tmp_path: Path) -> None:
    res = run_notebook(LabRequest("dynmig_fragmentation", "gpu_1x_a10", {}, outputs=tmp_path))
    assert res.ok, res.error
    assert res.results["metrics"] == {"applicable": False} and res.results["steps"] == []
    nb = (res.output_dir / "dynmig_fragmentation.ipynb").read_text()
    assert "NOT APPLICABLE" in nb
