"""The OpenRTB part of `adstack bench serving`: `POST /openrtb2/bid` throughput against the trivial `async def`
route (wrk, A B A B, on the same server as /v1/ads), and the answer time against `tmax=100`.

Bid requests are drawn from the bench's generated catalogue: half name one of our ad spaces in `tagid` (its
placement and sizes then apply), half are open-exchange inventory in the same shapes; banner sizes, interstitial
(`instl`), rewarded video (`rwdd`, MP4) and native requests as the spaces take them, from the bench's device pool,
with `tmax=100`. The answer time is measured by a small keep-alive client at a moderate load (4 connections),
from the first byte sent to the last byte read, and once more under wrk's saturating load (wrk's own p99).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adstack.bench.serving import post_lua
from adstack.serving.snapshot import Snapshot

TMAX_MS = 100
LATENCY_CONNECTIONS = 4
LATENCY_SECONDS = 3.0


_NATIVE = json.dumps({"ver": "1.2", "context": 1, "plcmttype": 1, "assets": [
    {"id": 1, "required": 1, "title": {"len": 90}},
    {"id": 2, "required": 1, "img": {"type": 3, "wmin": 300, "hmin": 150}},
    {"id": 3, "required": 0, "data": {"type": 2, "len": 140}}],
    "eventtrackers": [{"event": 1, "methods": [1]}]})


def bid_requests(rng: random.Random, snapshot: Snapshot, devices: Sequence[tuple[str, int]], count: int,
                 countries: Sequence[tuple[str, int]], alpha3: dict[str, str]) -> list[dict[str, Any]]:
    spaces = list(snapshot.ad_spaces.values())
    bodies = []
    for n in range(count):
        space = rng.choice(spaces)
        imp: dict[str, Any] = {"id": "1", "bidfloor": 0.05, "bidfloorcur": "USD", "secure": 0}
        if rng.random() < 0.5:
            imp["tagid"] = str(space.id)
        size = next(iter(space.sizes), None)
        placement = space.placement_type
        if placement == "rewarded_video":
            imp.update(rwdd=1, video={"mimes": ["video/mp4"], "minduration": 5, "maxduration": 60,
                                      "protocols": [2, 3, 5, 6, 7, 8], "w": 1280, "h": 720})
        elif placement == "newsfeed":
            imp["native"] = {"request": _NATIVE, "ver": "1.2"}
        elif size is not None:
            imp["banner"] = {"w": size[0], "h": size[1]}
            imp["instl"] = 1 if placement == "interstitial" else 0
        else:
            imp["banner"] = {"format": [{"w": 320, "h": 50}, {"w": 300, "h": 250}]}
        gaid, _ = rng.choice(devices)
        country = rng.choices([c for c, _ in countries], weights=[w for _, w in countries])[0]
        bodies.append({
            "id": f"bench-{n}", "at": rng.choice((1, 2)), "tmax": TMAX_MS, "cur": ["USD"], "imp": [imp],
            "app": {"id": str(space.publisher_id), "bundle": snapshot.publishers[space.publisher_id].app_package},
            "device": {"ifa": gaid, "os": "android", "osv": f"{rng.randint(8, 15)}.0", "lmt": 0,
                       "connectiontype": rng.choice((2, 6, 7)), "geo": {"country": alpha3.get(country, "IND")},
                       "language": "en"},
            "regs": {"coppa": 0}, "bcat": ["IAB25", "IAB26"], "badv": ["blocked.example.com"],
        })
    return bodies


def wrk_with_latency(wrk: str, args: list[str], seconds: float) -> tuple[float, float]:
    """(2xx answers per second, p99 milliseconds) of one wrk run: a no-bid is a 204, a refused request a 400,
    which is not counted."""
    from adstack.bench import parse_wrk

    out = subprocess.run([wrk, "-t1", "-c32", f"-d{seconds:.0f}s", "--latency", *args],  # noqa: S603
                         check=True, capture_output=True, text=True).stdout
    run = parse_wrk(out)
    if run.p99_ms is None:
        raise RuntimeError(f"wrk printed no latency:\n{out}")
    return run.answered_rate, run.p99_ms


async def answer_times(port: int, bodies: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Answer times in milliseconds at a moderate load, and the share of bids, no-bids and errors."""
    deadline = time.perf_counter() + seconds
    times: list[float] = []
    statuses: dict[int, int] = {}
    payloads = []
    for body in bodies:
        data = json.dumps(body).encode()
        payloads.append(b"POST /openrtb2/bid HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(payloads[i % len(payloads)])
                i += 1
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                times.append((time.perf_counter() - started) * 1000)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(n * 97) for n in range(LATENCY_CONNECTIONS)))
    times.sort()
    total = max(1, len(times))
    return {"requests": len(times), "p50_ms": round(times[len(times) // 2], 2) if times else None,
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2) if times else None,
            "over_tmax": round(sum(t > TMAX_MS for t in times) / total, 4),
            "bid_share": round(statuses.get(200, 0) / total, 3), "statuses": statuses,
            "connections": LATENCY_CONNECTIONS}


def write_inputs(tmp: Path, bodies: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    listing = tmp / "openrtb.jsonl"
    listing.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
    script = tmp / "openrtb.lua"
    script.write_text(post_lua("/openrtb2/bid"))
    return listing, script
