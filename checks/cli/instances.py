"""``dra-lab instances``: the Lambda instance catalog as a table or JSON.

Every params file is validated on the way, so this command doubles as the params linter: a bad file
stops it with one line (file, field, reason) and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from checks.catalog import Instance, all_instances, compute_domains_enabled, selection_tags

_COLUMNS = ("type", "count", "GPU", "arch", "CPU", "MIG", "CD", "$/hr")


def _row(inst: Instance) -> tuple[str, ...]:
    return (
        inst.instance_type,
        str(inst.gpu.count),
        inst.gpu.model,
        inst.gpu.architecture,
        inst.host.cpu_arch,
        "yes" if inst.gpu.mig_capable else "no",
        "yes" if inst.compute_domains else "no",
        f"{inst.price_usd_per_hour:.2f}",
    )


def render_table(instances: list[Instance]) -> str:
    """Fixed-width table, one instance type per line."""
    rows = [_COLUMNS, *(_row(i) for i in instances)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def to_json(instances: list[Instance]) -> list[dict[str, object]]:
    """The instances as plain data, plus the derived upstream CI selection for each."""
    out: list[dict[str, object]] = []
    for inst in instances:
        data: dict[str, object] = inst.model_dump(mode="json")
        data["selection_tags"] = selection_tags(inst)
        data["upstream_compute_domains"] = compute_domains_enabled(inst)
        out.append(data)
    return out


@click.command(help="List the Lambda instance types and their GPU facts (validates every params file).")
@click.option("--json", "as_json", is_flag=True, help="Print the instances as JSON.")
@click.option(
    "--params-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of <type>.yaml params files "
    "(default: $DRA_LAB_PARAMS, the checkout's params/, or the packaged copy).",
)
def command(as_json: bool, params_dir: Path | None) -> None:
    instances = all_instances(params_dir)
    if as_json:
        click.echo(json.dumps(to_json(instances), indent=2))
    else:
        click.echo(render_table(instances))
