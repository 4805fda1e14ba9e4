"""The part of Prow's job-config schema our jobs use, checked offline.

Written from kubernetes/test-infra's job configuration (``prow/config`` types ``JobBase``, ``Presubmit``,
``Periodic``, ``Brancher``, ``RegexpChangeMatcher``, ``UtilityConfig``/``DecorationConfig``, ``Refs``) and
its config checks, for exactly the fields the existing Lambda jobs and ours set. No network: a table of
allowed keys and types per object, plus the cross-field rules Prow enforces when it loads a config:

- a periodic has exactly one of ``interval``, ``cron``, ``minimal_interval``; durations are Go durations;
- a presubmit may not combine ``always_run`` with ``run_if_changed``/``skip_if_only_changed``;
- job names are unique, non-empty, label-safe (≤ 63 characters: Prow puts them in pod labels);
- at most one extra_ref is the ``workdir``; every extra_ref names org, repo and base_ref;
- a decorated job's pod spec has at least one container with an image;
- testgrid tab names are unique within a dashboard.

:func:`problems` returns every violation as ``path: what``; an empty list means the config passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
JOB_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


@dataclass(frozen=True)
class Field:
    """One allowed key of an object."""

    check: Callable[[Any], bool]
    """Type/shape test of the value."""
    expect: str
    """What the value must be, for the message."""
    required: bool = False
    """Whether the key must be present."""


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _duration(v: Any) -> bool:
    return isinstance(v, str) and bool(GO_DURATION.match(v))


def _list(v: Any) -> bool:
    return isinstance(v, list)


def _map(v: Any) -> bool:
    return isinstance(v, dict)


JOB_BASE: dict[str, Field] = {
    "name": Field(_str, "a string", required=True),
    "cluster": Field(_str, "a string"),
    "agent": Field(lambda v: v in ("kubernetes", "jenkins", "tekton-pipeline"), "kubernetes|jenkins|tekton-pipeline"),
    "labels": Field(_str_map, "a map of strings"),
    "annotations": Field(_str_map, "a map of strings"),
    "max_concurrency": Field(_int, "a non-negative integer"),
    "decorate": Field(_bool, "a boolean"),
    "decoration_config": Field(_map, "a mapping"),
    "extra_refs": Field(_list, "a list"),
    "spec": Field(_map, "a pod spec"),
    "hidden": Field(_bool, "a boolean"),
    "path_alias": Field(_str, "a string"),
    "reporter_config": Field(_map, "a mapping"),
    "rerun_auth_config": Field(_map, "a mapping"),
}
PRESUBMIT: dict[str, Field] = {
    **JOB_BASE,
    "always_run": Field(_bool, "a boolean"),
    "optional": Field(_bool, "a boolean"),
    "run_if_changed": Field(_str, "a regular expression"),
    "skip_if_only_changed": Field(_str, "a regular expression"),
    "skip_branches": Field(_str_list, "a list of regular expressions"),
    "branches": Field(_str_list, "a list of regular expressions"),
    "context": Field(_str, "a string"),
    "skip_report": Field(_bool, "a boolean"),
    "trigger": Field(_str, "a regular expression"),
    "rerun_command": Field(_str, "a string"),
}
PERIODIC: dict[str, Field] = {
    **JOB_BASE,
    "interval": Field(_duration, "a Go duration (e.g. 6h)"),
    "minimal_interval": Field(_duration, "a Go duration"),
    "cron": Field(lambda v: isinstance(v, str) and len(v.split()) == 5 and all(CRON_FIELD.match(f) for f in v.split()),
                  "a 5-field cron expression"),
}
DECORATION: dict[str, Field] = {
    "timeout": Field(_duration, "a Go duration"),
    "grace_period": Field(_duration, "a Go duration"),
    "skip_cloning": Field(_bool, "a boolean"),
    "utility_images": Field(_map, "a mapping"),
    "gcs_configuration": Field(_map, "a mapping"),
}
REFS: dict[str, Field] = {
    "org": Field(_str, "a string", required=True),
    "repo": Field(_str, "a string", required=True),
    "base_ref": Field(_str, "a string", required=True),
    "base_sha": Field(_str, "a string"),
    "path_alias": Field(_str, "a string"),
    "workdir": Field(_bool, "a boolean"),
    "clone_uri": Field(_str, "a string"),
    "skip_submodules": Field(_bool, "a boolean"),
    "clone_depth": Field(_int, "a non-negative integer"),
}
CONTAINER: dict[str, Field] = {
    "name": Field(_str, "a string"),
    "image": Field(lambda v: isinstance(v, str) and bool(v), "a non-empty string", required=True),
    "command": Field(_str_list, "a list of strings"),
    "args": Field(_str_list, "a list of strings"),
    "env": Field(_list, "a list"),
    "resources": Field(_map, "a mapping"),
    "securityContext": Field(_map, "a mapping"),
    "volumeMounts": Field(_list, "a list"),
}
ENV: dict[str, Field] = {
    "name": Field(lambda v: isinstance(v, str) and bool(v), "a non-empty string", required=True),
    "value": Field(_str, "a string"),
    "valueFrom": Field(_map, "a mapping"),
}


def _fields(obj: Any, table: dict[str, Field], path: str, out: list[str]) -> bool:
    """Unknown keys, missing required keys and wrong types; False when ``obj`` is not a mapping."""
    if not isinstance(obj, dict):
        out.append(f"{path}: expected a mapping")
        return False
    for key in obj:
        if key not in table:
            out.append(f"{path}.{key}: unknown field")
    for key, f in table.items():
        if key not in obj:
            if f.required:
                out.append(f"{path}.{key}: required field missing")
        elif not f.check(obj[key]):
            out.append(f"{path}.{key}: expected {f.expect}, got {obj[key]!r}")
    return True


def _job(job: Any, table: dict[str, Field], path: str, out: list[str]) -> None:
    if not _fields(job, table, path, out):
        return
    name = job.get("name")
    if isinstance(name, str) and (not JOB_NAME.match(name) or len(name) > 63):
        out.append(f"{path}.name: {name!r} is not a label-safe job name (letters, digits, -_. ; ≤ 63 characters)")
    if isinstance(job.get("decoration_config"), dict):
        _fields(job["decoration_config"], DECORATION, f"{path}.decoration_config", out)
    refs = job.get("extra_refs")
    if isinstance(refs, list):
        for i, ref in enumerate(refs):
            _fields(ref, REFS, f"{path}.extra_refs[{i}]", out)
        if sum(1 for r in refs if isinstance(r, dict) and r.get("workdir")) > 1:
            out.append(f"{path}.extra_refs: more than one ref has workdir: true")
    spec = job.get("spec")
    if job.get("agent", "kubernetes") == "kubernetes":
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if not isinstance(containers, list) or not containers:
            out.append(f"{path}.spec.containers: a kubernetes job needs at least one container")
        else:
            for i, c in enumerate(containers):
                if _fields(c, CONTAINER, f"{path}.spec.containers[{i}]", out):
                    for j, e in enumerate(c.get("env") or []):
                        _fields(e, ENV, f"{path}.spec.containers[{i}].env[{j}]", out)


def problems(config: Any) -> list[str]:
    """Every schema violation of a job config (``presubmits``/``postsubmits``/``periodics``)."""
    out: list[str] = []
    if not isinstance(config, dict):
        return ["(top level): expected a mapping"]
    for key in config:
        if key not in ("presubmits", "postsubmits", "periodics"):
            out.append(f"{key}: unknown top-level key")
    names: dict[str, str] = {}
    tabs: dict[tuple[str, str], str] = {}
    jobs: list[tuple[str, Any]] = []
    pres = config.get("presubmits") or {}
    if not isinstance(pres, dict):
        out.append("presubmits: expected a mapping of org/repo to jobs")
        pres = {}
    for repo, items in pres.items():
        if not re.match(r"^[^/\s]+/[^/\s]+$", str(repo)):
            out.append(f"presubmits.{repo}: expected org/repo")
        if not isinstance(items, list):
            out.append(f"presubmits.{repo}: expected a list of jobs")
            continue
        for i, job in enumerate(items):
            path = f"presubmits.{repo}[{i}]"
            _job(job, PRESUBMIT, path, out)
            if isinstance(job, dict) and job.get("always_run") and (job.get("run_if_changed")
                                                                     or job.get("skip_if_only_changed")):
                out.append(f"{path}: always_run and run_if_changed/skip_if_only_changed are mutually exclusive")
            jobs.append((path, job))
    periodics = config.get("periodics") or []
    if not isinstance(periodics, list):
        out.append("periodics: expected a list of jobs")
        periodics = []
    for i, job in enumerate(periodics):
        path = f"periodics[{i}]"
        _job(job, PERIODIC, path, out)
        if isinstance(job, dict):
            given = [k for k in ("interval", "cron", "minimal_interval") if k in job]
            if len(given) != 1:
                out.append(f"{path}: exactly one of interval, cron, minimal_interval is required (got "
                           f"{', '.join(given) or 'none'})")
        jobs.append((path, job))
    for path, job in jobs:
        if not isinstance(job, dict):
            continue
        name = str(job.get("name", ""))
        if name in names:
            out.append(f"{path}.name: {name!r} is also the name of {names[name]}")
        names.setdefault(name, path)
        raw_ann = job.get("annotations")
        ann: dict[str, Any] = raw_ann if isinstance(raw_ann, dict) else {}
        tab = ann.get("testgrid-tab-name", name)
        for dash in (d.strip() for d in str(ann.get("testgrid-dashboards", "")).split(",") if d.strip()):
            if (dash, tab) in tabs:
                out.append(f"{path}: testgrid tab {tab!r} on dashboard {dash!r} is also {tabs[(dash, tab)]}")
            tabs.setdefault((dash, tab), path)
    return out
