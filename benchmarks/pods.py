"""Benchmark: pods created → Running per second through the official Python client against a twin.

Not a timed test: run ``.venv/bin/python benchmarks/pods.py [--pods 1000] [--instance gpu_1x_h100_sxm5]`` and
cite the printed number in the README (with the machine it ran on). Each pod runs the ``pause`` image (a real
``sleep infinity`` process), so the number includes the kubelet starting 1000 local processes.
"""

from __future__ import annotations

import argparse
import time
import uuid

from kubernetes import client, watch

from checks.twin.lambda_twin import Twin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--instance", default="gpu_1x_h100_sxm5")
    args = ap.parse_args()
    with Twin(args.instance) as twin:
        # The node allows 110 pods like a real kubelet's default; lift it for the benchmark.
        node = twin.node_names[0]
        twin.api.patch(client_rt("nodes"), None, node, "application/merge-patch+json",
                       {"status": {"allocatable": {"pods": str(args.pods + 50)},
                                   "capacity": {"pods": str(args.pods + 50)}}}, subresource="status")
        api_client = twin.api_client()
        v1 = client.CoreV1Api(api_client)
        ns = "bench-" + uuid.uuid4().hex[:6]
        v1.create_namespace({"metadata": {"name": ns}})
        w = watch.Watch()
        t0 = time.monotonic()
        for i in range(args.pods):
            v1.create_namespaced_pod(ns, {"metadata": {"name": f"p-{i}"}, "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})
        created = time.monotonic() - t0
        running: set[str] = set()
        for ev in w.stream(v1.list_namespaced_pod, ns, timeout_seconds=600):
            pod = ev["object"]
            if pod.status.phase == "Running":
                running.add(pod.metadata.name)
            if len(running) >= args.pods:
                w.stop()
        total = time.monotonic() - t0
        print(f"{args.pods} pods created in {created:.1f}s, all Running after {total:.1f}s: "
              f"{args.pods / total:.1f} pods/s created→Running (instance {args.instance})")
        api_client.close()


def client_rt(plural: str):  # type: ignore[no-untyped-def]
    from kubetwin.api.resources import core

    return core(plural)


if __name__ == "__main__":
    main()
