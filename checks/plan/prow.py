"""Prow jobs for kubernetes/test-infra that run this project's suite on Lambda instances.

Users outgrow one machine by running the suite on many Lambda instances at once; that is Prow's job. The
jobs have the shape of the existing Lambda jobs (upstream-e2e-tests.md §4.4,
``config/jobs/kubernetes-sigs/dra-driver-nvidia-gpu/dra-driver-nvidia-gpu-lambda.yaml``): cluster
``k8s-infra-prow-build``, ``decorate`` with a ``decoration_config.timeout``, the ``preset-lambda-credential``
label, ``extra_refs`` for kubernetes/test-infra (its ``experiment/lambda/lib/lambda-common.sh`` provisions the
instance), the ``GPU_TYPE`` env, ``runner.sh`` in the kubekins image, 4 CPU / 8 Gi, and testgrid
annotations. What differs: the command runs ``scripts/ci/lambda-e2e.sh`` of this project (checked out through
one more extra_ref) with a ``dra-lab check`` command line, so the suite — with the job's markers — runs against
the provisioned cluster.

Which instance type each job uses is the cost plan's choice for the job's use case (:mod:`checks.plan.cost`),
except where the roadmap pins it (item 11: the weekly job on gpu_8x_h100_sxm5). A use case whose cheapest
plan needs several types gets one job per type.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from checks.plan.cost import CostModel, Plan, optimal
from checks.plan.goals import USE_CASES, Goal, for_use_case
from checks.plan.matrix import Matrix

LAB_SCRIPT = "scripts/ci/lambda-e2e.sh"
"""This project's Prow entry point (provision, build the driver, run ``dra-lab check``, collect, tear down)."""


@dataclass(frozen=True)
class ProwSettings:
    """Where the jobs run and what they check out (defaults: the existing Lambda jobs' values)."""

    image: str = "us-central1-docker.pkg.dev/k8s-staging-test-infra/images/kubekins-e2e:v20260524-7e4fa9c74b-master"
    """Job container image (the kubekins image of the existing Lambda jobs; it provides ``runner.sh`` and Go)."""
    cluster: str = "k8s-infra-prow-build"
    """Prow build cluster."""
    credential_label: str = "preset-lambda-credential"
    """Preset that injects the Lambda API key (defined in test-infra's sig-cloud-provider/lambda jobs)."""
    driver_org: str = "kubernetes-sigs"
    """Org of the driver under test."""
    driver_repo: str = "dra-driver-nvidia-gpu"
    """Repo of the driver under test (presubmits run on its PRs; periodics check out ``driver_base_ref``)."""
    driver_base_ref: str = "main"
    """Branch the periodics test."""
    lab_org: str = "dra-lab"
    """Org of this project (``--lab-repo ORG/REPO``)."""
    lab_repo: str = "dra-lab"
    """Repo of this project."""
    lab_base_ref: str = "main"
    """Branch of this project the jobs run."""
    gopath: str = "/home/prow/go"
    """GOPATH of the job pod: Prow clones extra_refs to ``$GOPATH/src/github.com/ORG/REPO``."""
    presubmit_dashboards: str = "sig-node-gpu, lambda-gpu-presubmits, nvidia-gpu, nvidia-dra, nvidia-presubmits"
    """testgrid-dashboards of presubmits (the existing Lambda presubmits' list)."""
    periodic_dashboards: str = "sig-node-gpu, lambda-gpu-periodics, nvidia-gpu, nvidia-dra, nvidia-periodics"
    """testgrid-dashboards of periodics (the existing Lambda periodics' list)."""

    @property
    def lab_dir(self) -> str:
        return f"{self.gopath}/src/github.com/{self.lab_org}/{self.lab_repo}"


@dataclass(frozen=True)
class JobSpec:
    """One job family of :data:`JOBS`."""

    key: str
    """Short name (job names end with it)."""
    kind: str
    """``presubmit`` or ``periodic``."""
    use_case: str
    """The §4.4/roadmap use case (see :data:`checks.plan.goals.USE_CASES`) whose plan picks the type(s)."""
    description: str
    """testgrid description."""
    interval: str | None = None
    """Periodic: Go duration between runs (exclusive with ``cron``)."""
    cron: str | None = None
    """Periodic: cron schedule in UTC (exclusive with ``interval``)."""
    always_run: bool = True
    """Presubmit: run on every PR (else only on ``/test``)."""
    extra_args: tuple[str, ...] = ()
    """More ``dra-lab check`` arguments (``--disruptive`` comes from the use case: roadmap item 14)."""
    min_timeout_h: int = 2
    """Lower bound of the decoration timeout (the existing jobs use 2h)."""


JOBS: tuple[JobSpec, ...] = (
    JobSpec("presubmit", "presubmit", "presubmit", "dra-lab checks on the cheapest single-GPU Lambda instance "
            "for dra-driver-nvidia-gpu PRs"),
    JobSpec("nightly", "periodic", "nightly", "dra-lab: full single-GPU set plus upgrade/downgrade and stress "
            "every 6h (roadmap item 5)", interval="6h"),
    JobSpec("weekly", "periodic", "weekly", "dra-lab: full GPU target on gpu_8x_h100_sxm5 weekly (roadmap "
            "item 11)", cron="0 4 * * 0"),
    JobSpec("b200", "presubmit", "b200", "dra-lab B200 validation (--profile b200): presubmit set with compute "
            "domains, controller and its metrics (roadmap item 9)", always_run=False),
)


def _short(instance_type: str) -> str:
    return instance_type.removeprefix("gpu_").replace("_", "-")


def check_args(goal: Goal, extra: tuple[str, ...]) -> list[str]:
    """The ``dra-lab check`` command line of a job (``$(GPU_TYPE)`` is expanded by Kubernetes from the env)."""
    args = ["dra-lab", "check", "--instance", "$(GPU_TYPE)"]
    if goal.use_case is not None and goal.use_case.profile:
        args += ["--profile", goal.use_case.profile]
    elif goal.markers:
        args += ["-m", goal.markers]
    if goal.disruptive:
        args.append("--disruptive")
    return args + list(extra)


def _timeout(plan: Plan, spec: JobSpec, run_index: int) -> str:
    wall_h = plan.runs[run_index].wall_s / 3600 if plan.runs else 0.0
    return f"{max(spec.min_timeout_h, math.ceil(2 * wall_h + 0.25))}h"


def _job(spec: JobSpec, settings: ProwSettings, plan: Plan, index: int, name: str) -> dict[str, Any]:
    run = plan.runs[index]
    periodic = spec.kind == "periodic"
    refs: list[dict[str, Any]] = []
    if periodic:
        refs.append({"org": settings.driver_org, "repo": settings.driver_repo, "base_ref": settings.driver_base_ref,
                     "workdir": True})
    refs += [{"org": "kubernetes", "repo": "test-infra", "base_ref": "master", "path_alias": "k8s.io/test-infra"},
             {"org": settings.lab_org, "repo": settings.lab_repo, "base_ref": settings.lab_base_ref}]
    job: dict[str, Any] = {"name": name, "cluster": settings.cluster}
    if periodic:
        job.update({"interval": spec.interval} if spec.interval else {"cron": spec.cron})
    else:
        job.update({"optional": True, "always_run": spec.always_run, "max_concurrency": 1,
                    "skip_branches": [r"release-\d+\.\d+"]})
    job.update({
        "decorate": True,
        "decoration_config": {"timeout": _timeout(plan, spec, index)},
        "labels": {settings.credential_label: "true"},
        "extra_refs": refs,
        "annotations": {
            "testgrid-dashboards": settings.periodic_dashboards if periodic else settings.presubmit_dashboards,
            "testgrid-tab-name": name.removeprefix("ci-").removeprefix("pull-"),
            "description": f"{spec.description} ({run.instance.instance_type}, {len(run.checks)} checks planned)",
        },
        "spec": {"containers": [{
            "image": settings.image,
            "command": ["runner.sh"],
            "args": [f"{settings.lab_dir}/{LAB_SCRIPT}", *check_args(plan.goal, spec.extra_args)],
            "env": [{"name": "GPU_TYPE", "value": run.instance.instance_type}],
            "resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
        }]},
    })
    return job


@dataclass
class Generated:
    """The job config plus the plan behind every job."""

    config: dict[str, Any]
    """``presubmits`` / ``periodics`` as test-infra reads them."""
    plans: dict[str, tuple[Plan, int]] = field(default_factory=dict)
    """Job name → (the use case's plan, index of the job's run in it)."""


def generate(matrix: Matrix, settings: ProwSettings | None = None, model: CostModel | None = None) -> Generated:
    """Every job of :data:`JOBS`, typed from the cost plans of their use cases."""
    settings = settings or ProwSettings()
    presubmits: list[dict[str, Any]] = []
    periodics: list[dict[str, Any]] = []
    out = Generated({})
    for spec in JOBS:
        uc = USE_CASES[spec.use_case]
        plan = optimal(matrix, for_use_case(uc), model).best
        prefix = "ci" if spec.kind == "periodic" else "pull"
        base = f"{prefix}-{settings.driver_repo}-dra-lab-lambda-{spec.key}"
        for i, run in enumerate(plan.runs):
            name = base if len(plan.runs) == 1 else f"{base}-{_short(run.instance.instance_type)}"
            (periodics if spec.kind == "periodic" else presubmits).append(_job(spec, settings, plan, i, name))
            out.plans[name] = (plan, i)
    out.config = {"presubmits": {f"{settings.driver_org}/{settings.driver_repo}": presubmits},
                  "periodics": periodics}
    return out


HEADER = """\
# Prow jobs running dra-lab (the NVIDIA DRA driver validation suite) on Lambda Cloud instances.
# Generated by `dra-lab plan prow`; instance types are the cost plan's choices (`dra-lab plan cost`).
# Each job provisions one Lambda instance through kubernetes/test-infra's experiment/lambda library
# (extra_refs), builds the driver under test on it, and runs `dra-lab check` there with the job's markers.
# preset-lambda-credential is defined in config/jobs/kubernetes/sig-cloud-provider/lambda/lambda.yaml.
"""


def to_yaml(gen: Generated) -> str:
    """The config as test-infra YAML, with a header saying where it comes from."""
    return HEADER + yaml.safe_dump(gen.config, sort_keys=False, width=120)


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of container args from the container's env (unknown names stay)."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), arg)


def dra_lab_args(job: dict[str, Any]) -> list[str]:
    """The ``dra-lab check ...`` arguments a job runs (after its entry script), env-expanded as the pod sees them."""
    (container,) = job["spec"]["containers"]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
    args = [expand(a, env) for a in container["args"]]
    return args[args.index("dra-lab") + 1:]
