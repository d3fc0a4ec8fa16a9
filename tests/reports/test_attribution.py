"""Conversions by where they came from: only click- and view-through ones count as installs, events, revenue,
CVR, CPA and ROAS; organic and other-network ones are rows and columns of their own. Every figure is
recomputed from the raw events and the ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import func, select

from adstack.core.settings import Settings
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore
from adstack.finance.charges import apply_charge
from adstack.finance.models import LedgerEntry
from tests.attribution.helpers import Scenario, scenario
from tests.support import Api, expect

DAY = date(2025, 6, 3)
AT = datetime(2025, 6, 3, 6, tzinfo=UTC)  # 14:00 in Singapore


def _charge(s: Scenario, charge_id: str, amount: int, at: datetime, country: str) -> Event:
    """A CPA charge through the ledger, and the charge event billing writes for it."""
    result = apply_charge(
        s.api.session,
        charge_id=charge_id,
        account_id=s.account_id,
        campaign_id=s.campaign["id"],
        ad_group_id=s.ad_group["id"],
        creative_id=1,
        amount_micros=amount,
        kind="cpa",
        occurred_at=at,
    )
    s.api.session.commit()
    return Event(
        event_id=f"charge:{charge_id}",
        event_type=EventType.CHARGE,
        occurred_at=at,
        account_id=s.account_id,
        campaign_id=s.campaign["id"],
        ad_group_id=s.ad_group["id"],
        country=country,
        cost_micros=result.charged_micros,
    )


def _conversion(
    s: Scenario | None,
    account_id: int,
    n: int,
    kind: str,
    *,
    event: str = "INSTALL",
    revenue: int = 0,
    country: str = "ID",
    refund: bool = False,
) -> Event:
    ours = s is not None and kind in ("click", "view")
    return Event(
        event_id=f"conv-{account_id}-{n}",
        occurred_at=AT + timedelta(minutes=n),
        account_id=account_id,
        event_type=EventType.INSTALL if event == "INSTALL" else EventType.IN_APP_EVENT,
        campaign_id=s.campaign["id"] if ours and s else 0,
        ad_group_id=s.ad_group["id"] if ours and s else 0,
        country=country if ours else "",
        conversion_event=event,
        attribution_type=kind,
        revenue_micros=revenue,
        partner="appsflyer",
        attrs=({} if ours else {"partner_verdict": kind, "own_verdict": "organic", "verdict_reason": "x"})
        | ({"refund": "1"} if refund else {}),
    )


def _report(api: Api, s: Scenario, **params: Any) -> Any:
    params = {"start_date": DAY.isoformat(), "end_date": DAY.isoformat()} | params
    return expect(api.client.get("/api/v1/reports", params=params, headers=s.advertiser.headers), 200)


def _ratio(n: int, d: int) -> str | None:
    return None if d == 0 else str((Decimal(n) / Decimal(d)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN))


def test_only_our_conversions_count_and_every_figure_is_recomputed_from_raw_events_and_ledger(
    api: Api, settings: Settings, store: EventStore
) -> None:
    installs = scenario(api, settings, conversion_event="INSTALL", bid_micros=2_000_000)
    purchases = scenario(api, settings, conversion_event="PURCHASE", bid_micros=5_000_000)
    # Both campaigns in one account, so the report and its totals sum them.
    purchases.advertiser = installs.advertiser
    campaign = expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=installs.advertiser.headers,
            json={
                "objective": "performance",
                "name": "Purchases",
                "promotion_type": "app_download",
                "package_name": "com.example.puzzle",
            },
        ),
        201,
    )
    purchases.campaign = campaign
    purchases.ad_group = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=installs.advertiser.headers,
            json={
                "campaign_id": campaign["id"],
                "name": "Buyers",
                "placement_type": "banner",
                "bid_type": "cpa",
                "bid_micros": 5_000_000,
                "conversion_event": "PURCHASE",
            },
        ),
        201,
    )
    account = installs.account_id
    delivery: list[Event] = []
    for s, country, clicks in ((installs, "ID", 10), (purchases, "IN", 4)):
        common: dict[str, Any] = {
            "occurred_at": AT,
            "account_id": account,
            "campaign_id": s.campaign["id"],
            "ad_group_id": s.ad_group["id"],
            "country": country,
        }
        delivery += [
            Event(event_id=f"imp-{s.campaign['id']}-{i}", event_type=EventType.IMPRESSION, **common)
            for i in range(clicks * 10)
        ]
        delivery += [
            Event(event_id=f"clk-{s.campaign['id']}-{i}", event_type=EventType.CLICK, **common) for i in range(clicks)
        ]
    conversions = [
        # Installs campaign: 3 click-through installs, 1 view-through, a purchase of 4.50.
        *(_conversion(installs, account, n, "click") for n in range(3)),
        _conversion(installs, account, 3, "view"),
        _conversion(installs, account, 4, "click", event="PURCHASE", revenue=4_500_000),
        # Purchases campaign: 1 click-through install and 2 purchases (12.00 in all).
        _conversion(purchases, account, 5, "click", country="IN"),
        _conversion(purchases, account, 6, "click", event="PURCHASE", revenue=10_000_000, country="IN"),
        _conversion(purchases, account, 7, "click", event="PURCHASE", revenue=2_000_000, country="IN"),
        # ... and a refund of 2.00: it nets the revenue and is neither another purchase nor a CPA conversion.
        _conversion(purchases, account, 12, "click", event="PURCHASE", revenue=-2_000_000, country="IN",
                    refund=True),
        # Not ours: 2 organic installs and an organic purchase, 1 install another network brought.
        _conversion(None, account, 8, "organic"),
        _conversion(None, account, 9, "organic"),
        _conversion(None, account, 10, "organic", event="PURCHASE", revenue=3_000_000),
        _conversion(None, account, 11, "other"),
    ]
    charges = [_charge(installs, f"cpa:i{n}", 2_000_000, AT, "ID") for n in range(4)]
    charges += [_charge(purchases, f"cpa:p{n}", 5_000_000, AT, "IN") for n in range(2)]
    store.append(delivery + conversions + charges)

    metrics = [
        "clicks",
        "installs",
        "click_through_installs",
        "view_through_installs",
        "cvr",
        "cost_micros",
        "cpa_conversions",
        "cpa_micros",
        "in_app_events",
        "refunds",
        "revenue_micros",
        "roas",
        "organic_installs",
        "other_installs",
        "organic_in_app_events",
        "organic_revenue_micros",
        "other_revenue_micros",
    ]
    result = _report(api, installs, dimensions="campaign", metrics=metrics)
    rows = {r["campaign_id"]: r for r in result["rows"]}
    assert set(rows) == {installs.campaign["id"], purchases.campaign["id"], "Organic", "Other sources"}
    assert [r["source"] for r in result["rows"]][-2:] == ["organic", "other"]  # after the campaigns
    assert rows["Organic"]["campaign_name"] == "Organic" and rows["Other sources"]["campaign_name"] == "Other sources"

    # The same figures from the raw events and the ledger.
    raw = store.query(
        "SELECT campaign_id, attribution_type, event_type, conversion_event, count(), sum(revenue_micros), "
        "sum(cost_micros), countIf(attrs['refund'] = '1') FROM events WHERE account_id = {a:UInt64} "
        "GROUP BY campaign_id, attribution_type, event_type, conversion_event",
        {"a": account},
    ).rows
    ledger = dict(
        api.session.execute(
            select(LedgerEntry.campaign_id, -func.sum(LedgerEntry.amount_micros))
            .where(LedgerEntry.account_id == account, LedgerEntry.entry_type == "charge")
            .group_by(LedgerEntry.campaign_id)
        ).all()
    )
    cpa_event = {installs.campaign["id"]: "INSTALL", purchases.campaign["id"]: "PURCHASE"}

    def expected(campaign_id: int) -> dict[str, Any]:
        def count(**match: str) -> int:
            return sum(
                n
                for c, a, t, e, n, _, _, _ in raw
                if c == campaign_id and all({"attribution": a, "type": t, "event": e}[k] == v for k, v in match.items())
            )

        ours = [r for r in raw if r[0] == campaign_id and r[1] in ("click", "view")]
        clicks = count(type="click")
        ct = count(type="install", attribution="click")
        cost = sum(r[6] for r in raw if r[0] == campaign_id and r[2] == "charge")
        assert cost == ledger[campaign_id]  # reported cost is the ledger's
        # An in-app event with negative revenue is a refund: counted apart, not as an event or a conversion.
        refunds = sum(r[7] for r in ours if r[2] == "in_app_event")
        cpa_n = sum(r[4] for r in ours if r[3] == cpa_event[campaign_id]) - (
            refunds if cpa_event[campaign_id] != "INSTALL" else 0)
        revenue = sum(r[5] for r in ours)
        return {
            "clicks": clicks,
            "installs": ct + count(type="install", attribution="view"),
            "click_through_installs": ct,
            "view_through_installs": count(type="install", attribution="view"),
            "cvr": _ratio(ct, clicks),
            "cost_micros": cost,
            "cpa_conversions": cpa_n,
            "cpa_micros": int((Decimal(cost) / cpa_n).quantize(Decimal(1), ROUND_HALF_EVEN)),
            "in_app_events": sum(r[4] for r in ours if r[2] == "in_app_event") - refunds,
            "refunds": refunds,
            "revenue_micros": revenue,
            "roas": _ratio(revenue, cost),
        }

    for campaign_id in cpa_event:
        assert {k: rows[campaign_id][k] for k in expected(campaign_id)} == expected(campaign_id)
    assert expected(installs.campaign["id"])["cvr"] == "0.300000"  # 3 click-through installs / 10 clicks
    assert expected(purchases.campaign["id"])["cpa_micros"] == 5_000_000  # 10.00 / 2 purchases, not / 1 install
    organic = [r for r in raw if r[1] == "organic"]
    assert {
        k: rows["Organic"][k]
        for k in (
            "installs",
            "organic_installs",
            "organic_in_app_events",
            "organic_revenue_micros",
            "revenue_micros",
            "cost_micros",
        )
    } == {
        "installs": 0,
        "organic_installs": sum(r[4] for r in organic if r[2] == "install"),
        "organic_in_app_events": 1,
        "organic_revenue_micros": sum(r[5] for r in organic),
        "revenue_micros": 0,
        "cost_micros": 0,
    }
    assert rows["Other sources"]["other_installs"] == 1 and rows["Other sources"]["installs"] == 0

    totals = result["totals"]
    assert totals["installs"] == 5 and totals["view_through_installs"] == 1
    assert totals["cvr"] == _ratio(4, 14)  # never above 1: organic installs are not over our clicks
    assert totals["cost_micros"] == sum(ledger.values()) == 18_000_000
    assert totals["cpa_conversions"] == 4 + 2 and totals["cpa_micros"] == 3_000_000
    assert totals["revenue_micros"] == 14_500_000 and totals["roas"] == _ratio(14_500_000, 18_000_000)
    assert totals["in_app_events"] == 3 and totals["refunds"] == 1 and rows[purchases.campaign["id"]]["refunds"] == 1
    assert (totals["organic_installs"], totals["other_installs"], totals["organic_revenue_micros"]) == (2, 1, 3_000_000)

    # A day report keeps one row per day, with the organic figures as columns.
    by_day = _report(api, installs, granularity="day", metrics=["installs", "organic_installs", "other_installs"])
    assert by_day["rows"] == [{"date": DAY.isoformat(), "installs": 5, "organic_installs": 2, "other_installs": 1}]
    # Conversions that carry their touch's country are found by a country filter, with their cost.
    by_country = _report(
        api,
        installs,
        dimensions="country",
        countries=["IN"],
        metrics=["installs", "in_app_events", "cost_micros", "cpa_micros"],
    )
    assert by_country["rows"] == [
        {
            "country": "IN",
            "source": "ads",
            "installs": 1,
            "in_app_events": 2,
            "cost_micros": 10_000_000,
            "cpa_micros": 5_000_000,
        }
    ]
