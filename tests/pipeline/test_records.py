"""How consumers read the log's records: tokens the endpoint accepted are read back as it read them, refused
tokens are verified again, and a verdict another process stored first holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.pipeline import records
from adstack.pipeline.consumers import TRACKING_KINDS, Verdicts
from adstack.tracking.models import IvtVerdict
from adstack.tracking.tokens import TrackingClaims, decode_token, encode_token

SECRET = b"records-test-secret"
PHONE = records.Client("203.0.113.9", "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile")


def claims(
    impression_id: str, *, issued_ago: timedelta = timedelta(0), ttl: timedelta = timedelta(hours=1), gaid: str = ""
) -> TrackingClaims:
    issued = (utcnow() - issued_ago).replace(microsecond=0)
    return TrackingClaims(
        impression_id=impression_id,
        account_id=3,
        campaign_id=4,
        ad_group_id=5,
        creative_id=6,
        ad_space_id=7,
        publisher_id=8,
        bid_type="cpm",
        price_micros=1_500_000,
        issued_at=issued,
        expires_at=issued + ttl,
        country="ID",
        placement_type="banner",
        gaid=gaid,
    )


def impression(c: TrackingClaims, token: str | None = None, client: records.Client = PHONE) -> dict[str, Any]:
    return records.impression(c, token or encode_token(c, SECRET), auction_price=None, currency=None, client=client)


def test_consumers_read_what_the_endpoint_verified() -> None:
    valid = claims("imp-a", gaid="38400000-8cf0-11bd-b23e-10b96e40000d")
    token = encode_token(valid, SECRET)
    [item] = records.tracked([impression(valid, token)], TRACKING_KINDS)

    assert item.claims == decode_token(token, SECRET, now=utcnow())
    assert item.at == records.received_at(item.record)
    assert item.device is not None and item.device.md5 is not None and item.device.hash > 0


def test_records_whose_token_had_expired_when_received_or_cannot_be_read_are_skipped() -> None:
    expired = claims("imp-old", issued_ago=timedelta(hours=2), ttl=timedelta(hours=1))
    unreadable = impression(claims("imp-bad"), token="not-a-token")
    kept = impression(claims("imp-ok"))

    assert [i.record["id"] for i in records.tracked([impression(expired), unreadable, kept], TRACKING_KINDS)] == [
        "imp:imp-ok"
    ]


def test_refused_records_are_verified_again() -> None:
    held = claims("imp-held", issued_ago=timedelta(hours=2), ttl=timedelta(hours=1))
    token = encode_token(held, SECRET)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    refused = [
        records.invalid(kind="imp", reason="expired", message="", token=t, client_ip="", user_agent="")
        for t in (token, forged)
    ]

    assert records.decode(refused[0], SECRET) == held  # signature holds: counted against its ad
    assert records.decode(refused[1], SECRET) is None


@pytest.fixture
def verdict_settings(db: Engine, database_url: str, tmp_path: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, secret_key="t", environment="test", ivt_enabled=True
    )


def test_a_verdict_stored_first_elsewhere_holds_and_each_record_is_judged_once(
    db: Engine, verdict_settings: Settings
) -> None:
    factory = make_session_factory(db)
    batch = records.tracked([impression(claims(f"imp-{n}")) for n in range(5)], TRACKING_KINDS)
    with factory() as session:  # another process judged the third record first, differently
        session.add(
            IvtVerdict(
                record_id="imp:imp-2",
                kind="imp",
                received_ms=records.now_ms(),
                impression_id="imp-2",
                ad_group_id=5,
                client_ip="",
                device="",
                reasons="datacenter_ip",
            )
        )
        session.commit()

    here = Verdicts(factory, lambda: verdict_settings)
    found = here(batch)
    assert found == {f"imp:imp-{n}": (("datacenter_ip",) if n == 2 else ()) for n in range(5)}
    # A crawler's record, judged here, and what another process reads back: the same verdicts, one row each.
    crawler = records.Client("203.0.113.9", "python-requests/2.32.3")
    bot = records.tracked([impression(claims("imp-bot"), client=crawler)], TRACKING_KINDS)
    assert here(bot) == {"imp:imp-bot": ("bot_user_agent",)}
    elsewhere = Verdicts(factory, lambda: verdict_settings)
    assert elsewhere(batch + bot) == {**found, "imp:imp-bot": ("bot_user_agent",)}
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(IvtVerdict)) == 6
