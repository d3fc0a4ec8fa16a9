"""`adstack bench pipeline`: what the event path sustains, measured with wrk against a trivial route.

A child `adstack serve` (the production server and settings), with an `adstack pipeline` child applying its log
as deployed at scale, is driven by wrk with a Lua script that sends a distinct signed event on every request. The
impression pixel is measured a second time on the embedded default's single process, whose in-process consumers
share its CPU (`imp_in_process`). Each endpoint is measured against a trivial `async def` route mounted
on the same app for the bench only, alternating A B A B, and reported as a ratio. Then the end-to-end delay: at a
fixed rate, how long from an impression's acknowledgement until its charge is in the ledger, and whether the lag
returns to zero. Then `POST /v1/ads` in the same topology, on a catalogue of 1,000 ad groups (the serving bench's
small size; it measures 100,000 too). Then the consumers alone, in process, per CPU-second: billing charges,
impressions through every consumer they pass (billing, touchpoints, event store, invalid-traffic verdicts) and
attributed postbacks. Last, each figure against its target.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adstack.bench import machine, median_run, parse_wrk, settle
from adstack.bench.postbacks import (
    QUALIFICATION_PDF,
    ServerProcess,
    appmetrica_postback_paths,
    attribution_figures,
    register_advertiser,
    server_environment,
    set_up_app,
    stop_process,
)
from adstack.core.timeutil import utcnow
from adstack.tracking.urls import TrackingUrls, build_tracking_urls

# What a phone's webview sends: tracking's invalid-traffic rules refuse empty and crawler user agents.
PHONE_USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; 23090RA98G) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36")
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password"


@dataclass
class Billing:
    """An approved, funded advertiser with one ad group, ready to be billed."""

    base_url: str
    secret: bytes
    token: str
    admin_token: str
    account_id: int
    campaign_id: int
    ad_group_id: int

    def urls(self, *, bid_type: str = "cpm", price_micros: int = 2_000_000, gaid: str | None = None
             ) -> TrackingUrls:
        return build_tracking_urls(
            base_url=self.base_url, secret=self.secret, impression_id=f"b{uuid.uuid4().hex}",
            account_id=self.account_id, campaign_id=self.campaign_id, ad_group_id=self.ad_group_id, creative_id=0,
            ad_space_id=0, publisher_id=0, bid_type=bid_type, price_micros=price_micros, issued_at=utcnow(),
            gaid=gaid, country="ID", placement_type="banner")


def create_admin(data_dir: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "adstack.cli", "admin", "create", "--email", ADMIN_EMAIL,  # noqa: S603
                    "--password", ADMIN_PASSWORD, "--data-dir", str(data_dir)],
                   check=True, capture_output=True, env={**server_environment(), **(env or {})})


def set_up_billing(server: ServerProcess, *, top_up_micros: int = 10**12) -> Billing:
    """Over the API: an approved advertiser, topped up, with a campaign and an ad group without budgets."""
    n = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        admin = client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        admin.raise_for_status()
        admin_headers = {"Authorization": f"Bearer {admin.json()['access_token']}"}
        body = register_advertiser(client, "Bench Billing")
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        account_id = body["account_id"]
        # No mailbox here: the admin confirms the address before the account is submitted.
        client.post(f"/api/v1/users/{body['user_id']}/verify-email", headers=admin_headers).raise_for_status()
        client.post(f"/api/v1/accounts/{account_id}/documents", headers=headers, data={"kind": "business_license"},
                    files={"file": ("licence.pdf", QUALIFICATION_PDF, "application/pdf")}).raise_for_status()
        for path, who, payload in (
                (f"/api/v1/accounts/{account_id}/submit", headers, None),
                (f"/api/v1/accounts/{account_id}/review", admin_headers, {"decision": "approve"}),
                ("/api/v1/finance/top-ups", admin_headers, {"account_id": account_id, "amount_micros": top_up_micros})):
            client.post(path, headers=who, json=payload).raise_for_status()
        campaign = client.post("/api/v1/campaigns", headers=headers, json={
            "objective": "performance", "name": f"Bench {n}", "promotion_type": "app_download",
            "package_name": f"com.bench.billing{n}"})
        campaign.raise_for_status()
        group = client.post("/api/v1/ad-groups", headers=headers, json={
            "campaign_id": campaign.json()["id"], "name": "Bench group", "placement_type": "banner",
            "bid_type": "cpc", "bid_micros": 1_000_000})
        group.raise_for_status()
    secret = (server.data_dir / "secret.key").read_text().strip().encode()
    return Billing(server.base_url, secret, body["access_token"], admin.json()["access_token"], account_id,
                   campaign.json()["id"], group.json()["id"])


# ---------- wrk ----------

LUA = """
local paths = {}
local n = 0
init = function(args)
  for line in io.lines(args[1]) do
    n = n + 1
    paths[n] = line
  end
  i = math.random(n)
end
request = function()
  i = i % n + 1
  return wrk.format("GET", paths[i], {["User-Agent"] = "PHONE_USER_AGENT"})
end
""".replace("PHONE_USER_AGENT", PHONE_USER_AGENT)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)  # noqa: S607
        found = shutil.which("wrk")
        if not found:
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)  # noqa: S607
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)  # noqa: S607
            found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    return found


def wrk_rps(base_url: str, paths: list[str], *, seconds: float, connections: int = 32, threads: int = 1) -> float:
    """2xx and 3xx answers per second wrk sustained over distinct paths (each connection walks the list)."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "distinct.lua"
        script.write_text(LUA)
        out = subprocess.run([ensure_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s",  # noqa: S603
                              "-s", str(script), base_url, "--", str(listing)],
                             check=True, capture_output=True, text=True).stdout
    run = parse_wrk(out)
    if run.not_2xx:
        print(f"  note: {run.not_2xx} answers were not 2xx/3xx, not counted", file=sys.stderr)
    return run.answered_rate


def alternate(base_url: str, trivial: list[str], target: list[str], *, rounds: int, seconds: float,
              pids: list[int]) -> dict[str, Any]:
    """A B A B: the trivial route and the target in turns, so drift in the machine hits both alike; each run
    once the server's processes (`pids`) are idle, so a trivial run does not pay for the target's backlog."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        settle(pids)
        a.append(wrk_rps(base_url, trivial, seconds=seconds))
        settle(pids)
        b.append(wrk_rps(base_url, target, seconds=seconds))
    return {"trivial_rps": round(statistics.median(a)), "rps": round(statistics.median(b)),
            "ratio": round(statistics.median(b) / statistics.median(a), 3)}


# ---------- end to end ----------


def wait_for_lag_zero(billing: Billing, *, timeout: float = 120.0, reads: int = 1) -> float:
    """Seconds until every consumer has applied everything appended, read `reads` times in a row. Each worker of
    `--workers N` answers for its own log: fresh connections, which the kernel spreads over the workers, and
    several reads make sure every worker was asked."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {billing.admin_token}"}
    caught_up = 0
    while time.monotonic() - started < timeout:
        with httpx.Client(base_url=billing.base_url, timeout=10) as client:
            status = client.get("/api/v1/pipeline/status", headers=headers).json()
        caught_up = caught_up + 1 if all(c["lag_events"] == 0 for c in status["consumers"]) else 0
        if caught_up >= reads:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError("the pipeline did not catch up in time")


class ConsumerProcess:
    """`adstack pipeline` in a child process: the consumers, apart from the serving process, as deployed at scale."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.env = {**server_environment(), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        log = open(self.data_dir / "pipeline.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.process = subprocess.Popen([sys.executable, "-m", "adstack.cli", "pipeline",  # noqa: S603
                                         "--data-dir", str(self.data_dir)], stdout=log, stderr=subprocess.STDOUT,
                                        env=self.env)
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout=60)


def impressions_in_process(*, seconds: float, rounds: int) -> dict[str, Any]:
    """`/t/imp` on the embedded default's single process, whose background consumers share its CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        create_admin(data_dir)
        server = ServerProcess(data_dir, extra_env={"ADSTACK_BENCH_ROUTES": "1"}).start()
        try:
            billing = set_up_billing(server)
            paths = [httpx.URL(billing.urls().impression_url).raw_path.decode() for _ in range(60_000)]
            assert server.process is not None
            return alternate(server.base_url, ["/bench/trivial"], paths, rounds=rounds, seconds=seconds,
                             pids=[server.process.pid])
        finally:
            server.stop()


def run(*, seconds: float = 5.0, rounds: int = 2, end_to_end_rate: int = 1500, end_to_end_seconds: float = 20.0
        ) -> dict[str, Any]:
    """The endpoints as deployed at scale: a serving process that only appends, and an `adstack pipeline`
    process that applies the log beside it (on this machine, sharing its cores with wrk and the server)."""
    from adstack.bench.consumers import billing_per_cpu_second, impressions_per_cpu_second

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        create_admin(data_dir)
        server = ServerProcess(data_dir, extra_env={"ADSTACK_BENCH_ROUTES": "1",
                                                    "ADSTACK_PIPELINE_IN_PROCESS": "false"}).start()
        consumers = ConsumerProcess(data_dir)
        try:
            billing = set_up_billing(server)
            consumers.start()
            assert server.process is not None and consumers.process is not None
            pids = [server.process.pid, consumers.process.pid]
            count = 60_000
            imps = [billing.urls() for _ in range(count)]
            trivial = ["/bench/trivial"]
            results: dict[str, Any] = {"topology": "1 serving process + 1 `adstack pipeline` process"}
            progress = lambda name: print(f"  {name}: {results[name]}", file=sys.stderr)  # noqa: E731
            results["imp"] = alternate(server.base_url, trivial, [httpx.URL(u.impression_url).raw_path.decode()
                                                                   for u in imps],
                                       rounds=rounds, seconds=seconds, pids=pids)
            progress("imp")
            wait_for_lag_zero(billing, timeout=600)
            results["click"] = alternate(server.base_url, trivial, [httpx.URL(u.click_url).raw_path.decode()
                                                                     for u in imps],
                                         rounds=rounds, seconds=seconds, pids=pids)
            progress("click")
            # Each measurement starts from a caught-up pipeline: the clicks' backlog would slow the next one (and
            # hold SQLite's write lock while the next set-up signs up).
            wait_for_lag_zero(billing, timeout=600)
            app = set_up_app(server.base_url)
            postbacks = appmetrica_postback_paths(app["template"])
            results["postback"] = alternate(server.base_url, trivial, [next(postbacks) for _ in range(count)],
                                            rounds=rounds, seconds=seconds, pids=pids)
            progress("postback")
            wait_for_lag_zero(billing, timeout=600)
            results["end_to_end"] = end_to_end(billing, rate=end_to_end_rate, seconds=end_to_end_seconds)
            progress("end_to_end")
        finally:
            consumers.stop()
            server.stop()
    results["imp_in_process"] = impressions_in_process(seconds=seconds, rounds=rounds)
    progress("imp_in_process")
    results["ads"] = ads_figures(ADS_AD_GROUPS)
    progress("ads")
    results["billing"] = median_run(billing_per_cpu_second, "per_cpu_second")
    results["impressions"] = median_run(impressions_per_cpu_second, "per_cpu_second")
    results["attribution"] = median_run(lambda: attribution_figures(20_000), "attribution_events_per_cpu_second")
    results["targets"], results["met"] = TARGETS, met(results)
    results["machine"] = machine()
    return results


ADS_AD_GROUPS = 1_000
TARGETS = {"imp_ratio_min": 0.8, "click_ratio_min": 0.7, "postback_ratio_min": 0.7, "ads_ratio_min": 0.7,
           "end_to_end_p99_seconds_max": 2.0, "billing_per_cpu_second_min": 20_000,
           "attribution_per_cpu_second_min": 10_000}


def ads_figures(ad_groups: int) -> dict[str, Any]:
    """`POST /v1/ads` with wrk against the trivial route, A B A B (`bench/serving.py`)."""
    from adstack.bench.serving import measure_http

    http = measure_http(ad_groups)
    return {"ad_groups": ad_groups, "trivial_rps": http["trivial_rps"], "rps": http["ads_rps"],
            "ratio": http["ratio"]}


def met(results: dict[str, Any]) -> dict[str, bool]:
    end_to_end = results["end_to_end"]
    return {
        "imp": results["imp"]["ratio"] >= TARGETS["imp_ratio_min"],
        "click": results["click"]["ratio"] >= TARGETS["click_ratio_min"],
        "postback": results["postback"]["ratio"] >= TARGETS["postback_ratio_min"],
        "ads": results["ads"]["ratio"] >= TARGETS["ads_ratio_min"],
        "end_to_end": end_to_end["not_acknowledged"] == 0 and end_to_end["charges"] == end_to_end["acknowledged"]
        and end_to_end["p99_ack_to_ledger_seconds"] is not None
        and end_to_end["p99_ack_to_ledger_seconds"] <= TARGETS["end_to_end_p99_seconds_max"],
        "billing": results["billing"]["per_cpu_second"] >= TARGETS["billing_per_cpu_second_min"],
        "attribution": results["attribution"]["attribution_events_per_cpu_second"]
        >= TARGETS["attribution_per_cpu_second_min"],
    }


def end_to_end(billing: Billing, *, rate: int, seconds: float, connections: int = 16) -> dict[str, Any]:
    """Impressions at a fixed rate (Debian's wrk cannot pace, so paced keep-alive connections send them); then
    each one's delay from receipt to its ledger entry, read back from the ledger's occurred and created times."""
    import asyncio

    total = int(rate * seconds)
    paths = [httpx.URL(billing.urls().impression_url).raw_path.decode() for _ in range(total)]
    port = int(httpx.URL(billing.base_url).port or 80)

    async def connection(offset: int, counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        try:
            for i in range(offset, total, connections):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(f"GET {paths[i]} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {PHONE_USER_AGENT}\r\n\r\n"
                             .encode())
                status = await reader.readline()
                while await reader.readline() not in (b"\r\n", b""):
                    pass  # headers; a 204 has no body
                counts[0 if b" 204 " in status else 1] += 1
        finally:
            writer.close()

    async def drive() -> list[int]:
        counts = [0, 0]
        await asyncio.gather(*(connection(n, counts) for n in range(connections)))
        return counts

    sent_at, since = time.monotonic(), utcnow()
    acknowledged, refused = asyncio.run(drive())
    offered_seconds = time.monotonic() - sent_at
    catch_up = wait_for_lag_zero(billing)
    # This run's charges only: the account was billed by the wrk runs before it too.
    delays = sorted(ledger_delays(billing, since=since))
    return {"rate": rate, "sent": total, "acknowledged": acknowledged, "not_acknowledged": refused,
            "send_seconds": round(offered_seconds, 2), "lag_zero_after_seconds": round(catch_up, 2),
            "charges": len(delays),
            "p50_ack_to_ledger_seconds": round(statistics.median(delays), 3) if delays else None,
            "p99_ack_to_ledger_seconds": round(delays[max(0, int(len(delays) * 0.99) - 1)], 3) if delays else None}


def ledger_delays(billing: Billing, *, since: datetime) -> list[float]:
    """Per charge of an impression received from `since` on: ledger entry created minus impression received, from
    the account's ledger."""
    headers = {"Authorization": f"Bearer {billing.token}"}
    delays: list[float] = []
    offset = 0
    with httpx.Client(base_url=billing.base_url, timeout=60) as client:
        while True:
            page = client.get(f"/api/v1/finance/accounts/{billing.account_id}/ledger", headers=headers,
                              params={"limit": 500, "offset": offset}).json()
            items = page["items"] if isinstance(page, dict) else page
            for entry in items:
                if entry["entry_type"] == "charge" and entry.get("occurred_at") and entry.get("created_at"):
                    created = datetime.fromisoformat(entry["created_at"])
                    occurred = datetime.fromisoformat(entry["occurred_at"])
                    if occurred >= since:
                        delays.append(max(timedelta(0), created - occurred).total_seconds())
            if len(items) < 500:
                return delays
            offset += 500


def main() -> None:
    print(json.dumps(run()))
