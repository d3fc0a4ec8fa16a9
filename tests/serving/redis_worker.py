"""A serving process for the scale-out test: one engine, counters in the shared Redis, one ad group.

Usage: python -m tests.serving.redis_worker REDIS_URL PREFIX REQUESTS. Prints "ready", waits for a line on stdin,
serves, then prints the micros it reserved and the ads it served.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from adstack.serving.counters import RedisCounters
from tests.serving.support import NOW, engine, group, request, snapshot

DAILY_BUDGET_MICROS = 300_000  # 300 impressions at the 1.00 CPM floor


def main(redis_url: str, prefix: str, requests: int) -> None:
    counters = RedisCounters(redis_url, prefix=prefix)
    eng = engine(snapshot([group(1, daily_budget_micros=DAILY_BUDGET_MICROS, pacing="asap")]), counters=counters)
    print("ready", flush=True)
    sys.stdin.readline()
    spent = 0
    served = 0
    for n in range(requests):
        eng._blocked_until.clear()  # keep asking Redis: the test is about the shared counter, not the local cache
        for decision in eng.decide(request(now=NOW + timedelta(milliseconds=n), floor_micros=1_000_000)):
            spent += decision.price_micros // 1000
            served += 1
    counters.close()
    print(f"{spent} {served}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
