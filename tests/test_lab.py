"""The lab layer without a kernel: parameter validation (exit 2, one line), report aggregation, secret scan,
percentiles, the DynMIG plan."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from checks.cli import main
from checks.errors import UsageError
from checks.lab import secrets as S
from checks.lab.params import NOTEBOOKS, instance_facts, notebook, parse_overrides, validate
from checks.lab.report import build_report, load_runs
from checks.mig import Placement, fits, gpu
from checks.scenarios.dynmig import Experiment, _Held, make_plan
from checks.scenarios.readers import MigDevice
from checks.scenarios.stress import percentile, stats


def _exit_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    return int(exc.value.code or 0), err


@pytest.mark.parametrize("argv,expect", [
    (["-p", "podz=3"], "unknown parameter 'podz'"),
    (["-p", "pods=many"], "parameter pods of stress_timing"),
    (["-p", "pods=0"], "greater than or equal to 1"),
    (["-p", "iterations=1.5"], "parameter iterations"),
    (["-p", "uninstall=yes please"], "parameter uninstall"),
    (["-p", "novalue"], "expected name=value"),
])
def test_bad_parameters_exit_2_with_one_line(argv: list[str], expect: str, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, err = _exit_line(["lab", "run", "stress_timing", "--instance", "gpu_1x_a10", "--outputs",
                            str(tmp_path), *argv], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not list(tmp_path.iterdir()), "nothing may be created before validation passes"


def test_unknown_notebook_and_instance_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _exit_line(["lab", "run", "nope", "--instance", "gpu_1x_a10", "--outputs", str(tmp_path)], capsys)
    assert code == 2 and "unknown notebook 'nope'" in err and "stress_timing" in err
    code, err = _exit_line(["lab", "run", "stress_timing", "--instance", "gpu_9x_z", "--outputs", str(tmp_path)],
                           capsys)
    assert code == 2 and len(err.splitlines()) == 1


def test_facts_fill_only_declared_parameters_and_overrides_win() -> None:
    from checks.catalog import load_instance

    facts = instance_facts(load_instance("gpu_8x_a100"))
    imex = validate(notebook("imex_channels"), facts, {})
    assert imex["instance_type"] == "gpu_8x_a100" and "gpu_model" not in imex
    dyn = validate(notebook("dynmig_fragmentation"), facts, parse_overrides(["keep=[1, 5]", "gpu_index=3"]))
    assert dyn["gpu_count"] == 8 and dyn["keep"] == [1, 5] and dyn["gpu_index"] == 3
    assert dyn["gpu_model"] == load_instance("gpu_8x_a100").gpu.model
    with pytest.raises(UsageError, match="valid list") as exc:
        validate(notebook("dynmig_fragmentation"), facts, {"keep": "1,5"})
    assert exc.value.where == "parameter keep of dynmig_fragmentation"


def test_every_registered_notebook_declares_its_schema_in_its_parameters_cell() -> None:
    """The notebook's parameters cell names exactly the schema's fields (papermill injects by name)."""
    for spec in NOTEBOOKS.values():
        nb = json.loads(spec.path.read_text())
        cells = [c for c in nb["cells"] if "parameters" in (c.get("metadata") or {}).get("tags", [])]
        assert len(cells) == 1, spec.name
        names = {line.split(":")[0].split("=")[0].strip() for line in "".join(cells[0]["source"]).splitlines()
                 if line.strip() and not line.startswith("#")}
        assert names == set(spec.schema.model_fields), spec.name


def test_parse_overrides_yaml_scalars() -> None:
    assert parse_overrides(["a=10", "b=true", "c=1.5", "d=text", "e=", "f=[1, 5]"]) == \
        {"a": 10, "b": True, "c": 1.5, "d": "text", "e": "", "f": [1, 5]}


def test_secret_scan_finds_and_redacts_token_and_prefix(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    token = "tok-" + "a1b2c3d4" * 6
    kc.write_text(f"users:\n- name: u\n  user:\n    token: {token}\nclusters:\n- name: c\n  cluster:\n"
                  f"    certificate-authority-data: {'Q' * 40}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "clean.ipynb").write_text('{"cells": []}')
    (out / "leak.ipynb").write_text(json.dumps({"text": f"Authorization: Bearer {token[:30]}..."}))
    secrets = S.kubeconfig_secrets(kc)
    assert token in secrets
    assert S.scan(out, secrets) == [out / "leak.ipynb"]
    S.redact(out / "leak.ipynb", secrets)
    assert S.scan(out, secrets) == []
    assert S.env_secrets({"LAMBDA_API_KEY": "secret-value-1", "HOME": "/root-directory"}) == ["secret-value-1"]


def test_percentiles_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert (percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), percentile(xs, 100)) == (50, 90, 99, 100)
    assert percentile([], 50) is None and percentile([3.0], 99) == 3.0
    table = stats([{"total": 1.0, "created_to_scheduled": None}, {"total": 3.0}])
    assert table["total"]["count"] == 2 and table["total"]["max"] == 3.0
    assert table["created_to_scheduled"]["p50"] is None


def test_dynmig_plan_defaults_come_from_the_oracle() -> None:
    geo = gpu("NVIDIA A100-SXM4-40GB")
    plan = make_plan(geo)
    assert (plan.small, plan.large, plan.fill_count) == ("1g.5gb", "3g.20gb", 8)
    kept = [Placement(plan.small, s) for s in plan.keep]
    assert fits(geo, plan.large, kept).kind == "fragmentation"
    assert make_plan(geo, keep=[1, 5]).keep == (1, 5)
    with pytest.raises(UsageError):
        make_plan(geo, large="9g.99gb")


def _write(root: Path, inst: str, nb: str, rid: str, doc: dict[str, object]) -> None:
    d = root / inst / nb / rid
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(doc))


def test_report_aggregates_runs_across_instances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def stress(p50: float, status: str = "passed") -> dict[str, object]:
        return {"run": {"status": status, "duration_s": 5.0, "started": "2026-11-26T18:00:00+00:00"},
                "metrics": {"total_p50_s": p50, "total_p90_s": p50 * 2, "total_p99_s": p50 * 3,
                            "total_max_s": p50 * 4, "samples": 20}}
    _write(tmp_path, "gpu_1x_a10", "stress_timing", "r20261126-100000-aaaa", stress(1.0))
    _write(tmp_path, "gpu_1x_a10", "stress_timing", "r20261126-110000-bbbb", stress(2.0, "failed"))
    _write(tmp_path, "gpu_8x_a100", "stress_timing", "r20261126-100000-cccc", stress(4.0))
    _write(tmp_path, "gpu_8x_a100", "dynmig_fragmentation", "r20261126-100000-cccc",
           {"run": {"status": "passed"}, "metrics": {"agreements": 11, "disagreements": 0, "gpu": "A100"}})
    _write(tmp_path, "gpu_8x_a100", "checks", "r20261126-100000-cccc",
           {"exit_status": 0, "started": 1.0e9, "finished": 1.0e9 + 30, "counts": {"passed": 3, "skipped": 2},
            "checks": [{"nodeid": "test_upgrade.py::t", "data": {"timings": {"upgrade_helm_s": 1.5,
                                                                               "leader_failover_s": 16.2}}},
                       {"nodeid": "test_basics.py::t", "data": {"chart": "x"}}]})
    df = load_runs(tmp_path)
    assert len(df) == 5
    assert set(df["instance"]) == {"gpu_1x_a10", "gpu_8x_a100"}
    a10 = df[(df["instance"] == "gpu_1x_a10")].sort_values("run_id")
    assert list(a10["status"]) == ["passed", "failed"] and list(a10["metric.total_p50_s"]) == [1.0, 2.0]
    suite = df[df["notebook"] == "checks"].iloc[0]
    assert suite["status"] == "passed" and suite["duration_s"] == 30 and suite["metric.checks_skipped"] == 2
    assert suite["metric.upgrade_helm_s"] == 1.5 and suite["metric.leader_failover_s"] == 16.2

    main(["lab", "report", "--outputs", str(tmp_path)])
    assert "5 run(s)" in capsys.readouterr().out
    rep = tmp_path / "report"
    csv = pd.read_csv(rep / "runs.csv")
    assert len(csv) == 5
    md = (rep / "report.md").read_text()
    assert "r20261126-110000-bbbb" in md and "stress_timing: metrics" in md
    for png in ("runs_by_status.png", "stress_latency.png", "dynmig_agreement.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # the report folder is not itself aggregated on a second run
    assert len(build_report(tmp_path).files) >= 4 and build_report(tmp_path).runs == 5


@pytest.mark.parametrize("name", ["NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3", "NVIDIA B200"])
def test_dynmig_release_frees_blockers_in_order_until_the_large_profile_fits(name: str) -> None:
    """Freeing every blocker at once races (the first deallocation decides where the waiting request lands);
    the release step frees them in start order and stops as soon as the oracle places the request."""
    geo = gpu(name)
    plan = make_plan(geo)
    parent = MigDevice("gpu-0-mig-x", 0, plan.small, 0, "GPU-x", name, "n", "n")
    ex = Experiment(None, geo, parent, timeout_s=1)  # type: ignore[arg-type]  # no cluster needed to choose
    blockers = [_Held(f"b{s}", plan.small, Placement(plan.small, s)) for s in plan.keep]
    ex.predicted = [h.placement for h in blockers if h.placement is not None]
    freed = ex._until_fits(blockers, plan.large)
    assert [h.placement.start for h in freed if h.placement] == [plan.keep[0]]
    left = [p for p in ex.predicted if p.start not in {h.placement.start for h in freed if h.placement}]
    assert fits(geo, plan.large, left).fits
    # Nothing to free that helps: everything is released.
    ex.predicted = [Placement(plan.small, s) for s in range(geo.max_gpu_instances)]
    held = [_Held(f"s{s}", plan.small, Placement(plan.small, s)) for s in (1, 2)]
    assert ex._until_fits(held, plan.large) == held
