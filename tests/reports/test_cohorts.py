"""D0 and D7 revenue and ROAS: attributed conversions in the install's whole day 0, or days 0-7, over cost,
from postbacks received over ten days; recomputed from the raw events' install times."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from adstack.events.service import EventStore
from tests.attribution import partners
from tests.attribution.helpers import Scenario, new_gaid, received_at, scenario
from tests.support import Api, expect

CPA = 2_000_000


def _send(s: Scenario, conversion: partners.Conversion, at: datetime) -> None:
    url = partners.url(Partner.APPSFLYER, s.integration()["postback_url_template"], conversion)
    with received_at(at):
        expect(s.api.client.get(url), 200)


def _ratio(numerator: int, denominator: int) -> str:
    return str((Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def test_roas_d0_d7_from_install_time(api: Api, settings: Settings, store: EventStore) -> None:
    s = scenario(api, settings, bid_micros=CPA)
    installed = utcnow().replace(microsecond=0) - timedelta(days=10)
    gaid = new_gaid()
    click = s.click(gaid, at=installed - timedelta(hours=1))
    _send(s, partners.Conversion(at=installed, click_id=click, gaid=gaid), installed + timedelta(minutes=1))
    # Purchases 1 hour, 3 days, 7 days 2 hours and 9 days after the install: cohort days 0, 3, 7 and 9.
    for after, amount in (
        (timedelta(hours=1), "1.00"),
        (timedelta(days=3), "2.00"),
        (timedelta(days=7, hours=2), "4.00"),
        (timedelta(days=9), "8.00"),
    ):
        at = installed + after
        _send(
            s,
            partners.Conversion(
                at=at,
                event="af_purchase",
                click_id=click,
                gaid=gaid,
                install_at=installed,
                revenue=Decimal(amount),
                currency="USD",
            ),
            at + timedelta(minutes=1),
        )
    # An organic device's purchase on its install day is not ours: in no cohort column.
    organic = new_gaid()
    _send(s, partners.Conversion(at=installed, gaid=organic), installed + timedelta(minutes=1))
    _send(
        s,
        partners.Conversion(
            at=installed + timedelta(hours=2),
            event="af_purchase",
            gaid=organic,
            revenue=Decimal("16.00"),
            currency="USD",
        ),
        installed + timedelta(hours=3),
    )
    s.process()
    api.settle()

    metrics = ["cost_micros", "revenue_micros", "revenue_d0_micros", "revenue_d7_micros", "roas", "roas_d0", "roas_d7"]
    report: dict[str, Any] = expect(
        api.client.get(
            "/api/v1/reports",
            headers=s.advertiser.headers,
            params={
                "start_date": (installed - timedelta(days=1)).date().isoformat(),
                "end_date": (utcnow() + timedelta(days=1)).date().isoformat(),
                "account_ids": [s.account_id],
                "time_zone": "UTC",
                "dimensions": "campaign",
                "metrics": metrics,
            },
        ),
        200,
    )
    row = next(r for r in report["rows"] if r["campaign_id"] == s.campaign["id"])

    # The same figures from the raw events: attributed conversions and the install time they carry.
    raw = store.query(
        "SELECT occurred_at, attrs['install_at'], revenue_micros, attribution_type FROM events "
        "WHERE account_id = {a:UInt64} AND event_type IN ('install', 'in_app_event')",
        {"a": s.account_id},
    ).rows
    cohort = {0: 0, 7: 0}
    revenue = 0
    for occurred_at, install_at, amount, attribution in raw:
        if attribution not in ("click", "view"):
            continue
        revenue += int(amount)
        assert install_at, "every attributed conversion carries its install's time"
        when = occurred_at if isinstance(occurred_at, datetime) else datetime.fromisoformat(str(occurred_at))
        days = (when.replace(tzinfo=None) - datetime.fromisoformat(install_at).replace(tzinfo=None)).days
        cohort[0] += int(amount) if days == 0 else 0
        cohort[7] += int(amount) if 0 <= days <= 7 else 0
    assert (revenue, cohort[0], cohort[7]) == (15_000_000, 1_000_000, 7_000_000)
    assert {m: row[m] for m in metrics} == {
        "cost_micros": CPA,
        "revenue_micros": revenue,
        "revenue_d0_micros": cohort[0],
        "revenue_d7_micros": cohort[7],
        "roas": _ratio(revenue, CPA),
        "roas_d0": _ratio(cohort[0], CPA),
        "roas_d7": _ratio(cohort[7], CPA),
    }
