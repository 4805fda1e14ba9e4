"""Interrupt matrix (issue 14 acceptance): a run against a twin is hit by SIGINT, SIGTERM or SIGKILL at a random
moment; then ``dra-lab clean`` and a fresh ``dra-lab check`` run. Counts what is left and whether runs pass.

The twin is started here and used as a real cluster would be (its kubeconfig handed to the CLI, which runs as
a subprocess exactly as people run it). For each trial:

1. ``dra-lab check --kubeconfig …`` is started and sent the trial's signal after a random delay within the
   length of an uninterrupted run (measured first);
2. ``dra-lab clean --twin-kubeconfig … --release`` (must exit 0);
3. labelled objects and helm releases left are counted (must be 0 and none);
4. a fresh ``dra-lab check`` runs (must pass) and leaves nothing either.

Run: ``.venv/bin/python benchmarks/interrupt_matrix.py --trials 6 [--select EXPR] [--seed 1]`` — prints one
line per trial and a summary table (the README cites it). Signals cycle SIGINT, SIGTERM, SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.kube import objects as K
from checks.kube.client import ClusterClient, ClusterTarget
from checks.kube.labels import RUN_ID_LABEL
from checks.twin.lambda_twin import Twin
from checks.twin.nvidia import chart_path

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


@dataclass
class Trial:
    """One row of the matrix."""

    n: int
    signal: str
    at_s: float
    interrupted_rc: int
    clean_rc: int
    clean_s: float
    left_objects: int
    left_releases: int
    fresh_rc: int
    fresh_s: float
    left_after_fresh: int


def dra_lab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from checks.cli import main; main(sys.argv[1:])",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def check_argv(kubeconfig: Path, out: Path, select: str) -> list[str]:
    argv = [sys.executable, "-c", "import sys; from checks.cli import main; main(sys.argv[1:])", "check",
            "--kubeconfig", str(kubeconfig), "--yes", "--instance", "gpu_1x_h100_sxm5", "--chart", str(chart_path()),
            "--output", str(out), "-q", "--lock-timeout", "60"]
    return argv + (["-k", select] if select else [])


def left(cluster: ClusterClient) -> tuple[int, int]:
    objects = sum(len(K.list_(cluster, plural, label_selector=RUN_ID_LABEL))
                  for plural in ("pods", "resourceclaims", "namespaces", "deviceclasses"))
    rel = json.loads(cluster.helm("list", "--all-namespaces", "--output", "json", timeout=60).stdout or "[]")
    return objects, len(rel)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the twin's context manager then stops its containers


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--select", default="", help="pytest -k for the runs (default: the whole suite)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="dra-lab-interrupts-"))
    rows: list[Trial] = []
    with Twin("gpu_1x_h100_sxm5", run_dir=work / "twin") as twin, \
            ClusterClient(ClusterTarget(twin.kubeconfig)) as cluster:
        t0 = time.monotonic()
        base = subprocess.run(check_argv(twin.kubeconfig, work / "baseline", args.select), cwd=ROOT,
                              capture_output=True, text=True, check=False)
        length = time.monotonic() - t0
        print(f"uninterrupted run: exit {base.returncode} in {length:.1f}s", flush=True)
        for n in range(args.trials):
            sig = SIGNALS[n % len(SIGNALS)]
            at = rng.uniform(1.0, max(2.0, length))
            proc = subprocess.Popen(check_argv(twin.kubeconfig, work / f"t{n}", args.select), cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=at)
            except subprocess.TimeoutExpired:
                proc.send_signal(sig)
            interrupted_rc = proc.wait(timeout=300)
            t1 = time.monotonic()
            clean = dra_lab("clean", "--twin-kubeconfig", str(twin.kubeconfig), "--release", "--timeout", "120")
            clean_s = time.monotonic() - t1
            objs, rels = left(cluster)
            t2 = time.monotonic()
            fresh = subprocess.run(check_argv(twin.kubeconfig, work / f"f{n}", args.select), cwd=ROOT,
                                   capture_output=True, text=True, check=False)
            fresh_s = time.monotonic() - t2
            after, _ = left(cluster)
            row = Trial(n, sig.name, round(at, 1), interrupted_rc, clean.returncode, round(clean_s, 1), objs, rels,
                        fresh.returncode, round(fresh_s, 1), after)
            rows.append(row)
            print(f"trial {n}: {row.signal} at {row.at_s}s -> exit {row.interrupted_rc}; clean exit {row.clean_rc} "
                  f"in {row.clean_s}s, left {row.left_objects} object(s) {row.left_releases} release(s); fresh "
                  f"check exit {row.fresh_rc} in {row.fresh_s}s, left {row.left_after_fresh}", flush=True)
            if clean.returncode != 0:
                print("  clean said: " + " | ".join(clean.stdout.splitlines()[-3:] + clean.stderr.splitlines()[-3:]))
    print()
    print("| signal | trials | clean exit 0 | objects left | releases left | fresh run passed | clean s (max) |")
    print("|---|---|---|---|---|---|---|")
    for sig in SIGNALS:
        rs = [r for r in rows if r.signal == sig.name]
        if not rs:
            continue
        print(f"| {sig.name} | {len(rs)} | {sum(r.clean_rc == 0 for r in rs)} | "
              f"{sum(r.left_objects + r.left_after_fresh for r in rs)} | {sum(r.left_releases for r in rs)} | "
              f"{sum(r.fresh_rc == 0 for r in rs)} | {max(r.clean_s for r in rs)} |")
    failures = [r for r in rows if r.clean_rc or r.left_objects or r.left_releases or r.fresh_rc
                or r.left_after_fresh]
    print(f"\n{len(rows)} trials, {len(failures)} with a problem")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
