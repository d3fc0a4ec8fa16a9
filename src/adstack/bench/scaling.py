"""`POST /v1/ads` on one HTTP process and on `--workers 2`, on the production server and settings.

A small demo platform is built first (advertisers, approved ads, publishers and ad spaces), its budgets lifted so
every round can fill, then `adstack serve --workers N` is started for N = 1 and N = 2 in turn, A B A B, each driven
by wrk (a Lua script sends ad requests as the demo's phones do, one distinct device per request) next to the
trivial `async def` route of the same server. Several workers share counters through Redis, so both runs use it.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from adstack.bench import machine, settle, tree_cpu_seconds
from adstack.bench.pipeline import ConsumerProcess
from adstack.bench.postbacks import stop_process
from adstack.bench.serving import post_lua, wrk_rate

# A database of its own, emptied before each use: sign-up limits and frequency caps of earlier runs are kept there.
REDIS_URL = "redis://127.0.0.1:6379/14"
BODIES = 4_000


def _environment(data_dir: Path) -> dict[str, str]:
    from adstack.bench.postbacks import server_environment

    return {**server_environment(), "ADSTACK_DATA_DIR": str(data_dir), "ADSTACK_REDIS_URL": REDIS_URL,
            "ADSTACK_BENCH_ROUTES": "1", "ADSTACK_SECRET_KEY": "bench-scaling-secret"}


def _empty_redis() -> None:
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()


def build_platform(data_dir: Path) -> list[dict[str, Any]]:
    """The demo's platform with one simulated day; every budget lifted and every account funded. Returns the
    ad spaces as the demo's phones address them."""
    _empty_redis()
    from sqlalchemy import select, update

    from adstack.accounts.models import Account, Principal, Role, User
    from adstack.campaigns.models import AdGroup
    from adstack.core.db import make_engine, make_session_factory
    from adstack.core.errors import DomainError
    from adstack.finance import topups
    from adstack.finance.models import TopUpIn
    from adstack.inventory.models import AdSpace, Publisher

    subprocess.run([sys.executable, "-m", "adstack.cli", "demo", "--data-dir", str(data_dir),  # noqa: S603
                    "--days", "1", "--requests-per-day", "50"],
                   check=True, capture_output=True, env=_environment(data_dir))
    engine = make_engine(f"sqlite:///{data_dir / 'adstack.db'}")
    try:
        with make_session_factory(engine)() as session:
            session.execute(update(AdGroup).values(daily_budget_micros=None, total_budget_micros=None,
                                                   frequency_cap_per_day=None))
            admin = session.scalars(select(User).where(User.role == Role.ADMIN)).first()
            assert admin is not None, "the demo has an admin"
            principal = Principal(user_id=admin.id, email=admin.email, role=admin.role, account_id=None)
            for account_id in session.scalars(select(Account.id)):
                with contextlib.suppress(DomainError):  # agency sub-accounts are funded by transfers only
                    topups.top_up(session, principal, TopUpIn(account_id=account_id, amount_micros=10**12))
            session.commit()
            return [{"id": space_id, "package": package, "country": country}
                    for space_id, package, country in session.execute(
                        select(AdSpace.id, Publisher.app_package, Publisher.country)
                        .join(Publisher, Publisher.id == AdSpace.publisher_id))]
    finally:
        engine.dispose()


def request_bodies(spaces: list[dict[str, Any]], count: int = BODIES, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        space = rng.choice(spaces)
        bodies.append({"ad_space_id": space["id"], "count": 1,
                       "device": {"gaid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                  "country": space["country"], "language": "en", "model": "23090RA98G",
                                  "os_version": "14", "network": "wifi"},
                       "app": {"package": space["package"], "installed_packages": []}})
    return bodies


class Server:
    """`adstack serve --workers N` as deployed at scale: the workers only append to the event log, and one
    `adstack pipeline` process beside them applies it (on this machine, on the same cores)."""

    def __init__(self, data_dir: Path, workers: int, port: int):
        self.data_dir, self.workers, self.port = data_dir, workers, port
        self.process: subprocess.Popen[bytes] | None = None
        self.consumers: ConsumerProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        """The serving supervisor (its workers are its children) and the pipeline process."""
        assert self.process is not None and self.consumers is not None and self.consumers.process is not None
        return [self.process.pid, self.consumers.process.pid]

    def __enter__(self) -> Server:
        _empty_redis()
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "adstack.cli", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--workers", str(self.workers)],
            env={**_environment(self.data_dir), "ADSTACK_PIPELINE_IN_PROCESS": "false"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.consumers = ConsumerProcess(self.data_dir, _environment(self.data_dir)).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/bench/trivial", timeout=1).is_success:
                    time.sleep(2.0)  # let every worker finish its start-up (snapshot, consumers)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"adstack serve --workers {self.workers} did not come up")

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)
        if self.consumers is not None:
            self.consumers.stop()


def _redis_cpu_seconds() -> float:
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuAccount:
    """Where the CPU of one wrk run went, per request: the serving workers, the pipeline process, Redis and wrk."""

    def __init__(self, server: Server):
        self.server = server

    def __enter__(self) -> CpuAccount:
        assert self.server.process is not None and self.server.consumers is not None
        assert self.server.consumers.process is not None
        self._pids = (self.server.process.pid, self.server.consumers.process.pid)
        self._start = self._read()
        return self

    def _read(self) -> tuple[float, float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been waited for
        return (tree_cpu_seconds(self._pids[0]), tree_cpu_seconds(self._pids[1]), _redis_cpu_seconds(),
                children.ru_utime + children.ru_stime)

    def __exit__(self, *exc: object) -> None:
        self.used = [end - start for start, end in zip(self._start, self._read(), strict=True)]

    def per_request_ms(self, requests: float) -> dict[str, float]:
        names = ("serving_workers", "pipeline", "redis", "wrk")
        return {name: round(used / requests * 1000, 3) for name, used in zip(names, self.used, strict=True)}


def _fill(base_url: str, bodies: list[dict[str, Any]]) -> float:
    """The share of a sample of the bench's requests answered with an ad."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        answers = [client.post("/v1/ads", json=body) for body in bodies[:200]]
    filled = sum(bool(a.status_code == 200 and a.json().get("ads")) for a in answers)
    return filled / 200


def run(*, rounds: int = 2, seconds: float = 8.0, port: int = 18_731) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="adstack-bench-scaling-") as tmp:
        data_dir = Path(tmp) / "data"
        spaces = build_platform(data_dir)
        bodies = request_bodies(spaces)
        listing = Path(tmp) / "bodies.jsonl"
        listing.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
        script = Path(tmp) / "ads.lua"
        script.write_text(post_lua("/v1/ads"))
        ads: dict[int, list[float]] = {1: [], 2: []}
        trivial: dict[int, list[float]] = {1: [], 2: []}
        fill: dict[int, float] = {}
        cpu: dict[int, dict[str, float]] = {}
        for _ in range(rounds):
            for workers in (1, 2):
                with Server(data_dir, workers, port) as server:
                    fill[workers] = _fill(server.base_url, bodies)
                    settle(server.pids)
                    trivial[workers].append(wrk_rate([f"{server.base_url}/bench/trivial"], seconds))
                    settle(server.pids)
                    with CpuAccount(server) as account:
                        rate = wrk_rate(["-s", str(script), server.base_url, "--", str(listing)], seconds)
                    ads[workers].append(rate)
                    cpu[workers] = account.per_request_ms(rate * seconds)
    one, two = statistics.median(ads[1]), statistics.median(ads[2])
    return {"ads_rps_1_worker": round(one), "ads_rps_2_workers": round(two),
            "trivial_rps_1_worker": round(statistics.median(trivial[1])),
            "trivial_rps_2_workers": round(statistics.median(trivial[2])),
            "ads_ratio_1_worker": round(one / statistics.median(trivial[1]), 3),
            "workers_2_speedup": round(two / one, 3), "fill_1_worker": fill[1], "fill_2_workers": fill[2],
            # CPU milliseconds per ad request in the last run of each, by process: what two workers can share.
            "cpu_ms_per_request_1_worker": cpu[1], "cpu_ms_per_request_2_workers": cpu[2],
            "rounds": rounds, "seconds_per_run": seconds, "driver": "wrk -t1 -c32",
            "topology": "N serving workers beside 1 `adstack pipeline` process", "machine": machine()}


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
