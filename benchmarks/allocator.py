"""Allocator throughput: claims allocated per second on an 8×H100 SXM5 node with DynamicMIG.

Every profile × placement of all 8 GPUs is published (split counter slice, 1.36 layout), so the
search walks ~230 devices. One pod after another asks for one MIG device (cycling through the 1g,
2g and 3g profiles) until the node is full; each allocation is added to the allocated state, as the
scheduler's assume cache does. The allocator's cross-call cache is used as the scheduler uses it.

Run: ``.venv/bin/python benchmarks/allocator.py`` — prints claims/s (the README cites it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.mig.geometry import gpu
from kubetwin.scheduler.dra.allocator import AllocatedState, AllocatorCache, allocate
from tests.twin_dynmig import GPU_CLASS, MIG_CLASS, claim, dynmig_slices, exactly, node, profile_is


def main() -> None:
    geo = gpu("H100-SXM5-80GB")
    slices = dynmig_slices(geo, "node-a", gpus=8)
    for i, s in enumerate(slices):
        s["metadata"]["resourceVersion"] = str(100 + i)
        s["metadata"]["uid"] = f"slice-{i}"
    the_node = node("node-a")
    profiles = ["1g.10gb", "2g.20gb", "3g.40gb"]
    cache = AllocatorCache()
    rounds = 3
    allocated = 0
    start = time.perf_counter()
    for _ in range(rounds):
        state = AllocatedState()
        i = 0
        misses = 0
        while misses < len(profiles):
            prof = profiles[i % len(profiles)]
            c = claim(f"c{i}", [exactly("mig", "mig.nvidia.com", profile_is(prof))])
            out = allocate(the_node, [c], slices=slices, classes=[MIG_CLASS, GPU_CLASS], allocated_state=state,
                           cache=cache)
            i += 1
            if out.allocations is None:
                misses += 1
                continue
            misses = 0
            state.add_allocation(out.allocations[0])
            allocated += 1
    elapsed = time.perf_counter() - start
    n_devices = sum(len(s["spec"].get("devices") or []) for s in slices)
    print(f"{allocated / elapsed:.1f} claims/s ({allocated} claims in {elapsed:.2f}s; 8xH100 DynamicMIG, "
          f"{n_devices} devices published)")


if __name__ == "__main__":
    main()
