"""Coverage matrix: every check × every instance type → run (with an expected duration) or skip (with the reason).

The verdict is the suite's own: :func:`checks.catalog.needs.why_not` on the check's declared needs and
the instance's params — the rule ``dra-lab check`` applies before a check starts (``--dry-run`` prints the
same decisions). Planning is for real Lambda instances, so the capabilities are those of a real cluster
(real GPUs, internet) with opt-in checks allowed; a disruptive check is marked as needing ``--disruptive``.
What only the live cluster can tell (e.g. whether an A100 publishes DynamicMIG partitions) is decided again
at run time, as the dry run says.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.catalog import Instance, all_instances
from checks.catalog.needs import Capabilities, Needs, why_not
from checks.plan.durations import Duration, Durations
from checks.plan.inventory import CheckInfo, collect_checks


@dataclass(frozen=True)
class Cell:
    """One check on one instance type."""

    runs: bool
    """Whether the suite would run the check there."""
    reason: str = ""
    """Why not (empty when it runs)."""
    duration: Duration | None = None
    """Expected duration when it runs."""
    opt_in: str = ""
    """A flag the run must pass for the check to run (``--disruptive``), empty if none."""


def planning_capabilities(inst: Instance) -> Capabilities:
    """What a real Lambda cluster of ``inst`` offers, with opt-in checks allowed."""
    return Capabilities(instance=inst, real_gpus=True, allow_disruptive=True, allow_internet=True)


def decide(check: CheckInfo, inst: Instance, durations: Durations) -> Cell:
    """The suite's verdict for ``check`` on ``inst`` plus its expected duration."""
    needs = Needs.from_marker_kwargs(dict(check.needs))
    reason = why_not(needs, planning_capabilities(inst))
    if reason is not None:
        return Cell(False, reason)
    return Cell(True, duration=durations(check, inst.instance_type), opt_in="--disruptive" if needs.disruptive else "")


class Matrix:
    """The full matrix, with the lookups plans and reports need."""

    def __init__(self, checks: Iterable[CheckInfo], instances: Iterable[Instance], durations: Durations) -> None:
        self.checks = list(checks)
        """Checks in the suite's order."""
        self.instances = list(instances)
        """Instance types, cheapest GPU count first (catalog order)."""
        self.cells: dict[tuple[str, str], Cell] = {
            (c.nodeid, i.instance_type): decide(c, i, durations) for c in self.checks for i in self.instances}
        """(node id, instance type) → cell."""

    @classmethod
    def build(cls, outputs: Path | None = Path("outputs"), instances: Iterable[Instance] | None = None,
              checks: Iterable[CheckInfo] | None = None) -> Matrix:
        """The matrix of the suite's checks (collected) × the catalog (or the given instances)."""
        return cls(collect_checks() if checks is None else checks,
                   all_instances() if instances is None else instances, Durations.from_outputs(outputs))

    def cell(self, check: CheckInfo, inst: Instance | str) -> Cell:
        name = inst if isinstance(inst, str) else inst.instance_type
        return self.cells[(check.nodeid, name)]

    def runnable_on(self, check: CheckInfo) -> list[Instance]:
        return [i for i in self.instances if self.cell(check, i).runs]

    def unrunnable(self) -> list[tuple[CheckInfo, str]]:
        """Checks no instance type can run, each with why (one reason, or the distinct reasons by type)."""
        out: list[tuple[CheckInfo, str]] = []
        for c in self.checks:
            if self.runnable_on(c):
                continue
            reasons: dict[str, list[str]] = {}
            for i in self.instances:
                reasons.setdefault(self.cell(c, i).reason, []).append(i.instance_type)
            if len(reasons) == 1:
                out.append((c, next(iter(reasons))))
            else:
                out.append((c, "; ".join(f"{r} ({len(ts)} types)" for r, ts in reasons.items())))
        return out

    # -- output ----------------------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Long format: one row per check × instance type."""
        out: list[dict[str, Any]] = []
        for c in self.checks:
            for i in self.instances:
                cell = self.cell(c, i)
                out.append({
                    "check": c.name, "instance": i.instance_type, "verdict": "run" if cell.runs else "skip",
                    "reason": cell.reason, "duration_s": cell.duration.seconds if cell.duration else None,
                    "duration_source": cell.duration.source if cell.duration else "",
                    "opt_in": cell.opt_in, "driver_config": c.driver_config,
                    "markers": " ".join(sorted(c.markers - {"needs", "driver", "parametrize", "roadmap"})),
                    "roadmap": " ".join(map(str, c.roadmap)),
                })
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "instances": [{"instance": i.instance_type, "gpus": i.gpu.count, "gpu": i.gpu.model,
                           "price_usd_per_hour": i.price_usd_per_hour} for i in self.instances],
            "checks": [{"check": c.name, "nodeid": c.nodeid, "driver_config": c.driver_config,
                        "roadmap": list(c.roadmap), "runnable_on": [i.instance_type for i in self.runnable_on(c)]}
                       for c in self.checks],
            "cells": self.rows(),
            "unrunnable": [{"check": c.name, "reason": r} for c, r in self.unrunnable()],
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["check"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def to_markdown(self) -> str:
        """A table (``30s`` measured, ``~30s`` estimate, ``·`` skipped), then the skip reasons and the legend."""
        head = ["check", *(i.instance_type.removeprefix("gpu_") for i in self.instances)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in self.checks:
            cells = []
            for i in self.instances:
                cell = self.cell(c, i)
                if not cell.runs or cell.duration is None:
                    cells.append("·")
                    continue
                mark = "~" if cell.duration.estimated else ("≈" if cell.duration.source.startswith("twin") else "")
                cells.append(f"{mark}{cell.duration.seconds:.0f}s" + ("*" if cell.opt_in else ""))
            lines.append(f"| {c.function} | " + " | ".join(cells) + " |")
        lines += ["", "`Ns` measured on a real cluster · `≈Ns` measured on a twin · `~Ns` estimate · "
                  "`*` opt-in (--disruptive) · `·` skipped", ""]
        unrun = self.unrunnable()
        if unrun:
            lines.append("No Lambda instance type can run:")
            lines += [f"- {c.function}: {r}" for c, r in unrun]
            lines.append("")
        lines.append("Skipped elsewhere (why, per check):")
        for c in self.checks:
            if not self.runnable_on(c):
                continue
            reasons: dict[str, list[str]] = {}
            for i in self.instances:
                cell = self.cell(c, i)
                if not cell.runs:
                    reasons.setdefault(cell.reason, []).append(i.instance_type)
            for r, ts in reasons.items():
                lines.append(f"- {c.function} on {', '.join(ts)}: {r}")
        return "\n".join(lines) + "\n"

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def render(self, fmt: str) -> str:
        renderers: dict[str, Callable[[], str]] = {"md": self.to_markdown, "csv": self.to_csv,
                                                   "json": self.to_json_text}
        return renderers[fmt]()


FORMATS = ("md", "csv", "json")
"""Output formats of ``dra-lab plan matrix``."""
