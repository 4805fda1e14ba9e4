"""``dra-lab lab report``: every ``outputs/<instance>/<notebook>/<run-id>/results.json`` in one table.

Each results.json has the runner's ``run`` block (status, duration, run id) and the notebook's own
``metrics`` (flat scalars); the table has one row per run with those flattened into columns
(``metric.<name>``). Written under ``outputs/report/``: ``runs.csv``, ``report.md`` (latest run per
instance × notebook, then every run) and PNG plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from checks.lab import plots

BASE_COLUMNS = ("instance", "notebook", "run_id", "status", "started", "duration_s", "target", "error")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _suite_row(inst: str, run_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The check suite's results.json (``checks/suite/plugin.py``): exit status and outcome counts."""
    started, finished = data.get("started"), data.get("finished")
    duration = round(float(finished) - float(started), 2) \
        if isinstance(started, int | float) and isinstance(finished, int | float) else None
    code = data.get("exit_status")
    row: dict[str, Any] = {"instance": inst, "notebook": "checks", "run_id": run_id,
                           "status": "passed" if code == 0 else "failed",
                           "started": pd.Timestamp(started, unit="s", tz="UTC").floor("s").isoformat()
                           if isinstance(started, int | float) else "",
                           "duration_s": duration, "target": data.get("server_version", ""),
                           "error": "interrupted" if data.get("interrupted") else
                           ("" if code == 0 else f"pytest exit status {code}")}
    for k, v in sorted((data.get("counts") or {}).items()):
        row[f"metric.checks_{k}"] = v
    # Timings the checks measured (upgrade/downgrade, leader failover, webhook, ...): ``data.timings`` per check.
    for check in data.get("checks") or []:
        timings = (check.get("data") or {}).get("timings") if isinstance(check, dict) else None
        for k, v in sorted((timings or {}).items()) if isinstance(timings, dict) else ():
            if isinstance(v, int | float) and not isinstance(v, bool):
                row[f"metric.{k}"] = v
    return row


def load_runs(outputs: Path) -> pd.DataFrame:
    """One row per results.json under ``outputs/*/*/*/`` (the report folder itself excluded)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(outputs.glob("*/*/*/results.json")):
        inst, nb, run_id = path.parts[-4], path.parts[-3], path.parts[-2]
        if inst == "report":
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            rows.append({"instance": inst, "notebook": nb, "run_id": run_id, "status": "unreadable",
                         "error": f"{path.name} is not JSON"})
            continue
        if not isinstance(data, dict):
            continue
        if nb == "checks":
            rows.append(_suite_row(inst, run_id, data))
            continue
        run: dict[str, Any] = data["run"] if isinstance(data.get("run"), dict) else {}
        row: dict[str, Any] = {"instance": inst, "notebook": nb, "run_id": run_id,
                               "status": run.get("status") or data.get("status") or "unknown",
                               "started": run.get("started", ""), "duration_s": run.get("duration_s"),
                               "target": run.get("target", ""), "error": run.get("error", "")}
        metrics: dict[str, Any] = data["metrics"] if isinstance(data.get("metrics"), dict) else {}
        for k, v in sorted(metrics.items()):
            if _scalar(v):
                row[f"metric.{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in BASE_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    return df.sort_values(["instance", "notebook", "run_id"], kind="stable").reset_index(drop=True)


def latest(df: pd.DataFrame) -> pd.DataFrame:
    """The newest run (run ids sort by time) per instance × notebook."""
    if df.empty:
        return df
    return df.groupby(["instance", "notebook"], sort=True).tail(1).reset_index(drop=True)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (no extra dependency)."""
    if df.empty:
        return "_no runs_\n"
    cols = list(df.columns)

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    """What was written."""

    folder: Path
    """outputs/report."""
    runs: int
    """Rows aggregated."""
    files: list[Path] = field(default_factory=list)
    """Files written."""


def earlier_runs(run_dir: Path) -> list[dict[str, Any]]:
    """results.json of earlier stress runs of the same instance (siblings of ``run_dir``), oldest first."""
    found = []
    for path in sorted(run_dir.parent.glob("*/results.json")):
        if path.parent.resolve() == run_dir.resolve():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("latency"), dict):
            data.setdefault("run_id", path.parent.name)
            found.append(data)
    return found


def build_report(outputs: Path) -> Report:
    """Aggregate and write the CSV, Markdown and PNGs; returns what was written."""
    folder = outputs / "report"
    folder.mkdir(parents=True, exist_ok=True)
    df = load_runs(outputs)
    rep = Report(folder, len(df))
    csv = folder / "runs.csv"
    df.to_csv(csv, index=False)
    rep.files.append(csv)
    last = latest(df)
    md = ["# dra-lab report", "",
          f"{len(df)} run(s) across {df['instance'].nunique() if not df.empty else 0} instance type(s).", "",
          "## Latest run per instance and notebook", "", markdown_table(last[[*BASE_COLUMNS[:6], "error"]]
                                                                         if not last.empty else last)]
    for nb, part in last.groupby("notebook") if not last.empty else []:
        metric_cols = [c for c in part.columns if c.startswith("metric.") and part[c].notna().any()]
        if metric_cols:
            md += [f"## {nb}: metrics (latest runs)", "",
                   markdown_table(part[["instance", "run_id", *metric_cols]])]
    md += ["## Every run", "", markdown_table(df[list(BASE_COLUMNS[:6])] if not df.empty else df)]
    if not df.empty:
        counts = df.groupby(["notebook", "status"]).size().unstack(fill_value=0)
        fig = plots.bar_figure([str(i) for i in counts.index],
                               {str(c): [float(x) for x in counts[c]] for c in counts.columns},
                               title="Notebook runs by status (all instances)", ylabel="runs (count)")
        rep.files.append(plots.save(fig, folder / "runs_by_status.png"))
        md += ["![runs by status](runs_by_status.png)", ""]
        stress = last[last["notebook"] == "stress_timing"]
        cols = [c for c in ("metric.total_p50_s", "metric.total_p90_s", "metric.total_p99_s", "metric.total_max_s")
                if c in stress.columns]
        if not stress.empty and cols:
            fig = plots.bar_figure(list(stress["instance"]),
                                   {c.removeprefix("metric.total_").removesuffix("_s"):
                                    [float(v) if pd.notna(v) else 0.0 for v in stress[c]] for c in cols},
                                   title="Pod created→Ready latency on a shared claim (latest run per instance)",
                                   ylabel="seconds")
            rep.files.append(plots.save(fig, folder / "stress_latency.png"))
            md += ["![stress latency](stress_latency.png)", ""]
        dyn = last[last["notebook"] == "dynmig_fragmentation"]
        if not dyn.empty and "metric.agreements" in dyn.columns:
            fig = plots.bar_figure(list(dyn["instance"]),
                                   {"steps agreeing with the oracle": [float(v or 0) for v in dyn["metric.agreements"]],
                                    "steps differing": [float(v or 0) for v in dyn.get("metric.disagreements",
                                                                                       [0] * len(dyn))]},
                                   title="DynamicMIG: cluster outcome vs MIG oracle (latest run per instance)",
                                   ylabel="steps (count)")
            rep.files.append(plots.save(fig, folder / "dynmig_agreement.png"))
            md += ["![dynmig agreement](dynmig_agreement.png)", ""]
    mdp = folder / "report.md"
    mdp.write_text("\n".join(md) + "\n")
    rep.files.append(mdp)
    return rep


__all__ = ["Report", "build_report", "earlier_runs", "latest", "load_runs", "markdown_table"]
