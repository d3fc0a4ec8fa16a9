"""Tracking tokens, click ids, the public tracking endpoints, billing once and invalid traffic."""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.tracking.tokens import TokenError, decode_token, is_valid_click_id, new_click_id, verify_click_id
from adstack.tracking.urls import build_tracking_urls, expand_macros
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Actor, Api, expect

SECRET = b"a-secret-for-tests"


def _urls(**overrides: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = dict(
        base_url="https://ads.example",
        secret=SECRET,
        impression_id="imp_1",
        account_id=7,
        campaign_id=8,
        ad_group_id=9,
        creative_id=10,
        ad_space_id=11,
        publisher_id=12,
        bid_type="cpc",
        price_micros=250_000,
        issued_at=utcnow(),
        gaid="38400000-8CF0-11BD-B23E-10B96E40000D",
        country="id",
        placement_type="banner",
    )
    values.update(overrides)
    return build_tracking_urls(**values)  # type: ignore[arg-type]


def _token(url: str) -> str:
    return url.split("t=")[1]


def test_token_round_trip_binds_every_field() -> None:
    urls = _urls()
    claims = decode_token(_token(urls.click_url), SECRET, now=utcnow())
    assert (
        claims.impression_id,
        claims.account_id,
        claims.campaign_id,
        claims.ad_group_id,
        claims.creative_id,
        claims.ad_space_id,
        claims.publisher_id,
        claims.bid_type,
        claims.price_micros,
        claims.country,
        claims.placement_type,
        claims.gaid,
    ) == ("imp_1", 7, 8, 9, 10, 11, 12, "cpc", 250_000, "ID", "banner", "38400000-8cf0-11bd-b23e-10b96e40000d")
    assert set(urls.video_urls) == {"start", "first_quartile", "midpoint", "third_quartile", "complete"}
    assert len(urls.click_url) < 300


def test_forged_tampered_and_expired_tokens_are_refused() -> None:
    token = _token(_urls().impression_url)
    body, mac = token.split(".")
    with pytest.raises(TokenError) as forged:
        decode_token(token, b"another-secret", now=utcnow())
    assert forged.value.reason == "bad_signature"
    payload = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload[10] ^= 1  # one bit of the price or an id
    tampered = base64.urlsafe_b64encode(bytes(payload)).rstrip(b"=").decode() + "." + mac
    with pytest.raises(TokenError) as changed:
        decode_token(tampered, SECRET, now=utcnow())
    assert changed.value.reason == "bad_signature"
    old = _token(_urls(issued_at=utcnow() - timedelta(hours=25)).impression_url)
    with pytest.raises(TokenError) as expired:
        decode_token(old, SECRET, now=utcnow())
    assert expired.value.reason == "expired"
    for garbage in ("", "abc", "a.b.c", "!!!.???"):
        with pytest.raises(TokenError):
            decode_token(garbage, SECRET, now=utcnow())
    # Characters outside base64url are refused, not skipped: a padded copy of a token is not the same token.
    for padded in (body[:10] + "!!!" + body[10:], body[:5] + " " + body[5:], body + "=="):
        with pytest.raises(TokenError) as malformed:
            decode_token(f"{padded}.{mac}", SECRET, now=utcnow())
        assert malformed.value.reason == "malformed"


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=64))
def test_click_ids_verify_without_a_database_and_resist_guessing(impression_id: str) -> None:
    issued = utcnow().replace(microsecond=0)
    click_id = new_click_id(impression_id, issued, SECRET)
    assert verify_click_id(click_id, SECRET) == issued
    assert click_id == new_click_id(impression_id, issued, SECRET)  # a double click is the same click
    assert not is_valid_click_id(click_id, b"other")
    flipped = click_id[:-1] + ("A" if click_id[-1] != "A" else "B")
    assert not is_valid_click_id(flipped, SECRET)


def test_macro_expansion_in_third_party_urls() -> None:
    at = utcnow()
    out = expand_macros(
        "https://m.example/i?c={click_id}&g=__GAID__&t={ts}&ag={adgroup_id}&cr=__CREATIVE_ID__"
        "&cmp={campaign_id}&keep={unknown}",
        click_id="ab_c",
        gaid="38400000-8cf0",
        timestamp=at,
        campaign_id=1,
        ad_group_id=2,
        creative_id=3,
    )
    assert out == (
        f"https://m.example/i?c=ab_c&g=38400000-8cf0&t={int(at.timestamp())}&ag=2&cr=3&cmp=1&keep={{unknown}}"
    )
    assert expand_macros("x={gaid}&y=a b", gaid=None) == "x=&y=a b"
    assert expand_macros("x={click_id}", click_id="a&b=c") == "x=a%26b%3Dc"


def test_impressions_and_clicks_are_counted_and_charged_once(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc", bid_micros=300_000)
    before = s.balance_micros()
    urls = s.serve(new_gaid(), bid_type="cpc", price_micros=300_000)
    expect(api.client.get(urls.impression_url), 204)
    gif = api.client.get(urls.impression_url + "&fmt=gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif" and gif.content[:6] == b"GIF89a"
    for _ in range(3):  # the user taps three times: one click, one charge
        response = api.client.get(urls.click_url, follow_redirects=False)
        assert response.status_code == 302
        assert f"clickid={urls.click_id}" in response.headers["location"]
    assert s.balance_micros() == before - 300_000
    for event in ("start", "midpoint", "complete"):
        expect(api.client.get(urls.video_urls[event]), 204)
    expect(api.client.get(urls.impression_url.replace("/t/imp", "/t/video") + "&e=halfway"), 422)

    cpm = s.serve(new_gaid(), bid_type="cpm", price_micros=4_000_000)
    expect(api.client.get(cpm.impression_url), 204)
    expect(api.client.get(cpm.impression_url), 204)
    assert s.balance_micros() == before - 300_000 - 4_000


def test_refused_tokens_answer_400_and_are_kept_as_invalid_traffic(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    good = s.serve(new_gaid(), price_micros=500_000)
    body, mac = _token(good.click_url).split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    expired = s.serve(new_gaid(), price_micros=500_000, issued_at=utcnow() - timedelta(days=2))
    cases = [
        (f"/t/click?t={tampered}", "invalid_signature"),
        (f"/t/imp?t={body}.{'x' * 22}", "invalid_signature"),
        (expired.click_url, "expired_token"),
        ("/t/imp?t=garbage", "malformed_token"),
    ]
    for url, code in cases:
        error = expect(api.client.get(url, follow_redirects=False), 400)["error"]
        assert error["code"] == code and error["fields"][0]["field"] == "t"
    assert s.balance_micros() == before
    api.settle()
    summary = expect(api.client.get("/api/v1/tracking/invalid", headers=s.admin.headers), 200)
    assert summary["by_reason"] == {"bad_signature": 2, "expired": 1, "malformed": 1}
    expired_row = next(i for i in summary["items"] if i["reason"] == "expired")
    assert expired_row["account_id"] == s.account_id  # the signature held: the ad is known
    expect(api.client.get("/api/v1/tracking/invalid", headers=s.advertiser.headers), 403)


def test_click_goes_to_the_store_or_landing_page_without_a_partner(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc")
    expect(api.client.patch(f"/api/v1/apps/{s.app['id']}", headers=s.advertiser.headers, json={"partner": None}), 200)
    response = api.client.get(s.serve(None).click_url, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"].endswith("details?id=com.example.puzzle")


def test_nul_bytes_in_a_token_are_refused_and_kept(api: Api, settings: Settings) -> None:
    admin = api.admin()
    error = expect(api.client.get("/t/imp?t=ab%00cd.ef"), 400)["error"]
    assert error["code"] in ("malformed_token", "invalid_signature")
    api.settle()
    items = expect(api.client.get("/api/v1/tracking/invalid", headers=admin.headers), 200)["items"]
    assert items[0]["token"] == "ab\\x00cd.ef"


def _media_totals(api: Api, admin: Actor, account_id: int) -> dict[str, Any]:
    """Today's totals for the account (a range around today in every zone), as platform staff see them."""
    api.settle()
    today = utcnow().date()
    body = expect(
        api.client.get(
            "/api/v1/reports",
            headers=admin.headers,
            params={
                "start_date": (today - timedelta(days=1)).isoformat(),
                "end_date": (today + timedelta(days=1)).isoformat(),
                "account_ids": [account_id],
                "metrics": ["impressions", "cost_micros", "media_cost_micros", "media_cost_impressions"],
            },
        ),
        200,
    )
    totals: dict[str, Any] = body["totals"]
    return totals


# What exchanges send in place of a price they did not fill in, or that is no price at all.
UNREADABLE_PRICES = [
    "${AUCTION_PRICE}",
    "%24%7BAUCTION_PRICE%7D",
    "-1.25",
    "-0.5",
    "abc",
    "",
    "1e3",
    "NaN",
    "Infinity",
    "0x1F",
    "1,25",
    "\u0661\u0662",
    "9" * 5000,
    "%00",
    "%FF%FE",
    "1.2.3",
    "%2B1.5",
]


def test_an_unreadable_exchange_price_counts_the_impression_with_its_media_cost_unknown(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    hits = [
        *(f"&ap={value}" for value in UNREADABLE_PRICES),
        "&ap=1.50&cur=XYZ",
        "&ap=1.50&cur=E%26R",
        "&ap=1.50&cur=" + "U" * 300,  # a currency we cannot convert
        "&ap=${AUCTION_PRICE}&fmt=gif",
    ]
    for hit in hits:
        urls = s.serve(new_gaid(), bid_type="cpm", price_micros=4_000_000)
        response = api.client.get(urls.impression_url + hit)
        assert response.status_code in (200, 204), (hit, response.status_code, response.text)
    assert s.balance_micros() == before - 4_000 * len(hits)  # each one counted and charged our price
    assert _media_totals(api, s.admin, s.account_id) == {
        "impressions": len(hits),
        "cost_micros": 4_000 * len(hits),
        "media_cost_micros": 0,
        "media_cost_impressions": 0,
    }


def test_the_exchange_price_is_media_cost_in_the_account_currency_and_leaves_the_charge_alone(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, bid_type="cpc", currency="CNY")
    before = s.balance_micros()
    # (the bid's signed currency and CPM in micros, what the exchange filled in, the media cost in CNY micros)
    hits = [
        ("USD", 2_000_000, "&ap=1.50", Decimal(1500) * Decimal("7.20")),  # no `cur`: OpenRTB's default, USD
        ("EUR", 3_000_000, "&ap=2.00&cur=EUR", Decimal(2000) * Decimal("7.20") / Decimal("0.92")),  # seeded FX
        ("CNY", 20_000_000, "&ap=0&cur=cny", Decimal(0)),
        ("CNY", 20_000_000, "&ap=%2012.5%20&cur=CNY", Decimal(12500)),
    ]
    for currency, bid, query, _ in hits:
        urls = s.serve(new_gaid(), bid_type="cpm", price_micros=30_000_000, exchange_currency=currency,
                       exchange_bid_micros=bid)
        expect(api.client.get(urls.impression_url + query), 204)
    expected = sum(int(cost.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) for *_, cost in hits)
    assert expected == 10_800 + 15_652 + 0 + 12_500
    assert s.balance_micros() == before - 30_000 * len(hits)
    assert _media_totals(api, s.admin, s.account_id) == {
        "impressions": len(hits),
        "cost_micros": 30_000 * len(hits),
        "media_cost_micros": expected,
        "media_cost_impressions": len(hits),
    }


def test_a_clearing_price_is_read_only_within_what_our_bid_signed(api: Api, settings: Settings) -> None:
    """The price can only be the exchange's for a bid of ours, in the bid's currency and never above the bid
    (OpenRTB 2.6, 4.4): an SDK pixel with `ap` added, a changed `cur`, or a price past the bid cannot inflate it."""
    s = scenario(api, settings, bid_type="cpc")
    sdk = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000)
    expect(api.client.get(sdk.impression_url + "&ap=999999999.5&cur=USD"), 204)
    other_currency = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, exchange_currency="USD",
                             exchange_bid_micros=2_200_000)
    expect(api.client.get(other_currency.impression_url + "&ap=2.00&cur=GBP"), 204)
    above_bid = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, exchange_currency="USD",
                        exchange_bid_micros=2_200_000)
    expect(api.client.get(above_bid.impression_url + "&ap=999999999&cur=USD"), 204)
    assert _media_totals(api, s.admin, s.account_id) == {
        "impressions": 3,
        "cost_micros": 3 * 2_000,  # charged our own clearing price in every case
        "media_cost_micros": 2_200,  # the bid, 2.20 CPM, for the one past it; nothing for the others
        "media_cost_impressions": 1,
    }


def test_an_impression_the_exchange_clears_at_our_bid_is_charged_no_more_than_it_reports(
    api: Api, settings: Settings
) -> None:
    """A first-price bid, or a fixed-price deal's, is charged by the exchange at what it reports (OpenRTB 2.6, 4.4:
    "the final price after discount"), so the advertiser pays the lower of our price and that. Read as media
    cost is: in the bid's currency, never above the bid; an unreadable price leaves our price."""
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    hits = [  # (the bid's currency and CPM in micros, what the exchange filled in, the charge in USD micros)
        ("USD", 2_000_000, "&ap=1.50", 1_500),
        ("USD", 2_000_000, "&ap=2.00&cur=USD", 2_000),
        ("USD", 2_000_000, "&ap=9.99", 2_000),  # past the bid: read as the bid
        ("USD", 2_000_000, "&ap=${AUCTION_PRICE}", 2_000),  # unknown: our price
        ("USD", 2_000_000, "&ap=0", 0),  # the exchange charged nothing: neither do we
        ("EUR", 1_850_000, "&ap=1.50&cur=EUR", 1_630),  # 1.50 EUR at the seeded 0.92 EUR to the USD
    ]
    for currency, bid, query, _ in hits:
        urls = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, exchange_currency=currency,
                       exchange_bid_micros=bid, clears_at_bid=True)
        expect(api.client.get(urls.impression_url + query), 204)
    second_price = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, exchange_currency="USD",
                           exchange_bid_micros=2_200_000)
    expect(api.client.get(second_price.impression_url + "&ap=1.50"), 204)  # our own auction's price stands
    charged = sum(c for *_, c in hits) + 2_000
    assert s.balance_micros() == before - charged
    assert _media_totals(api, s.admin, s.account_id)["cost_micros"] == charged


def test_a_token_says_whether_the_exchange_clears_the_bid_at_its_price() -> None:
    """Only such a bid carries the extra field: an exchange token issued before it (19 fields) still reads."""
    cleared = _urls(exchange_currency="USD", exchange_bid_micros=2_000_000, clears_at_bid=True)
    second = _urls(exchange_currency="USD", exchange_bid_micros=2_000_000)
    claims = [decode_token(_token(u.impression_url), SECRET, now=utcnow()) for u in (cleared, second)]
    assert [c.clears_at_bid for c in claims] == [True, False]
    assert [c.exchange_bid_micros for c in claims] == [2_000_000, 2_000_000]
    payload = base64.urlsafe_b64decode(_token(second.impression_url).split(".")[0] + "==").decode()
    assert len(payload.split("|")) == 19


@pytest.mark.parametrize("ivt", [True, False])
def test_an_exchanges_test_auction_is_never_billed(api: Api, settings: Settings, ivt: bool) -> None:
    settings.ivt_enabled = ivt  # not billable whether or not invalid traffic is filtered
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    urls = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, exchange_currency="USD",
                   exchange_bid_micros=2_200_000, test=True)
    expect(api.client.get(urls.impression_url + "&ap=2.00"), 204)
    assert _media_totals(api, s.admin, s.account_id)["impressions"] == 0
    assert s.balance_micros() == before
    invalid = expect(api.client.get("/api/v1/tracking/invalid", headers=s.admin.headers), 200)["items"]
    assert [item["reason"] for item in invalid] == ["test_auction"]


def test_a_billing_notice_after_the_bids_loss_notice_is_never_billed(api: Api, settings: Settings) -> None:
    """The exchange said the bid lost, then fired its billing notice: the ad was not shown on our bid. A loss
    notice after the billing notice changes nothing (the first word stands); an unsigned one (anyone can read an
    impression id in a tracking URL) and loss reason 0, "Bid Won", void nothing."""
    from urllib.parse import parse_qs, urlsplit

    from adstack.serving.openrtb.bidder import loss_signature
    from adstack.tracking.tokens import decode_token

    settings.ivt_enabled = True
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    exchange = {"bid_type": "cpm", "price_micros": 2_000_000, "exchange_currency": "USD",
                "exchange_bid_micros": 2_200_000}
    lost, won, unsigned, reason_won, same_batch = (s.serve(new_gaid(), **exchange) for _ in range(5))
    sdk = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000)

    def loss(urls: Any, reason: str = "102", *, signed: bool = True) -> None:
        token = parse_qs(urlsplit(urls.impression_url).query)["t"][0]
        bid_id = decode_token(token, settings.resolved_secret_key, now=utcnow()).impression_id
        signature = f"&s={loss_signature(settings.resolved_secret_key, bid_id)}" if signed else ""
        expect(api.client.get(f"/openrtb2/loss?i={bid_id}&r={reason}{signature}"), 204)

    loss(lost)
    loss(unsigned, signed=False)
    loss(reason_won, "0")
    loss(sdk, signed=False)
    for urls in (won, unsigned, reason_won):
        expect(api.client.get(urls.impression_url + "&ap=2.00"), 204)
    expect(api.client.get(sdk.impression_url), 204)
    expect(api.client.get(same_batch.impression_url + "&ap=2.00"), 204)
    loss(same_batch)  # after its billing notice in the log, though likely applied in the same batch
    api.settle()
    expect(api.client.get(lost.impression_url + "&ap=2.00"), 204)
    loss(won)
    totals = _media_totals(api, s.admin, s.account_id)
    assert (totals["impressions"], totals["cost_micros"]) == (5, 5 * 2_000)
    assert s.balance_micros() == before - 5 * 2_000
    invalid = expect(api.client.get("/api/v1/tracking/invalid", headers=s.admin.headers), 200)["items"]
    assert [item["reason"] for item in invalid] == ["lost_auction"]


def test_a_server_side_billing_notice_of_an_exchange_is_billed(api: Api, settings: Settings) -> None:
    """OpenRTB 2.6, 4.2.3: exchanges should fire the billing notice from their servers, with their own agent."""
    settings.ivt_enabled = True
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    exchange = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000, exchange_currency="USD",
                       exchange_bid_micros=2_200_000)
    expect(api.client.get(exchange.impression_url + "&ap=2.00", headers={"user-agent": "Go-http-client/1.1"}), 204)
    sdk = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000)
    expect(api.client.get(sdk.impression_url, headers={"user-agent": "Go-http-client/1.1"}), 204)  # a bot
    assert _media_totals(api, s.admin, s.account_id)["impressions"] == 1
    assert s.balance_micros() == before - 2_000


def test_a_retried_impression_keeps_the_media_cost_of_its_first_hit(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc")
    priced = s.serve(new_gaid(), bid_type="cpm", price_micros=4_000_000, exchange_currency="USD",
                     exchange_bid_micros=12_000_000)
    for price in ("3.10", "3.10", "9.99", "${AUCTION_PRICE}"):
        expect(api.client.get(f"{priced.impression_url}&ap={price}"), 204)
    unknown_first = s.serve(new_gaid(), bid_type="cpm", price_micros=4_000_000, exchange_currency="USD",
                            exchange_bid_micros=12_000_000)
    expect(api.client.get(unknown_first.impression_url), 204)  # e.g. the VAST pixel before the billing notice
    expect(api.client.get(f"{unknown_first.impression_url}&ap=2.00"), 204)
    assert _media_totals(api, s.admin, s.account_id) == {
        "impressions": 2,
        "cost_micros": 8_000,
        "media_cost_micros": 3_100,
        "media_cost_impressions": 1,
    }
