"""Local days and hours: each quarter-hour slice of the rollup is converted to the zone, then grouped."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from adstack.accounts import auth
from adstack.accounts.models import Principal
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore
from adstack.reports.models import Granularity, Metric, ReportQuery
from adstack.reports.service import run_report
from tests.support import Api


def charges(account_id: int, moments: list[datetime], cost: int = 1_000_000) -> list[Event]:
    return [
        Event(
            event_id=f"t{account_id}-{i}",
            event_type=EventType.CHARGE,
            occurred_at=m,
            account_id=account_id,
            campaign_id=1,
            cost_micros=cost,
        )
        for i, m in enumerate(moments)
    ]


def principal(api: Api, session: Session, **overrides: str) -> Principal:
    actor = api.approved_account(**overrides)
    return auth.authenticate(session, actor.token)


def by_day(session: Session, who: Principal, store: EventStore, start: date, end: date, tz: str) -> dict[str, int]:
    query = ReportQuery(
        start_date=start, end_date=end, granularity=Granularity.DAY, time_zone=tz, metrics=[Metric.COST_MICROS]
    )
    return {r["date"]: r["cost_micros"] for r in run_report(session, who, query, store=store).rows}


def expected_days(moments: list[datetime], tz: str, cost: int = 1_000_000) -> dict[str, int]:
    days: Counter[str] = Counter()
    for moment in moments:
        days[moment.astimezone(ZoneInfo(tz)).date().isoformat()] += cost
    return dict(sorted(days.items()))


def test_the_same_events_fall_on_the_right_days_in_utc_plus_8_and_utc_minus_5(
    api: Api, session: Session, store: EventStore
) -> None:
    who = principal(api, session)
    moments = [
        datetime(2025, 4, 10, h, m, tzinfo=UTC) for h, m in [(0, 30), (4, 59), (5, 0), (15, 59), (16, 0), (23, 45)]
    ]
    store.append(charges(who.account_id or 0, moments))
    start, end = date(2025, 4, 9), date(2025, 4, 11)
    shanghai = by_day(session, who, store, start, end, "Asia/Shanghai")
    bogota = by_day(session, who, store, start, end, "America/Bogota")
    assert shanghai == expected_days(moments, "Asia/Shanghai") == {"2025-04-10": 4_000_000, "2025-04-11": 2_000_000}
    assert bogota == expected_days(moments, "America/Bogota") == {"2025-04-09": 2_000_000, "2025-04-10": 4_000_000}


def test_half_hour_zone_days_split_inside_the_utc_hour(api: Api, session: Session, store: EventStore) -> None:
    who = principal(api, session, time_zone="Asia/Kolkata")
    # Midnight in Kolkata is 18:30 UTC: these two are a minute apart and on different local days.
    moments = [datetime(2025, 4, 10, 18, 29, tzinfo=UTC), datetime(2025, 4, 10, 18, 31, tzinfo=UTC)]
    store.append(charges(who.account_id or 0, moments))
    days = by_day(session, who, store, date(2025, 4, 10), date(2025, 4, 11), "Asia/Kolkata")
    assert days == {"2025-04-10": 1_000_000, "2025-04-11": 1_000_000}
    # The account's own zone is the default.
    default = run_report(
        session,
        who,
        ReportQuery(start_date=date(2025, 4, 11), end_date=date(2025, 4, 11), metrics=[Metric.COST_MICROS]),
        store=store,
    )
    assert default.time_zone == "Asia/Kolkata" and default.totals["cost_micros"] == 1_000_000


def test_new_york_days_have_23_and_25_hours_across_daylight_saving(
    api: Api, session: Session, store: EventStore
) -> None:
    who = principal(api, session, time_zone="America/New_York")
    tz = ZoneInfo("America/New_York")
    # One charge every UTC hour from 2 March to 4 November 2025 (both changes inside), cheap to load.
    spring = [datetime(2025, 3, 8, tzinfo=UTC) + timedelta(hours=h) for h in range(72)]
    autumn = [datetime(2025, 11, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(72)]
    store.append(charges(who.account_id or 0, spring + autumn))
    for moments, day in ((spring, date(2025, 3, 9)), (autumn, date(2025, 11, 2))):
        query = ReportQuery(
            start_date=day, end_date=day, granularity=Granularity.HOUR, metrics=[Metric.COST_MICROS], limit=100
        )
        result = run_report(session, who, query, store=store)
        local_hours = sorted(
            {m.astimezone(tz).replace(minute=0).isoformat() for m in moments if m.astimezone(tz).date() == day}
        )
        assert [r["hour"] for r in result.rows] == local_hours
        assert len(result.rows) == (23 if day.month == 3 else 25)
        assert result.totals["cost_micros"] == len(local_hours) * 1_000_000


def test_kolkata_hours_are_local_hours(api: Api, session: Session, store: EventStore) -> None:
    who = principal(api, session, time_zone="Asia/Kolkata")
    moments = [
        datetime(2025, 4, 10, 4, 29, tzinfo=UTC),
        datetime(2025, 4, 10, 4, 31, tzinfo=UTC),
        datetime(2025, 4, 10, 5, 15, tzinfo=UTC),
    ]
    store.append(charges(who.account_id or 0, moments))
    query = ReportQuery(
        start_date=date(2025, 4, 10),
        end_date=date(2025, 4, 10),
        granularity=Granularity.HOUR,
        metrics=[Metric.COST_MICROS],
    )
    rows = run_report(session, who, query, store=store).rows
    assert [(r["hour"], r["cost_micros"]) for r in rows] == [
        ("2025-04-10T09:00:00+05:30", 1_000_000),
        ("2025-04-10T10:00:00+05:30", 2_000_000),
    ]


def test_a_45_minute_zone_reads_the_raw_events_and_splits_days_and_hours_there(
    api: Api, session: Session, store: EventStore
) -> None:
    who = principal(api, session, time_zone="Asia/Kathmandu")
    # Midnight in Kathmandu (UTC+5:45) is 18:15 UTC: inside a half-hour slice of the rollups, so only the raw
    # events tell these apart.
    moments = [
        datetime(2025, 4, 10, 18, 14, tzinfo=UTC),
        datetime(2025, 4, 10, 18, 16, tzinfo=UTC),
        datetime(2025, 4, 10, 19, 14, tzinfo=UTC),
        datetime(2025, 4, 10, 19, 20, tzinfo=UTC),
    ]
    store.append(charges(who.account_id or 0, moments))
    days = by_day(session, who, store, date(2025, 4, 10), date(2025, 4, 11), "Asia/Kathmandu")
    assert days == expected_days(moments, "Asia/Kathmandu") == {"2025-04-10": 1_000_000, "2025-04-11": 3_000_000}
    query = ReportQuery(
        start_date=date(2025, 4, 11),
        end_date=date(2025, 4, 11),
        granularity=Granularity.HOUR,
        metrics=[Metric.COST_MICROS],
    )
    rows = run_report(session, who, query, store=store).rows
    tz = ZoneInfo("Asia/Kathmandu")
    hours = Counter(
        m.astimezone(tz).replace(minute=0).isoformat() for m in moments if m.astimezone(tz).date() == date(2025, 4, 11)
    )
    assert [(r["hour"], r["cost_micros"]) for r in rows] == [(h, n * 1_000_000) for h, n in sorted(hours.items())]
    assert [r["hour"] for r in rows] == ["2025-04-11T00:00:00+05:45", "2025-04-11T01:00:00+05:45"]
