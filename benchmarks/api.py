"""Benchmark: raw API latency of a twin through the official Python client — create, get, list, watch.

Not a timed test: run ``.venv/bin/python benchmarks/api.py [--objects 500] [--lists 20]`` and cite the printed
table in the README (with the machine it ran on). It uses ConfigMaps so the numbers are the API server's own
(HTTPS, auth, JSON, the ``Api`` semantics, the store and its watch fan-out) without the scheduler or kubelet
doing work for each object; the twin's controllers still run and watch, as they would in a check run.

What each row measures (client-side wall time per call, so client (de)serialisation is included):

* ``create``: ``create_namespaced_config_map`` one after another;
* ``get``: ``read_namespaced_config_map`` of random existing objects;
* ``list``: ``list_namespaced_config_map`` of the namespace holding every created object;
* ``watch``: time from calling ``create`` until a watch stream opened beforehand (on another connection,
  in another thread) delivers the ADDED event for that object.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from checks.twin.lambda_twin import Twin, TwinOptions


def _row(name: str, samples: list[float], *, rate: bool = True) -> str:
    """One table row: count, calls/s (sequential; not for watch delivery), p50/p90/p99/max in milliseconds."""
    s = sorted(samples)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))] * 1000

    per_s = f"{len(s) / sum(s):>8.0f}" if rate and sum(s) > 0 else f"{'—':>8}"
    return (f"| {name:<7} | {len(s):>5} | {per_s} | {q(0.5):>7.2f} | {q(0.9):>7.2f} | {q(0.99):>7.2f} | "
            f"{s[-1] * 1000:>8.2f} |")


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=500, help="ConfigMaps to create (and watch)")
    ap.add_argument("--gets", type=int, default=500, help="reads of random existing objects")
    ap.add_argument("--lists", type=int, default=20, help="lists of the namespace with every object in it")
    ap.add_argument("--instance", default="gpu_1x_h100_sxm5")
    args = ap.parse_args()
    rng = random.Random(1)
    with Twin(args.instance, options=TwinOptions()) as twin:
        api_client = twin.api_client()
        watch_client = twin.api_client()
        v1 = client.CoreV1Api(api_client)
        wv1 = client.CoreV1Api(watch_client)
        ns = "bench-" + uuid.uuid4().hex[:6]
        v1.create_namespace({"metadata": {"name": ns}})  # type: ignore[arg-type]
        payload = {f"k{i}": "v" * 64 for i in range(8)}

        # Watch first: the stream thread stamps each ADDED event on arrival.
        seen: dict[str, float] = {}
        all_seen = threading.Event()
        opened = threading.Event()
        w = watch.Watch()  # type: ignore[no-untyped-call]

        def consume() -> None:
            rv = wv1.list_namespaced_config_map(ns).metadata.resource_version  # type: ignore[union-attr]
            opened.set()
            for ev in w.stream(wv1.list_namespaced_config_map, ns,  # type: ignore[no-untyped-call]
                                resource_version=rv, timeout_seconds=600):
                if ev["type"] == "ADDED":
                    seen[ev["object"].metadata.name] = time.perf_counter()
                    if len(seen) >= args.objects:
                        all_seen.set()
                        w.stop()  # type: ignore[no-untyped-call]

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        opened.wait(30)
        creates: list[float] = []
        started: dict[str, float] = {}
        for i in range(args.objects):
            name = f"cm-{i}"
            body = {"metadata": {"name": name, "labels": {"bench": "api"}}, "data": payload}
            started[name] = time.perf_counter()
            creates.append(_timed(lambda b=body: v1.create_namespaced_config_map(ns, b)))  # type: ignore[misc]
        all_seen.wait(120)
        delivered = [seen[n] - started[n] for n in started if n in seen]
        names = [f"cm-{rng.randrange(args.objects)}" for _ in range(args.gets)]
        gets = [_timed(lambda n=n: v1.read_namespaced_config_map(n, ns)) for n in names]  # type: ignore[misc]
        lists = [_timed(lambda: v1.list_namespaced_config_map(ns)) for _ in range(args.lists)]
        print(f"twin {args.instance}: {args.objects} ConfigMaps (8×64 B data), Python client over HTTPS")
        print("| op      | calls |  calls/s | p50 ms  | p90 ms  | p99 ms  |  max ms  |")
        print("|---------|------:|---------:|--------:|--------:|--------:|---------:|")
        print(_row("create", creates))
        print(_row("get", gets))
        print(_row(f"list{args.objects}", lists))
        print(_row("watch", delivered, rate=False))
        if len(delivered) < args.objects:
            print(f"watch delivered only {len(delivered)}/{args.objects} ADDED events within 120 s")
        print(f"create mean {statistics.mean(creates) * 1000:.2f} ms")
        api_client.close()
        watch_client.close()


if __name__ == "__main__":
    main()
