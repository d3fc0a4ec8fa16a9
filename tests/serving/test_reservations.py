"""Budget reservations end in exactly one way: billed (the actual charge replaces them), given back by a loss
notice in any process sharing the counters, or expired unshown."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal, Role
from adstack.app import create_app
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.finance.charges import refund
from adstack.finance.models import EntryType, RefundIn
from adstack.serving.counters import Counters, MemoryCounters, RedisCounters
from adstack.serving.engine import DecisionEngine
from adstack.serving.runtime import DELIVERY_FILE
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
from tests.serving.support import NOW, engine, group, redis_available, request, served, snapshot
from tests.serving.support import SHARED_REDIS_URL as REDIS_URL
from tests.serving.test_api import ads_now, approved_creative, eventually
from tests.support import Actor, Api, expect

# A $1 daily budget; a lone bidder clears at the platform minimum CPM, so each served ad reserves a tenth of
# a cent and a thousand unshown ads fill the day.
DAILY = 1_000_000


@pytest.fixture(params=["memory", "redis"])
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[Counters, Counters]]:
    """The counters of two serving processes: one dictionary in memory, or two clients of one Redis."""
    if request.param == "memory":
        one = MemoryCounters()
        yield one, one
        return
    if not redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"adstack:test:{uuid.uuid4().hex}:"
    first, second = RedisCounters(REDIS_URL, prefix=prefix), RedisCounters(REDIS_URL, prefix=prefix)
    yield first, second
    first.close()
    second.close()


def _engine(counters: Counters) -> DecisionEngine:
    eng = engine(
        snapshot([group(1, bid_micros=2_000_000, daily_budget_micros=DAILY, total_budget_micros=100 * DAILY,
                        pacing="standard")]),
        counters=counters,
    )
    eng.sdk_hold_seconds = 60
    return eng


def _fill(eng: DecisionEngine) -> list[str]:
    ids = []
    while True:
        req = request()
        decisions = eng.decide(req, space=eng.state.snapshot.ad_spaces.get(req.ad_space_id))
        if not decisions:
            return ids
        ids.append(decisions[0].impression_id)


def _per_ad(eng: DecisionEngine) -> int:
    req = request()
    decision = eng.decide(req, space=eng.state.snapshot.ad_spaces.get(req.ad_space_id))[0]
    eng.release(decision)
    return next(c.amount for c in decision.claims if c.key.startswith("d:"))


def test_unshown_ads_stop_blocking_once_their_hold_expires(shared: tuple[Counters, Counters]) -> None:
    counters, _ = shared
    eng = _engine(counters)
    per_ad = _per_ad(eng)
    prefetched = _fill(eng)
    assert per_ad > 0 and len(prefetched) == DAILY // per_ad  # the day is held by ads nobody has shown yet
    assert counters.outstanding().reservations == len(prefetched)
    assert counters.expire(NOW.timestamp() + 59) == 0  # not yet
    assert counters.expire(NOW.timestamp() + 61, limit=10_000) == len(prefetched)
    assert counters.outstanding().reservations == 0
    eng.swap(eng.state)  # forget the remembered refusal, as a snapshot refresh does
    assert served(eng, now=NOW + timedelta(seconds=61)) == [1]


def test_a_billed_ad_keeps_its_actual_charge_and_nothing_more(shared: tuple[Counters, Counters]) -> None:
    counters, _ = shared
    eng = _engine(counters)
    per_ad = _per_ad(eng)
    ids = _fill(eng)
    for impression_id in ids[:100]:  # shown and billed at half the reserved price
        assert counters.settle(impression_id, per_ad // 2)
    assert not counters.settle(ids[0], per_ad // 2)  # a replayed billing batch changes nothing
    counters.expire(NOW.timestamp() + 61, limit=10_000)
    day_key = next(k for k in _keys(eng) if k.startswith("d:"))
    assert counters.get_many([day_key]) == [100 * (per_ad // 2)]


def test_a_kept_reservation_stays_on_the_counters_past_its_expiry(shared: tuple[Counters, Counters]) -> None:
    counters, other = shared
    eng = _engine(counters)
    ids = _fill(eng)
    day_key = next(k for k in _keys(eng) if k.startswith("d:"))
    held = counters.get_many([day_key])[0]
    for impression_id in ids[:100]:  # shown CPA ads, from any process
        assert other.keep(impression_id)
        assert not other.keep(impression_id) and not counters.release_held(impression_id)
    assert counters.expire(NOW.timestamp() + 61, limit=10_000) == len(ids) - 100
    assert counters.get_many([day_key]) == [held * 100 // len(ids)]
    # The total budget's and the account's counters never expire: what a CPA ad reserved there is given back, and
    # billing charges its conversions against them.
    lasting = [k for k in _keys(eng) if k.startswith(("t:", "a:"))]
    assert lasting and counters.get_many(lasting) == [0] * len(lasting)


def test_a_loss_notice_in_another_process_gives_the_reservation_back(shared: tuple[Counters, Counters]) -> None:
    bidder_counters, other_counters = shared
    bidder = _engine(bidder_counters)
    ids = _fill(bidder)
    assert _fill(bidder) == []
    for impression_id in ids[:10]:  # the exchange's loss notices reach the other process
        assert other_counters.release_held(impression_id)
        assert not other_counters.release_held(impression_id)
    bidder.swap(bidder.state)
    assert len(_fill(bidder)) == 10
    assert other_counters.outstanding().reservations == len(ids)


def _keys(eng: DecisionEngine) -> list[str]:
    g = eng.state.snapshot.ad_groups[1]
    req = request()
    from adstack.serving import eligibility

    return [c.key for c in eng._claims(g, req, eng.state, eligibility.LocalTimes(req.now), 1)]


@pytest.mark.parametrize(("budget", "status"), [("daily_budget_micros", "daily_budget_reserved"),
                                               ("total_budget_micros", "budget_reserved")])
def test_an_ad_group_whose_budget_is_held_by_unshown_ads_does_not_read_eligible(
    api: Api, budget: str, status: str
) -> None:
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    space = ad_space(
        api,
        admin,
        publisher(api, admin)["id"],
        placement_type="banner",
        accepted_formats=["image_640x100"],
        sizes=["640x100"],
        reserve_price_micros=100_000,
    )
    group = approved_ad_group(
        api,
        actor,
        admin,
        campaign(api, actor)["id"],
        placement_type="banner",
        bid_type="cpc",
        bid_micros=300_000,
        ad_space_ids=[space["id"]],
        targeting={"countries": ["ID"]},
        **{"daily_budget_micros": None, "total_budget_micros": None, budget: 50_000},
        pacing="asap",
    )
    approved_creative(api, actor, admin, group["id"])
    client = api.client
    assert eventually(lambda: bool(ads_now(client, space["id"])))
    served = 1
    while served < 2_000 and ads_now(client, space["id"]):  # prefetched by an SDK, never shown
        served += 1
    assert 1 < served < 2_000
    read = expect(client.get(f"/api/v1/ad-groups/{group['id']}", headers=actor.headers), 200)
    assert read["serving_status"] == status, read["serving_reason"]
    assert "held by ads served" in read["serving_reason"]
    counters = client.app.state.serving.engine.counters  # type: ignore[attr-defined]
    assert counters.expire(utcnow().timestamp() + 31 * 60, limit=10_000) >= served - 1  # the SDK holds ran out
    read = expect(client.get(f"/api/v1/ad-groups/{group['id']}", headers=actor.headers), 200)
    assert read["serving_status"] == "eligible"


# ---------- refunds give their budget back ----------

# A first-price auction: every click is charged the bid, and three clicks spend what each test allows.
PER_CLICK = 300_000
BILLED_CLICKS = 3


@pytest.fixture(params=["memory", "redis"])
def counters_of_serving(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The serving runtime's counters: in its memory (the embedded default), or in the real Redis under a prefix of
    this test's own."""
    if request.param == "memory":
        yield request.param
        return
    if not redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    import redis

    from adstack.serving import runtime

    prefix = f"adstack:test:{uuid.uuid4().hex}:"
    monkeypatch.setattr(runtime, "make_counters",
                        lambda _url, _deployment_prefix="adstack:": RedisCounters(REDIS_URL, prefix=prefix))
    yield request.param
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix.rstrip(":") + "*"):
        client.delete(key)
    client.close()


@contextmanager
def _running(settings: Settings, session: Session) -> Iterator[Api]:
    """The app as one process runs it, from start to stop, with a first-price auction."""
    settings.auction_type = "first_price"
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client, session)


def _zone_of_another_day() -> str:
    """An ad group zone whose date is not UTC's now, so a day counted in the wrong zone misses."""
    return "UTC+12" if utcnow().hour >= 12 else "UTC-12"


def _cpc_group(api: Api, *, funds: int, **budgets: int | None
               ) -> tuple[Actor, Actor, dict[str, Any]]:
    """An account manager, an advertiser and the ad space its one CPC ad group serves on."""
    manager = api.admin(Role.ACCOUNT_MANAGER)
    platform = api.admin()
    actor = api.approved_account(platform)
    ledger(api.session, actor.account_id, funds, EntryType.TOP_UP)
    space = ad_space(api, platform, publisher(api, platform)["id"], placement_type="banner",
                     accepted_formats=["image_640x100"], sizes=["640x100"], reserve_price_micros=100_000)
    group = approved_ad_group(api, actor, platform, campaign(api, actor)["id"], placement_type="banner",
                              bid_type="cpc", bid_micros=PER_CLICK, ad_space_ids=[space["id"]],
                              targeting={"countries": ["ID"]}, pacing="asap", time_zone=_zone_of_another_day(),
                              **{"daily_budget_micros": None, "total_budget_micros": None, **budgets})
    approved_creative(api, actor, platform, group["id"])
    return manager, actor, space


def _served(api: Api, space_id: int) -> list[Any]:
    """The first ads served once serving has them (polled: the refresher runs every second)."""
    ads: list[Any] = []
    assert eventually(lambda: bool(ads.extend(ads_now(api.client, space_id)) or ads))
    return ads


def _until_refused(api: Api, space_id: int, ads: list[Any], action: str) -> int:
    """Show each ad served, starting from `ads`, and click it (`action` "click") or not ("impression"), billing
    as it goes, until none is served; how many were."""
    done = 0
    while ads and done < 500:
        for ad in ads:
            if action == "click":
                response = api.client.get(ad["click_url"].split("testserver", 1)[1], follow_redirects=False)
                assert response.status_code == 302, response.text
            else:
                expect(api.client.get(ad["tracking"]["impression"][0].split("testserver", 1)[1]), 204)
            done += 1
        api.settle()
        ads = ads_now(api.client, space_id)
    return done


def _click_until_refused(api: Api, space_id: int) -> int:
    return _until_refused(api, space_id, _served(api, space_id), "click")


def _refresh_money(api: Api) -> None:
    """Run the money refresh the serving runtime runs every few seconds, now: what it reads is then served."""
    api.client.app.state.serving.refresh_money()  # type: ignore[attr-defined]


def _charges(api: Api, actor: Actor) -> list[str]:
    entries = expect(api.client.get(f"/api/v1/finance/accounts/{actor.account_id}/ledger", headers=actor.headers),
                     200)
    return [e["charge_id"] for e in entries if e["entry_type"] == "charge"]


def _refund(api: Api, manager: Actor, charge_id: str) -> None:
    expect(api.client.post("/api/v1/finance/refunds", headers=manager.headers,
                           json={"charge_id": charge_id, "remarks": "invalid traffic"}), 201)


@pytest.mark.parametrize("limit", ["daily_budget_micros", "total_budget_micros", "funds"])
def test_a_refund_gives_serving_back_the_budget_its_charge_took(
    counters_of_serving: str, settings: Settings, session: Session, limit: str
) -> None:
    spendable = BILLED_CLICKS * PER_CLICK
    with _running(settings, session) as api:
        manager, actor, space = _cpc_group(api, funds=spendable if limit == "funds" else 100_000_000,
                                           **({} if limit == "funds" else {limit: spendable}))
        assert _click_until_refused(api, space["id"]) == BILLED_CLICKS
        charges = _charges(api, actor)
        assert len(charges) == BILLED_CLICKS
        _refresh_money(api)  # the ledger's figures read again: still nothing to serve
        assert ads_now(api.client, space["id"]) == []
        _refund(api, manager, charges[0])
        # What the refund freed, and no more: one click's worth.
        assert _click_until_refused(api, space["id"]) == 1


def test_refunding_every_charge_frees_the_whole_day(settings: Settings, session: Session) -> None:
    """The ad group then has no spend left at all: the ledger's figure serving read before no longer holds."""
    spendable = BILLED_CLICKS * PER_CLICK
    with _running(settings, session) as api:
        manager, actor, space = _cpc_group(api, funds=100_000_000, daily_budget_micros=spendable)
        assert _click_until_refused(api, space["id"]) == BILLED_CLICKS
        for charge_id in _charges(api, actor):
            _refund(api, manager, charge_id)
        _refresh_money(api)  # every refund has reached serving before it serves again
        assert _click_until_refused(api, space["id"]) == BILLED_CLICKS


def test_a_refund_booked_by_another_process_reaches_the_counters_serving_reads(
    counters_of_serving: str, settings: Settings, session: Session, tmp_path: Path
) -> None:
    """The account manager's request reaches another process than the one serving the ad group (each its own
    counters in memory, or the one Redis they share): the serving process learns of the refund from the ledger, and
    shared counters are given it back once, not once per process."""
    other = settings.model_copy(update={"data_dir": tmp_path / "other"})
    spendable = BILLED_CLICKS * PER_CLICK
    with _running(settings, session) as serving:
        manager, actor, space = _cpc_group(serving, funds=100_000_000, daily_budget_micros=spendable)
        assert _click_until_refused(serving, space["id"]) == BILLED_CLICKS
        with _running(other, session) as elsewhere:
            _refund(elsewhere, manager, _charges(elsewhere, actor)[0])
            ads = _served(serving, space["id"])
            _refresh_money(elsewhere)  # both processes have refreshed their money since
            _refresh_money(serving)
            assert _until_refused(serving, space["id"], ads, "click") == 1


def test_a_refund_committed_after_a_later_ledger_entry_still_reaches_the_counters(
    counters_of_serving: str, settings: Settings, session: Session, db: Engine
) -> None:
    """On PostgreSQL a refund's ledger id is taken when it is written: a top-up written and committed while the
    refund is still open gets a later id. Serving's money refresh must not read past the open refund, or it never
    gives that refund back."""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time: ids commit in order")
    spendable = BILLED_CLICKS * PER_CLICK
    with _running(settings, session) as api:
        manager, actor, space = _cpc_group(api, funds=100_000_000, daily_budget_micros=spendable)
        assert _click_until_refused(api, space["id"]) == BILLED_CLICKS
        charge_id = _charges(api, actor)[0]
        principal = Principal(user_id=manager.user_id, email=manager.email, role=Role.ACCOUNT_MANAGER,
                              account_id=None)
        with Session(db) as booking:
            refund(booking, principal, RefundIn(charge_id=charge_id, remarks="invalid traffic"))
            booking.flush()  # the refund's id is taken; it is not committed
            ledger(api.session, actor.account_id, 1_000_000, EntryType.TOP_UP)  # a later id, committed first
            # A money refresh of serving runs meanwhile: it reads past the open refund and ends, or it waits.
            refresher = threading.Thread(target=_refresh_money, args=(api,))
            refresher.start()
            assert eventually(lambda: not refresher.is_alive() or _a_ledger_reading_waits(db))
            booking.commit()
        refresher.join()  # a refresh done after the commit
        assert _click_until_refused(api, space["id"]) == 1


def _a_ledger_reading_waits(db: Engine) -> bool:
    """Whether a session of this database waits for the lock a refund being booked holds."""
    with db.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted")))


def test_what_shown_cpa_ads_keep_on_the_day_survives_a_restart_of_the_embedded_counters(
    settings: Settings, session: Session
) -> None:
    with _running(settings, session) as api:
        platform = api.admin()
        actor = api.approved_account(platform)
        ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
        space = ad_space(api, platform, publisher(api, platform)["id"], placement_type="banner",
                         accepted_formats=["image_640x100"], sizes=["640x100"], reserve_price_micros=100_000)
        group = approved_ad_group(api, actor, platform, campaign(api, actor)["id"], placement_type="banner",
                                  bid_type="cpa", bid_micros=2_000_000, conversion_event="INSTALL",
                                  ad_space_ids=[space["id"]], targeting={"countries": ["ID"]}, pacing="asap",
                                  daily_budget_micros=20_000, total_budget_micros=None,
                                  time_zone=_zone_of_another_day())
        approved_creative(api, actor, platform, group["id"])
        assert 1 < _until_refused(api, space["id"], _served(api, space["id"]), "impression") < 500
    with _running(settings, session) as api:
        _refresh_money(api)
        assert ads_now(api.client, space["id"]) == []  # the day is spent by what its shown ads may cost


def test_a_refund_after_a_restart_lowers_the_days_spend_read_back(settings: Settings, session: Session) -> None:
    spendable = BILLED_CLICKS * PER_CLICK
    with _running(settings, session) as api:
        manager, actor, space = _cpc_group(api, funds=100_000_000, daily_budget_micros=spendable)
        assert _click_until_refused(api, space["id"]) == BILLED_CLICKS
    with _running(settings, session) as api:
        _refresh_money(api)
        assert ads_now(api.client, space["id"]) == []
        _refund(api, manager, _charges(api, actor)[0])
        assert _click_until_refused(api, space["id"]) == 1


def test_a_refund_booked_while_the_serving_process_was_down_lowers_the_days_spend_read_back(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    spendable = BILLED_CLICKS * PER_CLICK
    with _running(settings, session) as api:
        manager, actor, space = _cpc_group(api, funds=100_000_000, daily_budget_micros=spendable)
        assert _click_until_refused(api, space["id"]) == BILLED_CLICKS
    with _running(settings.model_copy(update={"data_dir": tmp_path / "other"}), session) as elsewhere:
        _refund(elsewhere, manager, _charges(elsewhere, actor)[0])
    with _running(settings, session) as api:
        assert _click_until_refused(api, space["id"]) == 1


def test_counters_saved_without_the_refund_mark_are_read_back_without_the_days_spend(
    settings: Settings, session: Session
) -> None:
    """A file saved before the mark was: which refunds its day's spend still counts is unknown, so the ledger's
    figure stands for it; frequency is read back as before."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    saved = {"f:1:5:2026-01-01": [1, 0], "d:1:2026-01-01": [900_000, 0]}
    (settings.data_dir / DELIVERY_FILE).write_text(json.dumps(saved))
    with _running(settings, session) as api:
        counters = api.client.app.state.serving.engine.counters  # type: ignore[attr-defined]
        assert counters.get_many(list(saved)) == [1, 0]
