"""Benchmarks behind `adstack bench ...`; each prints one JSON line last."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCE_LOOP = 10_000_000


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run printed."""

    requests: int
    rate: float  # wrk's requests per second: every answer, whatever its status
    not_2xx: int  # answers with a status other than 2xx or 3xx
    p99_ms: float | None  # with --latency

    @property
    def answered_rate(self) -> float:
        """2xx and 3xx answers per second: a refusal (a 503 under back-pressure, a 400) is not throughput."""
        return self.rate * (self.requests - self.not_2xx) / self.requests if self.requests else 0.0


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> WrkRun:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in ", out)
    if rate is None or requests is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    not_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    return WrkRun(requests=int(requests.group(1)), rate=float(rate.group(1)),
                  not_2xx=int(not_2xx.group(1)) if not_2xx else 0,
                  p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)] if p99 else None)


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


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and every live descendant (from /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack += [child for child, parent in parents.items() if parent == pid]
    return total


SETTLE_WINDOW_SECONDS = 0.5
SETTLE_IDLE_SHARE = 0.1  # of one CPU: what the processes' own timers and pollers use at rest
SETTLE_TIMEOUT_SECONDS = 60.0


def settle(pids: Sequence[int]) -> float:
    """Wait until the bench's server processes are idle: what an earlier wrk run appended has been applied, so
    each run starts on a quiet machine and pays only for the work it causes itself (in A B A B, a trivial run
    would otherwise pay for the backlog of the run before it). Returns the seconds waited."""
    started = time.monotonic()
    before = sum(tree_cpu_seconds(pid) for pid in pids)
    while time.monotonic() - started < SETTLE_TIMEOUT_SECONDS:
        time.sleep(SETTLE_WINDOW_SECONDS)
        now = sum(tree_cpu_seconds(pid) for pid in pids)
        if now - before < SETTLE_IDLE_SHARE * SETTLE_WINDOW_SECONDS:
            return time.monotonic() - started
        before = now
    print(f"  note: the server processes were still busy after {SETTLE_TIMEOUT_SECONDS:.0f} s", file=sys.stderr)
    return time.monotonic() - started


def median_run(measure: Callable[[], dict[str, Any]], figure: str, runs: int = 3) -> dict[str, Any]:
    """The run of `measure` whose `figure` is the median of `runs`, with every run's figure beside it: on a shared
    machine one run of a per-CPU-second figure varies by a fifth from the next."""
    results = sorted((measure() for _ in range(runs)), key=lambda result: float(result[figure]))
    return {**results[len(results) // 2], f"{figure}_runs": [result[figure] for result in results]}
