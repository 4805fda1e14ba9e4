"""Figures for the lab notebooks and reports (matplotlib, Agg backend, PNG files).

Every figure has a title, labelled axes with units, and a legend: they are read by people who did not run
the notebook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from checks.mig import GpuGeometry
    from checks.scenarios.dynmig import StepRecord

_PENDING_COLOR = "#d62728"


def _profile_colors(names: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(sorted(set(names)))}


def occupancy_figure(geo: GpuGeometry, records: Sequence[StepRecord], *, gpu: int = 0) -> Figure:
    """Memory-slice occupancy after each step: the cluster's lane above the oracle's, one row per step."""
    profiles = [p.profile for r in records for p in (*r.occupied_observed, *r.occupied_predicted)]
    colors = _profile_colors(profiles or [geo.profiles[0].name])
    n = len(records)
    fig, ax = plt.subplots(figsize=(11, 0.62 * n + 1.8))
    slice_gib = min(p.memory_mib for p in geo.profiles) / 1024
    yticks, ylabels = [], []
    for i, rec in enumerate(records):
        base = (n - 1 - i) * 3
        for lane, (who, occ) in enumerate((("oracle", rec.occupied_predicted), ("cluster", rec.occupied_observed))):
            y = base + lane * 1.1
            for pl in occ:
                width = geo.profile(pl.profile).memory_slices
                ax.broken_barh([(pl.start, width)], (y, 1.0), facecolors=colors[pl.profile], edgecolor="black",
                               linewidth=0.6)
                ax.text(pl.start + width / 2, y + 0.5, pl.profile, ha="center", va="center", fontsize=7)
            yticks.append(y + 0.5)
            ylabels.append(f"{rec.step}. {rec.label} [{who}]")
        if rec.pending_profile:
            ax.text(geo.memory_slices + 0.1, base + 1.05, f"Pending: {rec.pending_profile}", color=_PENDING_COLOR,
                    va="center", fontsize=7)
        if not rec.agree:
            ax.text(-0.1, base + 1.05, "≠", color=_PENDING_COLOR, ha="right", va="center", fontsize=12)
    ax.set_yticks(yticks, ylabels, fontsize=7)
    ax.set_xlim(0, geo.memory_slices + 1.8)
    ax.set_xticks(range(geo.memory_slices + 1))
    ax.set_xlabel(f"memory slice index (1 slice ≈ {slice_gib:.0f} GiB of {geo.key})")
    ax.set_title(f"DynamicMIG occupancy per step on {geo.key} GPU {gpu}: cluster vs MIG oracle")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    handles = [Patch(facecolor=c, edgecolor="black", label=f"GPU instance {p}") for p, c in colors.items()]
    handles.append(Patch(facecolor="white", edgecolor=_PENDING_COLOR, label="request left Pending (right)"))
    height = fig.get_size_inches()[1]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    return fig


def cdf_figure(series: Mapping[str, Sequence[float]], *, title: str) -> Figure:
    """Empirical CDF of each latency series (seconds)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, values in series.items():
        xs = sorted(values)
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")
    ax.set_xlabel("latency (seconds)")
    ax.set_ylabel("fraction of pods ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(linestyle=":", linewidth=0.6)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def timeline_figure(rows: Sequence[Mapping[str, Any]], *, title: str) -> Figure:
    """Per-pod bars: created→scheduled, scheduled→running, running→ready (seconds since the first creation).

    ``rows`` carry ``label``, ``created``, ``scheduled``, ``running``, ``ready`` as offsets in seconds (or None).
    """
    phases = (("created", "scheduled", "created→scheduled", "#1f77b4"),
              ("scheduled", "running", "scheduled→running", "#ff7f0e"),
              ("running", "ready", "running→ready", "#2ca02c"))
    fig, ax = plt.subplots(figsize=(10, 0.22 * len(rows) + 1.8))
    ends = [float(r[k]) for r in rows for k in ("created", "ready") if r.get(k) is not None]
    min_w = max((max(ends) - min(ends)) if ends else 0.0, 1.0) * 0.006  # zero-length phases stay visible
    for i, row in enumerate(rows):
        for a, b, _label, color in phases:
            if row.get(a) is not None and row.get(b) is not None:
                ax.broken_barh([(float(row[a]), max(float(row[b]) - float(row[a]), min_w))], (i - 0.4, 0.8),
                               facecolors=color)
    ax.set_yticks(range(len(rows)), [str(r.get("label", i)) for i, r in enumerate(rows)], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("time since the first pod was created (seconds)")
    ax.set_ylabel("pod (iteration/name)")
    ax.set_title(title)
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.legend(handles=[Patch(facecolor=c, label=lab) for _a, _b, lab, c in phases], loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def bar_figure(labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, ylabel: str) -> Figure:
    """Grouped bars: one group per label, one bar per series."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 3), 5))
    k = max(len(series), 1)
    width = 0.8 / k
    for j, (name, values) in enumerate(series.items()):
        ax.bar([i + j * width - 0.4 + width / 2 for i in range(len(labels))], list(values), width=width, label=name)
    ax.set_xticks(range(len(labels)), list(labels), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", linestyle=":", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_figure(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float | None]], *,
                   title: str, unit: str) -> Figure:
    """A rows × cols grid: a colour for each value, grey for None (e.g. a check skipped on an instance type)."""
    import numpy as np

    data = np.array([[np.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=(0.55 * len(cols) + 4.5, 0.28 * len(rows) + 2.2))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#dddddd")
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=cmap)
    ax.set_xticks(range(len(cols)), list(cols), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
    ax.set_xlabel("instance type")
    ax.set_ylabel("check")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=unit)
    ax.legend(handles=[Patch(facecolor="#dddddd", label="skipped (see the reasons)")], loc="upper left",
              bbox_to_anchor=(1.18, 1.0), fontsize=7)
    fig.tight_layout()
    return fig


def lines_figure(x: Sequence[float], series: Mapping[str, Sequence[float]], *, title: str, xlabel: str,
                 ylabel: str) -> Figure:
    """One line per series over a shared x axis (e.g. cumulative cost per schedule over a month)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in series.items():
        ax.plot(list(x), list(values), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(linestyle=":", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG and release it (notebooks keep many figures otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["bar_figure", "cdf_figure", "heatmap_figure", "lines_figure", "occupancy_figure", "save",
           "timeline_figure"]
