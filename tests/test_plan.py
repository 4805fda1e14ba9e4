"""``dra-lab plan``: coverage matrix, cost-optimal plans and Prow jobs, derived from the collected checks.

The acceptance list of the coverage-plan issue: the matrix comes from the suite's own collection and selection
rule (compared with ``dra-lab check --dry-run``), the roadmap's §4.4 choices are derived from prices (a price
change changes the choice), the generated Prow jobs pass the job-config schema, and the nightly job's command
line selects exactly the planned checks.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.catalog import Instance, all_instances
from checks.cli import main
from checks.plan import cost as C
from checks.plan import prow as PR
from checks.plan.durations import Durations, Sample
from checks.plan.goals import SCHEDULES, USE_CASES, parse_goal
from checks.plan.inventory import CheckInfo, collect_checks
from checks.plan.matrix import Matrix
from checks.plan.prowschema import problems

ROOT = Path(__file__).resolve().parents[1]
ROADMAP_ITEMS = set(range(1, 15))
"""roadmap.md's 14 prioritized items. Its "not feasible" list names scenarios, not items: every item is feasible."""
PROW_ITEMS = {5: "nightly", 11: "weekly"}
"""Items that are Prow jobs rather than checks: the job generator carries them out."""


def dra_lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from checks.cli import main; main(sys.argv[1:])",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def dry_run_selection(args: list[str], out: Path) -> tuple[set[str], set[str]]:
    """(run, skip) node-id suffixes ``dra-lab <args> --dry-run`` prints."""
    proc = dra_lab(*args, "--dry-run", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^  (run |skip) (\S+)", proc.stdout, re.M)
    assert lines, proc.stdout
    return ({n.rsplit("/", 1)[-1] for v, n in lines if v == "run "},
            {n.rsplit("/", 1)[-1] for v, n in lines if v == "skip"})


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    return Matrix.build(None)


def _priced(instances: list[Instance], **prices: float) -> list[Instance]:
    return [i.model_copy(update={"price_usd_per_hour": prices[i.instance_type]}) if i.instance_type in prices else i
            for i in instances]


def _with(matrix: Matrix, *, instances: list[Instance] | None = None, extra: tuple[CheckInfo, ...] = ()) -> Matrix:
    return Matrix([*matrix.checks, *extra], instances or matrix.instances, Durations())


CD_CHECK = CheckInfo("checks/suite/test_synthetic.py::test_needs_compute_domains", frozenset({"compute_domains"}),
                     {"compute_domains": True})
"""A check declaring compute-domain needs, so the derivation is tested whether or not such checks have landed."""


# -- matrix ------------------------------------------------------------------------------------------------------
def test_matrix_is_every_collected_check_times_every_instance_type(matrix: Matrix) -> None:
    assert len(matrix.instances) == 15
    assert [c.nodeid for c in matrix.checks] == [c.nodeid for c in collect_checks()]
    assert len(matrix.checks) >= 30 and len(matrix.cells) == len(matrix.checks) * 15
    for (nodeid, inst), cell in matrix.cells.items():
        assert cell.runs != bool(cell.reason), (nodeid, inst, cell)
        assert not cell.runs or (cell.duration is not None and cell.duration.seconds > 0)
    infeasible = [c for c in matrix.checks if c.needs.get("not_feasible")]
    assert infeasible and {c.nodeid for c in infeasible} <= {c.nodeid for c, _ in matrix.unrunnable()}
    for c, why in matrix.unrunnable():
        assert why.startswith("not feasible on Lambda"), (c.nodeid, why)


@pytest.mark.parametrize("instance", ["gpu_1x_a10", "gpu_8x_a100"])
def test_matrix_decides_as_the_suites_dry_run(matrix: Matrix, instance: str, tmp_path: Path) -> None:
    """The same rule as ``dra-lab check``: the dry run's run/skip split equals the matrix column."""
    run, skip = dry_run_selection(["check", "--instance", instance, "--disruptive"], tmp_path)
    assert run == {c.name for c in matrix.checks if matrix.cell(c, instance).runs}
    assert skip == {c.name for c in matrix.checks if not matrix.cell(c, instance).runs}


def test_matrix_formats(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    main(["plan", "matrix", "--format", "csv", "--outputs", "/nonexistent"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(matrix.checks) * 15
    assert {r["verdict"] for r in rows} == {"run", "skip"}
    assert all(r["reason"] for r in rows if r["verdict"] == "skip")
    assert {r["duration_source"] for r in rows if r["verdict"] == "run"} == {"estimate"}
    main(["plan", "matrix", "--format", "json", "--outputs", "/nonexistent"])
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["instances"]) == 15 and len(doc["cells"]) == len(rows)
    main(["plan", "matrix"])
    md = capsys.readouterr().out
    assert md.startswith("| check | 1x_a10 |") and "No Lambda instance type can run:" in md
    assert "test_two_pods_two_claims on gpu_1x_a10" in md and "needs 2 GPUs; gpu_1x_a10 has 1" in md


def test_measured_durations_replace_estimates(tmp_path: Path, matrix: Matrix) -> None:
    check = next(c for c in matrix.checks if c.function == "test_one_pod_one_full_gpu")
    for inst, real, secs in (("gpu_1x_a10", True, 41.0), ("gpu_1x_a10", True, 45.0), ("gpu_1x_h100_sxm5", False, 3.0)):
        run = tmp_path / inst / "checks" / f"r{int(secs)}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({
            "instance": inst, "emulated_gpus": not real,
            "checks": [{"nodeid": check.nodeid, "outcome": "passed", "duration_s": secs},
                       {"nodeid": "x.py::skipped", "outcome": "skipped", "duration_s": 0.01}]}))
    m = Matrix(matrix.checks, matrix.instances, Durations.from_outputs(tmp_path))
    a10 = m.cell(check, "gpu_1x_a10").duration
    assert a10 is not None and (a10.seconds, a10.source, a10.samples) == (43.0, "measured", 2)
    other = m.cell(check, "gpu_1x_h100_sxm5").duration
    assert other is not None and other.source == "measured:gpu_1x_a10", "a real measurement beats a twin one"
    untouched = next(c for c in matrix.checks if c.function == "test_two_pods_share_one_claim")
    assert m.cell(untouched, "gpu_1x_a10").duration == matrix.cell(untouched, "gpu_1x_a10").duration
    stress = next(c for c in matrix.checks if c.function == "test_shared_claim_many_pods")
    for secs in (5.0, 400.0):  # a twin time is a floor: it replaces the estimate only when longer
        twin_only = Durations([Sample("gpu_1x_a10", stress.name, secs, real=False)])(stress, "gpu_1x_a10")
        assert (twin_only.seconds, twin_only.source) == ((120, "estimate") if secs < 120 else (secs, "twin"))


# -- cost --------------------------------------------------------------------------------------------------------
def test_compute_domains_pick_1x_b200_and_follow_the_price(matrix: Matrix) -> None:
    goal = parse_goal("compute domains", matrix.checks)
    if goal.select(matrix.checks):  # the suite's own compute-domain checks, once they exist
        assert C.optimal(matrix, goal).best.types == ("gpu_1x_b200_sxm6",)
    m = _with(matrix, extra=(CD_CHECK,))
    assert C.optimal(m, goal).best.types == ("gpu_1x_b200_sxm6",)
    dearer = _with(matrix, instances=_priced(matrix.instances, gpu_1x_b200_sxm6=40.0), extra=(CD_CHECK,))
    assert C.optimal(dearer, goal).best.types == ("gpu_2x_b200_sxm6",)


def test_two_plus_gpus_pick_2x_h100_over_8x_a100_and_follow_the_price(matrix: Matrix) -> None:
    goal = parse_goal("2+ GPUs", matrix.checks)
    result = C.optimal(matrix, goal)
    assert result.best.types == ("gpu_2x_h100_sxm5",)
    a100 = C.make_run(matrix, goal.select(matrix.checks), next(i for i in matrix.instances
                                                                  if i.instance_type == "gpu_8x_a100"), C.CostModel())
    assert result.best.cost_usd < a100.cost_usd
    assert result.comparison is not None and result.comparison.agrees
    pricier = _with(matrix, instances=_priced(matrix.instances, gpu_2x_h100_sxm5=30.0, gpu_2x_b200_sxm6=30.0))
    assert C.optimal(pricier, goal).best.types == ("gpu_8x_a100",)


def test_roadmap_table_reproduced_where_right_and_disagreements_said(matrix: Matrix) -> None:
    def outcome(name: str) -> C.Result:
        return C.optimal(matrix, parse_goal(name, matrix.checks))

    presubmit, arm = outcome("presubmit"), outcome("arm64")
    assert presubmit.best.types == ("gpu_1x_a10",) and presubmit.comparison and presubmit.comparison.agrees
    assert "6 types run the whole set alone ($1.29–6.99/h" in presubmit.comparison.text, "any single GPU will do"
    assert arm.best.types == ("gpu_1x_gh200",) and arm.comparison and arm.comparison.agrees
    dyn = outcome("dynmig")
    assert dyn.comparison is not None and not dyn.comparison.agrees
    assert dyn.best.types == ("gpu_1x_gh200",) and "gpu_1x_h100_pcie alone costs" in dyn.comparison.text
    full = outcome("full coverage")
    assert full.comparison is not None and not full.comparison.agrees
    assert re.search(r"gpu_8x_h100_sxm5 (alone costs|cannot run)", full.comparison.text), full.comparison.text
    weekly = outcome("weekly")
    assert weekly.best.types == ("gpu_8x_h100_sxm5",) and weekly.comparison and "roadmap's ~$16" in \
        weekly.comparison.text


def test_plan_cost_per_run_and_month(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    plan = C.optimal(matrix, parse_goal("presubmit", matrix.checks)).best
    (run,) = plan.runs
    model = C.CostModel()
    assert run.wall_s == model.provision_s + model.install_s * len(run.configs) + run.check_s
    assert plan.cost_usd == pytest.approx(1.29 * run.wall_s / 3600)
    assert plan.per_month(SCHEDULES["nightly"]) == pytest.approx(plan.cost_usd * 730.5 / 6)
    main(["plan", "cost", "--goal", "presubmit", "--schedule", "weekly", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"][0]["instance"] == "gpu_1x_a10" and doc["usd_per_month"] == pytest.approx(
        round(plan.per_month(SCHEDULES["weekly"]), 2), abs=0.01)
    cheaper = C.optimal(matrix, parse_goal("presubmit", matrix.checks), replace(model, provision_s=0)).best
    assert cheaper.cost_usd < plan.cost_usd


@pytest.mark.parametrize("args, where", [
    (["--goal", "cheapest-everything"], "--goal: unknown goal"),
    (["--goal", "markers=(stress"], "--goal: bad marker expression"),
    (["--goal", "checks=test_does_not_exist"], "--goal: no check named"),
    (["--goal", "full", "--schedule", "hourly"], "--schedule: unknown schedule"),
])
def test_bad_goal_is_one_line_and_exit_2(args: list[str], where: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan", "cost", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0], err


def test_goal_by_markers_and_by_names(matrix: Matrix) -> None:
    stress = parse_goal("markers=stress", matrix.checks)
    assert [c.function for c in stress.select(matrix.checks)] == ["test_shared_claim_many_pods"]
    named = parse_goal("checks=test_busgrind,test_one_pod_one_full_gpu", matrix.checks)
    result = C.optimal(matrix, named)
    assert {c.function for r in result.best.runs for c in r.checks} == {"test_busgrind", "test_one_pod_one_full_gpu"}
    assert result.best.types == ("gpu_1x_a100_sxm4",), "the cheapest type that runs busGrind (A10 cannot)"


# -- roadmap coverage --------------------------------------------------------------------------------------------
def test_every_roadmap_item_runs_on_some_instance_type(matrix: Matrix) -> None:
    """Every item with a check declaring it is runnable on ≥1 type; Prow items are jobs; missing items are listed."""
    declared: dict[int, list[CheckInfo]] = {}
    for c in matrix.checks:
        for item in c.roadmap:
            declared.setdefault(item, []).append(c)
    assert set(declared) <= ROADMAP_ITEMS
    for item, checks in declared.items():
        assert any(matrix.runnable_on(c) for c in checks), f"roadmap item {item}: no Lambda type runs its checks"
        assert not any(c.needs.get("not_feasible") for c in checks), f"item {item} is feasible (roadmap.md)"
    names = set(PR.generate(matrix).plans)
    for item, key in PROW_ITEMS.items():
        assert any(n.endswith(f"-{key}") or f"-{key}-" in n for n in names), f"item {item}: no {key} job"
    missing = sorted(ROADMAP_ITEMS - set(declared) - set(PROW_ITEMS))
    assert not missing, f"roadmap items without a check declaring them: {missing}"


# -- Prow --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(matrix: Matrix) -> PR.Generated:
    return PR.generate(matrix)


def test_generated_jobs_parse_and_pass_the_schema(generated: PR.Generated, matrix: Matrix,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    main(["plan", "prow"])
    text = capsys.readouterr().out
    assert text.startswith("# Prow jobs running dra-lab")
    config = yaml.safe_load(text)
    assert config == generated.config
    assert problems(config) == []
    pres = config["presubmits"]["kubernetes-sigs/dra-driver-nvidia-gpu"]
    jobs = {j["name"]: j for j in [*pres, *config["periodics"]]}
    assert len(jobs) == len(pres) + len(config["periodics"])
    env = {n: j["spec"]["containers"][0]["env"][0] for n, j in jobs.items()}
    assert all(e["name"] == "GPU_TYPE" for e in env.values())
    weekly = [j for n, j in jobs.items() if "-weekly" in n]
    assert [env[j["name"]]["value"] for j in weekly] == ["gpu_8x_h100_sxm5"] and "cron" in weekly[0]
    nightly = [j for n, j in jobs.items() if "-nightly" in n]
    assert nightly and all(j["interval"] == "6h" and "--disruptive" in j["spec"]["containers"][0]["args"]
                           for j in nightly)
    b200 = [j for n, j in jobs.items() if n.endswith("-b200")]
    assert [env[j["name"]]["value"] for j in b200] == ["gpu_1x_b200_sxm6"]
    presubmit = jobs["pull-dra-driver-nvidia-gpu-dra-lab-lambda-presubmit"]
    assert env[presubmit["name"]]["value"] == C.optimal(matrix, parse_goal("presubmit", [])).best.types[0]
    script = ROOT / PR.LAB_SCRIPT
    assert script.is_file() and script.stat().st_mode & 0o111
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    for job in jobs.values():  # the existing Lambda jobs' shape (upstream-e2e-tests.md §4.4)
        assert job["spec"]["containers"][0]["args"][0].endswith(PR.LAB_SCRIPT)
        assert job["decorate"] is True and re.fullmatch(r"\d+h", job["decoration_config"]["timeout"])
        assert job["labels"] == {"preset-lambda-credential": "true"}
        assert {"org": "kubernetes", "repo": "test-infra", "base_ref": "master",
                "path_alias": "k8s.io/test-infra"} in job["extra_refs"]
        assert {"testgrid-dashboards", "testgrid-tab-name", "description"} <= set(job["annotations"])
        assert job["spec"]["containers"][0]["command"] == ["runner.sh"]


def _job(config: dict[str, Any], suffix: str) -> dict[str, Any]:
    return next(j for j in config["periodics"] if j["name"].endswith(suffix))


@pytest.mark.parametrize("mutate, expect", [
    (lambda c: _job(c, "-nightly").update(cron="0 * * * *"), "exactly one of interval, cron"),
    (lambda c: _job(c, "-nightly").pop("interval"), "exactly one of interval, cron"),
    (lambda c: _job(c, "-nightly").update(interval="6 hours"), "expected a Go duration"),
    (lambda c: _job(c, "-weekly").update(cron="0 4 * *"), "5-field cron"),
    (lambda c: _job(c, "-weekly").pop("name"), "name: required field missing"),
    (lambda c: _job(c, "-weekly").update(name=_job(c, "-nightly")["name"]), "is also the name of"),
    (lambda c: _job(c, "-weekly").update(nmae="typo"), "nmae: unknown field"),
    (lambda c: c["presubmits"]["kubernetes-sigs/dra-driver-nvidia-gpu"][0].update(run_if_changed="^pkg/"),
     "mutually exclusive"),
    (lambda c: _job(c, "-weekly")["extra_refs"].append({"org": "a", "repo": "b", "base_ref": "c", "workdir": True}),
     "more than one ref has workdir"),
    (lambda c: _job(c, "-weekly")["extra_refs"][0].pop("base_ref"), "base_ref: required field missing"),
    (lambda c: _job(c, "-weekly")["spec"].update(containers=[]), "at least one container"),
    (lambda c: _job(c, "-weekly").update(name="x" * 64), "label-safe"),
])
def test_schema_rejects_what_prow_rejects(generated: PR.Generated, mutate: Any, expect: str) -> None:
    config = yaml.safe_load(PR.to_yaml(generated))
    mutate(config)
    found = problems(config)
    assert any(expect in p for p in found), found


def _any_job(config: dict[str, Any], name: str) -> dict[str, Any]:
    jobs = [*config["periodics"], *config["presubmits"]["kubernetes-sigs/dra-driver-nvidia-gpu"]]
    return next(j for j in jobs if j["name"] == name)


@pytest.mark.parametrize("key", ["-nightly", "-b200"])
def test_job_command_line_selects_the_planned_checks(generated: PR.Generated, key: str, tmp_path: Path) -> None:
    """The nightly (and B200) job's ``dra-lab check`` args (env-expanded as the pod sees them), dry-run for its
    instance type, run exactly the checks its plan put on that run."""
    names = [n for n in generated.plans if key in n]
    assert names
    for name in names:
        job = _any_job(generated.config, name)
        args = PR.dra_lab_args(job)
        plan, index = generated.plans[name]
        run = plan.runs[index]
        assert args[:3] == ["check", "--instance", run.instance.instance_type]
        selected, _skipped = dry_run_selection(args, tmp_path / name)
        assert selected == {c.name for c in run.checks}
        disruptive = [c.function for c in run.checks if c.needs.get("disruptive")]
        if key == "-nightly":  # roadmap items 5 and 14: stress nightly, disruptive checks in periodics only
            assert {c.function for c in run.checks} >= {"test_shared_claim_many_pods"}, "stress is nightly"
            assert "--disruptive" in args and disruptive
            assert any(1 in c.roadmap for c in run.checks), "upgrade/downgrade (item 1) is in the nightly set"
        else:
            assert "--profile" in args and any(c.needs.get("compute_domains") for c in run.checks)
            assert "--disruptive" not in args and not disruptive


def test_use_cases_cover_the_roadmap_table() -> None:
    claims = {u.name: u.roadmap for u in USE_CASES.values() if u.roadmap}
    assert {"presubmit", "dynmig", "multi-gpu", "compute-domains", "full", "arm64"} <= set(claims)
    known = {i.instance_type for i in all_instances()}
    assert all(set(c.types) <= known for c in claims.values())


# -- notebook ----------------------------------------------------------------------------------------------------
def test_coverage_notebook_through_papermill(tmp_path: Path) -> None:
    from checks.lab.notebook_run import LabRequest, run_notebook

    res = run_notebook(LabRequest("coverage_plan", "gpu_1x_a10", {"goal": "2+ GPUs",
                                                                  "schedules": ["nightly", "weekly"]},
                                  outputs=tmp_path))
    assert res.ok, res.error
    assert {"coverage_plan.ipynb", "results.json", "matrix.csv", "matrix.png", "plans.csv", "plans.png",
            "use_cases.csv", "monthly.csv", "monthly.png", "unrunnable.csv"} <= {p.name for p in
                                                                                 res.output_dir.iterdir()}
    m = res.results["metrics"]
    assert m["goal"] == "multi-gpu" and m["best_types"] == "gpu_2x_h100_sxm5" and m["roadmap_agrees"] is True
    assert m["usd_per_month_nightly"] == pytest.approx(m["usd_per_run"] * 730.5 / 6, rel=0.01)
    assert m["unrunnable"] >= 1 and res.results["unrunnable"][0]["reason"].startswith("not feasible on Lambda")
    nb = json.loads((res.output_dir / "coverage_plan.ipynb").read_text())
    images = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "heatmap, plan costs and the monthly curve are shown"


def test_coverage_notebook_rejects_a_bad_goal_before_starting(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lab", "run", "coverage_plan", "--instance", "gpu_1x_a10", "--outputs", str(tmp_path),
              "-p", "goal=everything-cheap"])
    assert exc.value.code == 2
    assert "goal" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_dry_run_lists_only_what_the_marker_expression_selects(tmp_path: Path) -> None:
    """The plan of a job is its ``-m`` selection: deselected checks are neither "run" nor "skip" in the dry run."""
    run, skip = dry_run_selection(["check", "--instance", "gpu_1x_a10", "-m", "stress or multi_gpu"], tmp_path)
    assert run == {"test_stress.py::test_shared_claim_many_pods"}
    assert skip and all("two" in s or "distinct" in s for s in skip), skip
