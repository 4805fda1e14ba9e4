"""``dra-lab mig GPU PROFILE[xN]... [--at PROFILE@START,...] [--json]``: ask the MIG geometry oracle.

Requests are placed one after another the way kube-scheduler would place DynamicMIG claims (first free
device in lexical name order); the answer is one line plus a slice map, e.g.::

    $ dra-lab mig A100-SXM4-40GB 1g.5gbx8
    7 fit; #8 over capacity (7 of 7 compute slices used)

GPU may be an oracle key, an nvidia-smi product name, or a Lambda instance type (its GPU model).
"""

from __future__ import annotations

import json
import re

import click

from checks.catalog import load_instance
from checks.errors import UsageError
from checks.mig import GpuGeometry, Placement, Step, gpu, predict_sequence, render_slice_map

_COUNT_RE = re.compile(r"^(?P<profile>.+?)x(?P<count>\d+)$")
_MAX_REQUESTS = 64


def resolve_gpu(text: str) -> GpuGeometry:
    """An oracle key / product name, or a Lambda instance type (``gpu_…``) mapped to its GPU's geometry."""
    if text.startswith("gpu_"):
        inst = load_instance(text)
        if inst.gpu.mig_geometry is None:
            raise UsageError(f"{inst.instance_type} carries {inst.gpu.model}, which has no MIG", where="GPU")
        return gpu(inst.gpu.mig_geometry)
    return gpu(text)


def parse_requests(geo: GpuGeometry, items: tuple[str, ...]) -> list[str]:
    """``1g.5gbx8 3g.20gb`` → eight ``1g.5gb`` then one ``3g.20gb`` (profile names checked on ``geo``)."""
    out: list[str] = []
    for item in items:
        match = _COUNT_RE.match(item)
        name, count = (match["profile"], int(match["count"])) if match else (item, 1)
        if count < 1:
            raise UsageError(f"count must be at least 1 in {item!r}", where="PROFILE")
        out.extend([geo.profile(name).name] * count)
    if len(out) > _MAX_REQUESTS:
        raise UsageError(f"{len(out)} requests; at most {_MAX_REQUESTS} at once", where="PROFILE")
    return out


def parse_at(geo: GpuGeometry, text: str | None) -> list[Placement]:
    """``1g.5gb@0,3g.20gb@4`` → placements (validated later as a whole arrangement)."""
    if not text:
        return []
    out: list[Placement] = []
    for part in text.split(","):
        name, sep, start = part.strip().rpartition("@")
        if not sep or not name or not start.isdigit():
            raise UsageError(f"expected PROFILE@START, got {part.strip()!r}", where="--at")
        out.append(Placement(geo.profile(name).name, int(start)))
    return out


def summary(steps: list[Step]) -> str:
    """``7 fit; #8 over capacity (7 of 7 compute slices used)``."""
    fitted = sum(1 for s in steps if s.placement is not None)
    parts = [f"{fitted} fit"]
    for s in steps:
        if s.placement is None:
            kind = s.result.kind.replace("_", " ")
            parts.append(f"#{s.index} {s.profile} {kind} ({s.result.reason})")
    if len({s.profile for s in steps}) == 1:
        parts = [p.replace(f" {steps[0].profile} ", " ", 1) for p in parts]
    return "; ".join(parts)


@click.command(help="Ask the MIG geometry oracle whether profiles fit on a GPU, and where they land.")
@click.argument("gpu_name", metavar="GPU")
@click.argument("profiles", metavar="PROFILE[xN]...", nargs=-1, required=True)
@click.option("--at", "at", metavar="PROFILE@START,...", default=None, help="GIs already on the GPU.")
@click.option("--minor", default=0, show_default=True, type=click.IntRange(min=0), help="GPU minor for names.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def command(gpu_name: str, profiles: tuple[str, ...], at: str | None, minor: int, as_json: bool) -> None:
    geo = resolve_gpu(gpu_name)
    requests = parse_requests(geo, profiles)
    occupied = parse_at(geo, at)
    steps = predict_sequence(geo, minor, requests, occupied)
    final = [*occupied, *(s.placement for s in steps if s.placement is not None)]
    if as_json:
        doc = {
            "gpu": geo.key,
            "occupied": [str(p) for p in occupied],
            "summary": summary(steps),
            "steps": [
                {
                    "index": s.index,
                    "profile": s.profile,
                    "kind": s.result.kind,
                    "reason": s.result.reason,
                    "limit": s.result.limit or None,
                    "placement": str(s.placement) if s.placement else None,
                    "device": s.device,
                }
                for s in steps
            ],
            "final": [str(p) for p in final],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(summary(steps))
    click.echo(render_slice_map(geo, final))
