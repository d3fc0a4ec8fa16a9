"""A server killed with SIGKILL in the middle of a stream of postbacks loses none that it answered 200, and
after a restart holds and attributes each exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from adstack.bench.postbacks import ServerProcess, appmetrica_postback_paths, set_up_app

pytestmark = pytest.mark.slow

KILL_AFTER = 30  # acknowledged postbacks before the kill


def _transaction_id(path: str) -> str:
    return httpx.URL(path).params["transaction_id"]


def _all(client: httpx.Client, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = client.get(url, headers=headers, params={"limit": 500, "offset": len(rows)})
        page.raise_for_status()
        rows.extend(page.json())
        if len(page.json()) < 500:
            return rows


def test_acknowledged_postbacks_survive_sigkill_exactly_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        setup = set_up_app(server.base_url)
        paths = appmetrica_postback_paths(setup["template"])
        acknowledged: list[str] = []
        lock = threading.Lock()
        killed = threading.Event()

        def send(path: str) -> None:
            try:
                response = httpx.get(server.base_url + path, timeout=10)
            except httpx.HTTPError:
                return  # the server is gone: not acknowledged, the partner would retry
            if response.status_code == 200:
                with lock:
                    acknowledged.append(path)
                    if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                        killed.set()
                        server.kill()

        with ThreadPoolExecutor(max_workers=6) as pool:
            for _ in range(400):
                if killed.is_set():
                    break
                pool.submit(send, next(paths))
                time.sleep(0.005)
        assert killed.is_set(), "the stream ended before the kill"

        server = ServerProcess(tmp_path, port=server.port).start()
        headers = {"Authorization": f"Bearer {setup['token']}"}
        app_id = setup["app"]["id"]
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            # The partner retries a few postbacks that were acknowledged: still one each.
            for path in acknowledged[:5]:
                assert client.get(path).json() == {"status": "ok"}
            # The restarted consumers store what the log holds; every acknowledged postback arrives, once.
            deadline = time.monotonic() + 120
            while True:
                stored = _all(client, f"/api/v1/apps/{app_id}/postbacks", headers)
                counts = Counter(p["fields"]["transaction_id"] for p in stored)
                missing = {_transaction_id(p) for p in acknowledged} - set(counts)
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
            assert all(n == 1 for n in counts.values())

            # The attributor picks up what the crash left pending: one conversion per stored postback.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pending = [
                    p for p in _all(client, f"/api/v1/apps/{app_id}/postbacks", headers) if p["status"] == "pending"
                ]
                if not pending:
                    break
                time.sleep(0.5)
            assert not pending
            conversions = _all(client, f"/api/v1/conversions?app_id={app_id}", headers)
            assert sorted(c["postback_id"] for c in conversions) == sorted(p["id"] for p in stored)
            assert {c["conversion_event"] for c in conversions} == {"LOGIN"}
    finally:
        server.stop()
