"""``dra-lab probe``: read-only probe of this host's NVIDIA GPUs, with the IMEX verdict and the MIG oracle check.

On a machine without an NVIDIA driver it says so and exits 0: "no driver" is a finding, not an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from checks.errors import UsageError
from checks.host import HostReport, compare_with_oracle, imex_verdict, probe, render
from checks.mig.geometry import gpu as mig_gpu


def _load(path: Path) -> HostReport:
    try:
        return HostReport.from_json(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read saved probe ({exc.strerror})", where=str(path)) from exc
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise UsageError(f"not a dra-lab probe report ({exc})", where=str(path)) from exc


def oracle_lines(report: HostReport) -> list[str]:
    """One line per MIG-capable GPU model: agrees with the oracle, or each mismatch."""
    lines: list[str] = []
    mig_gpus = [g for g in report.gpus if g.mig_profiles]
    if not mig_gpus:
        return lines
    mismatches = compare_with_oracle(report, mig_gpu)
    if mismatches:
        lines.extend(f"MIG oracle mismatch: {m}" for m in mismatches)
    else:
        names = ", ".join(sorted({g.name for g in mig_gpus}))
        lines.append(f"MIG oracle: NVML profiles, ids, placements, SMs and memory agree for {names}")
    return lines


@click.command(help="Probe this host's NVIDIA GPUs (read-only): driver, MIG geometry, NVLink, IMEX, health.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report here.")
@click.option("--xid-wait", type=float, default=1.0, show_default=True,
              help="Seconds to listen for critical XID events.")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Render a saved probe report instead of probing this host.")
def command(as_json: bool, out: Path | None, xid_wait: float, from_file: Path | None) -> None:
    if xid_wait < 0 or xid_wait > 60:
        raise UsageError(f"must be between 0 and 60 seconds, got {xid_wait:g}", where="--xid-wait")
    report = _load(from_file) if from_file else probe(xid_wait_s=xid_wait)
    text = report.to_json()
    if out is not None:
        try:
            out.write_text(text + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write ({exc.strerror})", where=str(out)) from exc
    if as_json:
        click.echo(text)
        return
    click.echo(render(report))
    for line in oracle_lines(report):
        click.echo(line)
    verdict = imex_verdict(report)
    click.echo(f"IMEX verdict: {verdict.answer} — {verdict.summary}")
