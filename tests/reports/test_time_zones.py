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


def wall_clock_hour(moment: datetime, tz: ZoneInfo) -> str:
    """The hour the zone's clock read at the moment, as a report row names it: its :00 in the zone, and where the
    clock read that :00 twice (it went back over it) the later reading for a moment after the change."""
    local = moment.astimezone(tz)
    top = local.replace(minute=0, second=0, microsecond=0, fold=0)
    later = top.replace(fold=1)
    offset, later_offset = top.utcoffset(), later.utcoffset()
    assert offset is not None and later_offset is not None
    if later_offset < offset and local.utcoffset() == later_offset:
        top = later
    return top.isoformat()


# Lord Howe's clocks move by 30 minutes, Chatham's (UTC+12:45/+13:45) by an hour at :45, New York's by an hour.
CHANGES = [
    ("Australia/Lord_Howe", date(2025, 4, 6)),
    ("Australia/Lord_Howe", date(2025, 10, 5)),
    ("Pacific/Chatham", date(2025, 4, 6)),
    ("Pacific/Chatham", date(2025, 9, 28)),
    ("America/New_York", date(2025, 3, 9)),
    ("America/New_York", date(2025, 11, 2)),
    ("Asia/Kolkata", date(2025, 4, 6)),
]


def test_hours_are_the_local_clock_hours_across_half_hour_and_45_minute_changes(
    api: Api, session: Session, store: EventStore
) -> None:
    who = principal(api, session)
    moments: set[datetime] = set()
    for tz_name, day in CHANGES:
        start = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(tz_name)).astimezone(UTC)
        moments |= {start + timedelta(minutes=10 * k + 7) for k in range(3 * 24 * 6)}
    ordered = sorted(moments)
    reported: dict[tuple[str, date], list[str]] = {}
    store.append(charges(who.account_id or 0, ordered))
    for tz_name, day in CHANGES:
        tz = ZoneInfo(tz_name)
        query = ReportQuery(start_date=day, end_date=day, granularity=Granularity.HOUR, metrics=[Metric.COST_MICROS],
                            time_zone=tz_name, limit=100)
        rows = run_report(session, who, query, store=store).rows
        on_day = [m for m in ordered if m.astimezone(tz).date() == day]
        expected = Counter(wall_clock_hour(m, tz) for m in on_day)
        # In the order the hours began.
        hours = sorted(expected, key=lambda h: min(m for m in on_day if wall_clock_hour(m, tz) == h))
        assert [(r["hour"], r["cost_micros"]) for r in rows] == [(h, expected[h] * 1_000_000) for h in hours], tz_name
        assert all(r["hour"][14:19] == "00:00" for r in rows)
        assert by_day(session, who, store, day, day, tz_name) == {day.isoformat(): len(on_day) * 1_000_000}
        reported[(tz_name, day)] = [r["hour"][11:] for r in rows]
    # Lord Howe's clocks go back from 02:00 to 01:30: the repeated half hour is more of 01:00, and 02:00 starts on
    # time; going forward from 02:00 to 02:30, the hour 02 is half an hour long.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    around = [datetime(2025, 4, 5, 14, 40, tzinfo=UTC) + timedelta(minutes=30 * k) for k in range(3)]
    assert [wall_clock_hour(m, lord_howe) for m in around] == [
        "2025-04-06T01:00:00+11:00", "2025-04-06T01:00:00+11:00", "2025-04-06T02:00:00+10:30"]
    assert reported[("Australia/Lord_Howe", date(2025, 4, 6))][:4] == [
        "00:00:00+11:00", "01:00:00+11:00", "02:00:00+10:30", "03:00:00+10:30"]
    assert reported[("Australia/Lord_Howe", date(2025, 10, 5))][:4] == [
        "00:00:00+10:30", "01:00:00+10:30", "02:00:00+10:30", "03:00:00+11:00"]
    assert len(reported[("America/New_York", date(2025, 11, 2))]) == 25
