"""``dra-lab plan``: what to run where, for how much — coverage matrix, cost-optimal plan, Prow jobs.

Everything is computed from the suite's checks as collected by pytest (no list kept here), the instance
params and earlier results under ``outputs/`` (see :mod:`checks.plan`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from checks.errors import UsageError

_OUTPUTS = click.option("--outputs", type=click.Path(file_okay=False, path_type=Path), default=Path("outputs"),
                        show_default=True, help="Where earlier results.json files give measured durations.")


@click.group(help="Coverage matrix, cost-optimal plans and Prow jobs, derived from the checks themselves.")
def command() -> None:
    pass


@command.command("matrix", help="Every check × instance type: run (expected duration) or skip (why).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@_OUTPUTS
def matrix_cmd(fmt: str, outputs: Path) -> None:
    from checks.plan.matrix import Matrix

    click.echo(Matrix.build(outputs).render(fmt), nl=False)


@command.command("cost", help="The cheapest instance types and runs covering a goal, per run and per month.")
@click.option("--goal", required=True, metavar="GOAL",
              help="A use case (presubmit, dynmig, multi-gpu/'2+ GPUs', compute-domains, full, arm64, nightly, "
                   "weekly, b200), markers=EXPR or checks=NAME,NAME.")
@click.option("--schedule", default=None, metavar="nightly|daily|weekly",
              help="How often the plan runs, for the monthly cost (default: the use case's, else nightly).")
@click.option("--provision-min", type=float, default=None, help="Provisioning overhead per run, minutes (15).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_OUTPUTS
def cost_cmd(goal: str, schedule: str | None, provision_min: float | None, as_json: bool, outputs: Path) -> None:
    from checks.plan.cost import CostModel, optimal, render
    from checks.plan.goals import parse_goal
    from checks.plan.goals import schedule as get_schedule
    from checks.plan.matrix import Matrix

    if provision_min is not None and provision_min < 0:
        raise UsageError("must not be negative", where="--provision-min")
    model = CostModel() if provision_min is None else CostModel(provision_s=provision_min * 60)
    m = Matrix.build(outputs)
    parsed = parse_goal(goal, m.checks)
    sched = get_schedule(schedule or (parsed.use_case.schedule if parsed.use_case else "nightly"))
    result = optimal(m, parsed, model)
    if not as_json:
        click.echo(render(result, sched), nl=False)
        return
    best = result.best
    click.echo(json.dumps({
        "goal": best.goal.label, "schedule": sched.name, "runs_per_month": round(sched.runs_per_month, 2),
        "runs": [{"instance": r.instance.instance_type, "price_usd_per_hour": r.instance.price_usd_per_hour,
                  "checks": [c.name for c in r.checks], "driver_configs": list(r.configs),
                  "wall_min": round(r.wall_s / 60, 1), "estimated_durations": r.estimated_checks,
                  "usd": round(r.cost_usd, 2)} for r in best.runs],
        "usd_per_run": round(best.cost_usd, 2), "usd_per_month": round(best.per_month(sched), 2),
        "uncovered": [{"check": c.name, "reason": why} for c, why in best.uncovered],
        "alternatives": [{"instances": list(a.types), "usd_per_run": round(a.cost_usd, 2)}
                         for a in result.alternatives],
        "roadmap": None if result.comparison is None else {"claim": result.comparison.claim.text,
                                                           "agrees": result.comparison.agrees,
                                                           "text": result.comparison.text},
    }, indent=2))


@command.command("prow", help="Prow job config for kubernetes/test-infra (presubmit, nightly, weekly, B200).")
@click.option("--lab-repo", default="dra-lab/dra-lab", show_default=True, metavar="ORG/REPO",
              help="Where Prow checks this project out.")
@_OUTPUTS
def prow_cmd(lab_repo: str, outputs: Path) -> None:
    from checks.plan.matrix import Matrix
    from checks.plan.prow import ProwSettings, generate, to_yaml
    from checks.plan.prowschema import problems

    org, sep, repo = lab_repo.partition("/")
    if not sep or not org or not repo or "/" in repo:
        raise UsageError(f"expected ORG/REPO, got {lab_repo!r}", where="--lab-repo")
    gen = generate(Matrix.build(outputs), ProwSettings(lab_org=org, lab_repo=repo))
    bad = problems(gen.config)
    if bad:  # a bug here, not bad input: never print a config Prow would reject
        raise RuntimeError("generated job config fails the schema: " + "; ".join(bad))
    click.echo(to_yaml(gen), nl=False)
