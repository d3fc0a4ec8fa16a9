"""How long a pull waits before retrying a partner's 429 or 5xx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from adstack.connectors.base import MAX_RETRY_AFTER_SECONDS, backoff

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert backoff(1, "7", now=NOW) == 7
    assert backoff(1, "0000000000030", now=NOW) == 30
    assert backoff(1, format_datetime(NOW + timedelta(seconds=42), usegmt=True), now=NOW) == 42
    assert backoff(1, "Sat, 05 Dec 2026 10:01:30 GMT", now=NOW) == 90
    assert backoff(1, format_datetime(NOW - timedelta(minutes=1), usegmt=True), now=NOW) == 0  # already past


@pytest.mark.parametrize("value", ["99999999999999999999", "Sat, 05 Dec 2099 10:00:00 GMT"])
def test_a_long_retry_after_is_capped(value: str) -> None:
    assert backoff(1, value, now=NOW) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "1e3", "soon", "", " "])
def test_an_unreadable_retry_after_falls_back_to_exponential_backoff(value: str) -> None:
    waited = backoff(3, value, now=NOW)
    assert 4 <= waited <= 4.5


def test_a_repeated_retry_after_header_is_read_by_its_first_value() -> None:
    import httpx

    from adstack.connectors.base import ReportFetcher

    slept: list[float] = []
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers=[("Retry-After", "30"), ("Retry-After", "30")])
        return httpx.Response(200, json={"ok": True})

    fetcher = ReportFetcher(partner_name="Partner", field_name="api_token", sleep=slept.append,
                            transport=httpx.MockTransport(answer))
    assert fetcher.get("https://partner.test/report", params={}, headers={}, app="app") is not None
    assert slept == [30.0]
