"""The suite under each twin fault (kubetwin.api.faults): does it pass, or fail with lines naming the fault?

For each fault spec, ``dra-lab check --twin INSTANCE -m SELECT`` runs with ``KUBETWIN_FAULTS`` set, so the
twin the CLI starts injects it into every HTTP request of the run (the suite's client, helm, kubectl, the
emulated driver binaries). From results.json: passed/failed/error counts, and for every failure whether its
error text names the injected fault (``injected fault: …``, or the HTTP status the fault answers with).

Run: ``.venv/bin/python benchmarks/faults.py [--select fastfeedback] [--instance gpu_1x_h100_sxm5]`` — prints a
table (the README cites it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPECS: tuple[str, ...] = ("", "5xx:0.05", "429:0.1:1", "drop-watch:0.5", "410:0.5", "slow:0.1:0.3", "plugin-crash",
                          "node-notready")
"""Baseline first, then one fault at a time."""
NAMES = {"5xx": ("injected fault: 5xx", "503"), "429": ("injected fault: 429", "429"),
         "drop-watch": ("injected fault: drop-watch",), "410": ("injected fault: 410", "410", "Expired"),
         "slow": ("injected fault: slow",), "plugin-crash": ("injected fault: crash",),
         "node-notready": ("NodeStatusUnknown", "Kubelet stopped posting node status", "NotReady",
                           "node.kubernetes.io/unreachable")}
"""Texts by which a failure names each fault."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--select", default="fastfeedback", help="pytest -m expression ('' = the whole suite)")
    ap.add_argument("--instance", default="gpu_1x_h100_sxm5")
    ap.add_argument("--specs", nargs="*", default=list(SPECS), help="fault specs to run ('' = no fault)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dra-lab-faults-"))
    print("| fault | exit | passed | failed+error | failures naming the fault | seconds |")
    print("|---|---|---|---|---|---|")
    for i, spec in enumerate(args.specs):
        out = work / f"run{i}"
        env = {**os.environ, "KUBETWIN_FAULTS": spec}
        argv = [sys.executable, "-c", "import sys; from checks.cli import main; main(sys.argv[1:])", "check",
                "--twin", args.instance, "--output", str(out), "-q"] + (["-m", args.select] if args.select else [])
        t0 = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1200)
        took = time.monotonic() - t0
        try:
            doc = json.loads((out / "results.json").read_text())
        except (OSError, ValueError):
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
            print(f"| {spec or 'none'} | {proc.returncode} | - | - | no results.json: {tail[:150]} | {took:.0f} |")
            continue
        bad = [c for c in doc["checks"] if c["outcome"] in ("failed", "error")]
        passed = sum(c["outcome"] == "passed" for c in doc["checks"])
        kind = spec.split(":")[0]
        named = sum(any(t in c["error"] for t in NAMES.get(kind, ())) for c in bad)
        print(f"| {spec or 'none'} | {proc.returncode} | {passed} | {len(bad)} | "
              f"{f'{named}/{len(bad)}' if bad else '-'} | {took:.0f} |", flush=True)
        for c in bad:
            first = (c["error"].splitlines() or [""])[0]
            print(f"|   | | | | {c['nodeid'].split('::')[-1]}: {first[:160]} | |", flush=True)


if __name__ == "__main__":
    main()
