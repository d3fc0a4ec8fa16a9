"""General invalid traffic: the pure rules, and the pipeline filtering before billing, touchpoints and predictions,
with one verdict per record that replays keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adstack.attribution.models import Touchpoint
from adstack.core.settings import Settings
from adstack.pipeline import ivt
from adstack.tracking.models import IvtVerdict
from tests.attribution.helpers import new_gaid, received_at, scenario
from tests.support import Api, expect

PHONE = "Mozilla/5.0 (Linux; Android 13; 2201117TY) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile"
RULES = ivt.Rules(
    min_click_ms=1_000, burst_clicks=3, burst_ms=60_000, datacenter=ivt.Networks(["198.51.100.0/24", "2001:db8::/32"])
)


def obs(
    record_id: str,
    kind: str,
    at_ms: int,
    *,
    ip: str = "203.0.113.9",
    ua: str = PHONE,
    impression: str = "imp1",
    group: int = 7,
    device: str = "",
) -> ivt.Observation:
    return ivt.Observation(record_id, kind, at_ms, ip, ua, impression, group, device)


def test_a_person_clicking_after_the_impression_is_valid() -> None:
    verdicts = ivt.judge([obs("imp:1", "imp", 0), obs("click:1", "click", 5_000)], ivt.History(), RULES)
    assert verdicts == [(), ()]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ua": ""}, ivt.Reason.EMPTY_USER_AGENT),
        ({"ua": "  "}, ivt.Reason.EMPTY_USER_AGENT),
        ({"ua": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, ivt.Reason.BOT_USER_AGENT),
        ({"ua": "python-requests/2.32.3"}, ivt.Reason.BOT_USER_AGENT),
        ({"ip": "198.51.100.77"}, ivt.Reason.DATACENTER_IP),
        ({"ip": "::ffff:198.51.100.77"}, ivt.Reason.DATACENTER_IP),
        ({"ip": "2001:db8::1"}, ivt.Reason.DATACENTER_IP),
    ],
)
def test_list_based_rules(change: dict[str, Any], reason: ivt.Reason) -> None:
    [verdict] = ivt.judge([obs("imp:1", "imp", 0, **change)], ivt.History(), RULES)
    assert reason in verdict


def test_clicks_need_an_earlier_valid_impression_a_human_delay_and_no_burst() -> None:
    history = ivt.History()
    assert ivt.judge([obs("click:0", "click", 1_000, impression="never")], history, RULES) == [
        (ivt.Reason.NO_IMPRESSION,)
    ]
    # The impression arrived in an earlier batch: its receipt is in the history.
    history.impressions["imp1"] = (10_000, False)
    assert ivt.judge([obs("click:1", "click", 10_400)], history, RULES) == [(ivt.Reason.TOO_FAST,)]
    history.impressions["bad"] = (0, True)
    assert ivt.judge([obs("click:2", "click", 9_000, impression="bad", ip="203.0.113.10")], history, RULES) == [
        (ivt.Reason.INVALID_IMPRESSION,)
    ]
    # A click received before its impression did not follow it.
    assert ivt.judge([obs("click:3", "click", 9_999, ip="203.0.113.11")], history, RULES) == [
        (ivt.Reason.NO_IMPRESSION,)
    ]


def test_video_events_need_their_impression_before_or_beside_them() -> None:
    """A video event of an ad never shown is not a view; a VAST player fires the impression with the start, so
    the impression may come just after it in the same batch."""
    history = ivt.History()
    verdicts = ivt.judge([obs("video:1:start", "video", 1_000, impression="never"),
                          obs("video:2:start", "video", 1_000, impression="v2"),
                          obs("imp:2", "imp", 1_050, impression="v2"),
                          obs("video:2:complete", "video", 30_000, impression="v2")], history, RULES)
    assert verdicts == [(ivt.Reason.VIDEO_WITHOUT_IMPRESSION,), (), (), ()]
    history.impressions["bad"] = (0, True)
    assert ivt.judge([obs("video:3", "video", 5_000, impression="bad")], history, RULES) == [
        (ivt.Reason.INVALID_IMPRESSION,)
    ]


def test_bursts_count_per_ad_group_and_device_or_address_within_the_window() -> None:
    history = ivt.History(impressions={f"i{n}": (0, False) for n in range(10)})
    clicks = [
        obs(f"click:{n}", "click", 10_000 + n * 1_000, impression=f"i{n}", device="d1", ip=f"203.0.113.{n}")
        for n in range(5)
    ]
    assert [ivt.Reason.BURST in v for v in ivt.judge(clicks, history, RULES)] == [False, False, False, True, True]
    # Another ad group, or the same device after the window, starts again.
    other = obs("click:x", "click", 20_000, impression="i5", device="d1", group=8)
    later = obs("click:y", "click", 200_000, impression="i6", device="d1")
    assert ivt.judge([other, later], history, RULES) == [(), ()]


def test_networks_merge_ranges_and_read_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "datacenters.txt"
    listed.write_text("# provider ranges\n192.0.2.0/25\n192.0.2.128/25  # second half\n\n")
    networks = ivt.parse_networks("10.0.0.0/8, 2001:db8::/48", listed)
    assert networks.size == 3  # the two halves merged
    assert "192.0.2.200" in networks and "10.1.2.3" in networks and "2001:db8::5" in networks
    assert "192.0.3.1" not in networks and "not-an-ip" not in networks and "" not in networks


# ---------- through the pipeline ----------


def _invalid(api: Api, admin_headers: dict[str, str], limit: int = 200) -> dict[str, Any]:
    api.settle()
    body: dict[str, Any] = expect(
        api.client.get("/api/v1/tracking/invalid", headers=admin_headers, params={"limit": limit}), 200
    )
    return body


def _clicks_learned(api: Api) -> int:
    runtime = api.client.app.state.serving  # type: ignore[attr-defined]
    return sum(o.clicks for o in runtime.engine.outcomes.leaves().values())


def test_scripted_clicks_are_reported_never_billed_and_replays_keep_the_verdicts(api: Api, settings: Settings) -> None:
    settings.ivt_enabled = True
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    clicks_before = _clicks_learned(api)
    # The incident: one address, no user agent, no impression pixel, 60 instant clicks on $2 CPC ads.
    device = new_gaid()
    for _ in range(60):
        response = api.client.get(
            s.serve(device, price_micros=2_000_000).click_url, follow_redirects=False, headers={"User-Agent": ""}
        )
        assert response.status_code == 302
    report = _invalid(api, s.admin.headers)
    clicks = [i for i in report["items"] if i["kind"] == "click"]
    assert len(clicks) == 60 and report["total"] == 60
    assert all(i["reason"] == "empty_user_agent" and "click_without_impression" in i["message"] for i in clicks)
    assert report["by_reason"] == {"empty_user_agent": 60}
    assert s.balance_micros() == before  # 0 billed
    assert _clicks_learned(api) == clicks_before  # predictions never saw them
    assert api.session.scalar(select(func.count()).select_from(Touchpoint)) == 0

    # A person on another address: the impression pixel from a phone, and the click seconds later, in a later
    # batch.
    phone = TestClient(api.client.app, client=("203.0.113.7", 50000), headers={"User-Agent": PHONE})
    now = datetime.now(UTC)
    urls = s.serve(new_gaid(), price_micros=2_000_000, issued_at=now - timedelta(seconds=30))
    with received_at(now - timedelta(seconds=20)):
        expect(phone.get(urls.impression_url), 204)
    api.settle()
    assert phone.get(urls.click_url, follow_redirects=False).status_code == 302
    assert s.balance_micros() == before - 2_000_000
    assert _invalid(api, s.admin.headers)["total"] == 60
    assert api.session.scalar(select(func.count()).select_from(Touchpoint)) == 2  # the impression and the click

    # Replay everything from the start in a "new process" whose rules would now judge differently: the stored
    # verdicts hold, so nothing is billed, reported or touched twice, and nothing changes sides.
    pipeline = api.client.app.state.pipeline  # type: ignore[attr-defined]
    for path in pipeline.log.directory.glob("consumer-*.json"):
        path.unlink()
    pipeline.consumers[0].context.verdicts._cache.clear()
    settings.ivt_min_click_ms, settings.ivt_click_burst_limit = 0, 1
    assert api.settle() > 60
    assert s.balance_micros() == before - 2_000_000
    again = _invalid(api, s.admin.headers)
    assert again["total"] == 60 and again["by_reason"] == {"empty_user_agent": 60}
    assert api.session.scalar(select(func.count()).select_from(Touchpoint)) == 2
    assert api.session.scalar(select(func.count()).where(IvtVerdict.reasons != "")) == 60


def test_bots_on_impressions_are_not_billed_and_their_clicks_are_invalid(api: Api, settings: Settings) -> None:
    settings.ivt_enabled = True
    settings.ivt_datacenter_networks = "198.51.100.0/24"
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    bot = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
    now = datetime.now(UTC)
    urls = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, issued_at=now - timedelta(seconds=30))
    with received_at(now - timedelta(seconds=20)):
        expect(api.client.get(urls.impression_url, headers={"User-Agent": bot}), 204)
    api.client.get(urls.click_url, headers={"User-Agent": bot}, follow_redirects=False)
    report = _invalid(api, s.admin.headers)
    assert {(i["kind"], i["reason"]) for i in report["items"]} == {
        ("imp", "bot_user_agent"),
        ("click", "bot_user_agent"),
    }
    assert "invalid_impression" in next(i for i in report["items"] if i["kind"] == "click")["message"]
    assert s.balance_micros() == before


def test_invalid_traffic_rows_are_bounded_per_minute_and_the_rest_counted(api: Api, settings: Settings) -> None:
    settings.invalid_traffic_rows_per_minute = 5
    s = scenario(api, settings, bid_type="cpc")
    with received_at(datetime.now(UTC).replace(second=10)):  # all within one minute
        for n in range(12):
            expect(api.client.get(f"/t/imp?t=forged{n}"), 400)
    report = _invalid(api, s.admin.headers)
    assert len(report["items"]) == 5
    assert report["total"] == 12 and report["by_reason"] == {"malformed": 12}
