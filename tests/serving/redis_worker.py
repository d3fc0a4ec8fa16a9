"""A serving process for the scale-out test: one engine, counters in the shared Redis, one ad group.

Usage: python -m tests.serving.redis_worker REDIS_URL PREFIX. Prints "ready", then for each line "N" on stdin serves
N requests and prints "done"; on an empty line or end of input prints the micros it reserved and the ads it served.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from adstack.serving.counters import RedisCounters
from tests.serving.support import NOW, engine, group, request, snapshot

DAILY_BUDGET_MICROS = 300_000  # 300 impressions at the 1.00 CPM floor


def main(redis_url: str, prefix: str) -> None:
    counters = RedisCounters(redis_url, prefix=prefix)
    eng = engine(snapshot([group(1, daily_budget_micros=DAILY_BUDGET_MICROS, pacing="asap")]), counters=counters)
    print("ready", flush=True)
    spent = served = n = 0
    while line := sys.stdin.readline().strip():
        for _ in range(int(line)):
            n += 1
            eng._blocked_until.clear()  # keep asking Redis: the test is about the shared counter, not the local cache
            for decision in eng.decide(request(now=NOW + timedelta(milliseconds=n), floor_micros=1_000_000)):
                spent += decision.price_micros // 1000
                served += 1
        print("done", flush=True)
    counters.close()
    print(f"{spent} {served}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
