"""Benchmarks behind `adstack bench ...`; each prints one JSON line last."""

from __future__ import annotations

import os
import time
from typing import Any

REFERENCE_LOOP = 10_000_000


def machine() -> dict[str, Any]:
    """What the figures were measured on. Ratios compare within one run; per-CPU-second figures do not travel
    between machines, so each run carries the CPU time of a fixed pure-Python loop to scale them by."""
    started = time.process_time()
    total = 0
    for n in range(REFERENCE_LOOP):
        total += n
    loop_seconds = time.process_time() - started
    # The CPUs this process may run on (a container's or `taskset`'s), not those the machine has.
    return {"cpus": len(os.sched_getaffinity(0)), "reference_loop_cpu_seconds": round(loop_seconds, 3),
            "reference_loop": f"sum of range({REFERENCE_LOOP:_}) in a for loop",
            "load_average_1m": round(os.getloadavg()[0], 2)}
