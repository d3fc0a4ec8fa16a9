"""The consumers of the event log. Each applies a whole batch at once and is idempotent by event id, so a batch
replayed after a crash (its checkpoint not yet moved) changes nothing twice:

- `billing`: one `finance.apply_charges` for the batch (each charge id applies once), the charges' events in the
  event store under their charge ids, then each booked reservation settled with its actual charge;
- `touchpoints`: impressions and clicks, and refused requests, inserted in bulk, once per id;
- `events`: the event store, which counts each event id once (and feeds predictions through its listeners).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adstack.core.errors import DomainError
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore
from adstack.pipeline.records import Kind, Tracked, decode, received_at, tracked
from adstack.serving.counters import Counters
from adstack.tracking.auction_price import impression_cost_micros, parse_auction_price, parse_price_currency
from adstack.tracking.devices import normalise_gaid
from adstack.tracking.service import CLICK_BILLED, IMPRESSION_BILLED, VIDEO_EVENT_TYPES, event_for
from adstack.tracking.tokens import TrackingClaims
from adstack.tracking.urls import VideoEvent

log = logging.getLogger("adstack.pipeline")

TRACKING_KINDS = frozenset({Kind.IMPRESSION.value, Kind.CLICK.value, Kind.VIDEO.value})
# Reservations of these bid types end at the impression; CPC and CPA ones wait for the click or their expiry.
SETTLED_AT_IMPRESSION = frozenset({"cpm", "guaranteed_cpm", "cpt"})


class Consumer(Protocol):
    name: str

    def apply(self, records: list[dict[str, Any]]) -> None: ...


@dataclass
class Context:
    session_factory: Callable[[], Session]
    secret: bytes
    store: Callable[[], EventStore]
    counters: Callable[[], Counters | None]


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for start in range(0, len(rows), 1_000):
        session.execute(insert(table).on_conflict_do_nothing(), list(rows[start:start + 1_000]))


def _first_of_each(items: Iterable[Tracked]) -> list[Tracked]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.record["id"] not in seen:
            seen.add(item.record["id"])
            out.append(item)
    return out


# ---------- billing ----------


class Billing:
    name = "billing"

    def __init__(self, context: Context):
        self.context = context

    def apply(self, records: list[dict[str, Any]]) -> None:
        from adstack.finance.pricing import cpm_impression_micros
        from adstack.finance.service import ChargeRequest

        items = _first_of_each(tracked(records, self.context.secret, TRACKING_KINDS))
        charges: list[tuple[ChargeRequest, TrackingClaims | None, dict[str, Any]]] = []
        for item in items:
            claims, kind = item.claims, item.record["k"]
            if kind == Kind.IMPRESSION.value and claims.bid_type in IMPRESSION_BILLED:
                amount, charge_kind = cpm_impression_micros(claims.price_micros), claims.bid_type
            elif kind == Kind.CLICK.value and claims.bid_type in CLICK_BILLED:
                amount, charge_kind = claims.price_micros, "cpc"
            else:
                continue
            if amount > 0:
                charges.append((ChargeRequest(item.record["id"], claims.account_id, claims.campaign_id,
                                              claims.ad_group_id, claims.creative_id, amount, charge_kind, item.at),
                                claims, item.record))
        for record in records:
            if record.get("k") == Kind.CPT_SLOT.value and int(record.get("amount", 0)) > 0:
                charges.append((ChargeRequest(record["id"], int(record["account_id"]), int(record["campaign_id"]),
                                              int(record["ad_group_id"]), 0, int(record["amount"]), "cpt",
                                              received_at(record)), None, record))
        charged: dict[str, int] = {}
        if charges:
            charged = self._charge(charges)
        self._settle(items, charged)

    def _charge(self, charges: list[tuple[Any, TrackingClaims | None, dict[str, Any]]]) -> dict[str, int]:
        from adstack.finance.service import apply_charges

        requests = [c for c, _, _ in charges]
        with self.context.session_factory() as session:
            results: list[Any]
            try:
                results = list(apply_charges(session, requests))
            except DomainError as exc:
                # One charge names an account or ad group that is gone: charge the rest one by one.
                session.rollback()
                log.warning("a charge batch was refused (%s); applying its charges one by one", exc.message)
                results = []
                for request in requests:
                    try:
                        with session.begin_nested():
                            results.extend(apply_charges(session, [request]))
                    except DomainError as one:
                        log.warning("charge %s refused: %s", request.charge_id, one.message)
                        results.append(None)
            events = []
            charged: dict[str, int] = {}
            for (request, claims, record), result in zip(charges, results, strict=True):
                if result is None or not result.applied:
                    continue
                charged[request.charge_id] = result.charged_micros
                events.append(_charge_event(request, claims, record, result.charged_micros))
            # In the store before the commit: a crash in between replays the batch, whose charges then apply
            # with the same ids and amounts, and the store counts each charge event once.
            self.context.store().append(events)
            session.commit()
        return charged

    def _settle(self, items: list[Tracked], charged: dict[str, int]) -> None:
        counters = self.context.counters()
        if counters is None:
            return
        for item in items:
            claims, kind = item.claims, item.record["k"]
            try:
                ends = (claims.bid_type in SETTLED_AT_IMPRESSION if kind == Kind.IMPRESSION.value
                        else kind == Kind.CLICK.value and claims.bid_type in CLICK_BILLED)
                if ends:
                    counters.settle(claims.impression_id, charged.get(item.record["id"], 0))
            except Exception:  # the counters are unreachable: the reservation expires on its own
                log.warning("could not settle the reservation of %s", claims.impression_id, exc_info=True)
                return


def _charge_event(request: Any, claims: TrackingClaims | None, record: dict[str, Any], amount: int) -> Event:
    attrs = {"kind": request.kind}
    if claims is not None:
        return event_for(claims, f"charge:{request.charge_id}", EventType.CHARGE, request.occurred_at,
                         cost_micros=amount, attrs=attrs)
    return Event(event_id=f"charge:{request.charge_id}", event_type=EventType.CHARGE, occurred_at=request.occurred_at,
                 account_id=request.account_id, campaign_id=request.campaign_id, ad_group_id=request.ad_group_id,
                 ad_space_id=int(record.get("ad_space_id", 0)), cost_micros=amount, attrs=attrs)


# ---------- touchpoints and invalid traffic ----------


class Touchpoints:
    name = "touchpoints"

    def __init__(self, context: Context):
        self.context = context

    def apply(self, records: list[dict[str, Any]]) -> None:
        from adstack.attribution.models import Touchpoint
        from adstack.campaigns.models import Campaign
        from adstack.tracking.models import InvalidTraffic

        items = _first_of_each(tracked(records, self.context.secret,
                                       frozenset({Kind.IMPRESSION.value, Kind.CLICK.value})))
        refused = [r for r in records if r.get("k") == Kind.INVALID.value]
        if not items and not refused:
            return
        with self.context.session_factory() as session:
            packages = {}
            campaign_ids = {i.claims.campaign_id for i in items}
            if campaign_ids:
                packages = {campaign_id: package for campaign_id, package in session.execute(
                    select(Campaign.id, Campaign.package_name).where(Campaign.id.in_(campaign_ids)))}
            rows = []
            for item in items:
                claims = item.claims
                gaid = normalise_gaid(claims.gaid)
                is_click = item.record["k"] == Kind.CLICK.value
                rows.append({
                    "kind": "click" if is_click else "impression",
                    "touch_id": item.record["c"] if is_click else claims.impression_id,
                    "impression_id": claims.impression_id, "account_id": claims.account_id,
                    "campaign_id": claims.campaign_id, "ad_group_id": claims.ad_group_id,
                    "creative_id": claims.creative_id, "ad_space_id": claims.ad_space_id,
                    "publisher_id": claims.publisher_id, "bid_type": claims.bid_type,
                    "price_micros": claims.price_micros, "country": claims.country[:2],
                    "placement_type": claims.placement_type[:32],
                    "app_package": (packages.get(claims.campaign_id) or "")[:255],
                    "gaid_md5": gaid.md5 if gaid else None, "gaid_sha1": gaid.sha1 if gaid else None,
                    "occurred_at": item.at})
            insert_ignoring_duplicates(session, Touchpoint.__table__, rows)  # type: ignore[arg-type]
            insert_ignoring_duplicates(session, InvalidTraffic.__table__,  # type: ignore[arg-type]
                                       [self._refusal(r) for r in refused])
            session.commit()

    def _refusal(self, record: dict[str, Any]) -> dict[str, Any]:
        claims = decode(record, self.context.secret) if record.get("reason") == "expired" else None

        def text(value: Any, limit: int) -> str:  # PostgreSQL text cannot hold NUL
            return str(value or "").replace("\x00", "\\x00")[:limit]

        return {"event_id": record["id"][:64], "kind": text(record.get("kind"), 16),
                "reason": text(record.get("reason"), 24), "message": text(record.get("msg"), 300),
                "token": text(record.get("t"), 300), "account_id": claims.account_id if claims else None,
                "ad_group_id": claims.ad_group_id if claims else None,
                "impression_id": claims.impression_id if claims else "", "client_ip": text(record.get("ip"), 64),
                "user_agent": text(record.get("ua"), 300), "occurred_at": received_at(record)}


# ---------- the event store ----------


class StoreEvents:
    name = "events"

    def __init__(self, context: Context):
        self.context = context

    def apply(self, records: list[dict[str, Any]]) -> None:
        items = tracked(records, self.context.secret, TRACKING_KINDS)
        currencies, rates = self._pricing(items)
        events: list[Event] = []
        for item in items:
            claims, record, at = item.claims, item.record, item.at
            kind = record["k"]
            if kind == Kind.IMPRESSION.value:
                events.append(event_for(claims, record["id"], EventType.IMPRESSION, at,
                                        media_cost_micros=self._media_cost(record, claims, currencies, rates)))
            elif kind == Kind.CLICK.value:
                events.append(event_for(claims, record["id"], EventType.CLICK, at,
                                        attrs={"click_id": record["c"], "impression_id": claims.impression_id}))
            else:
                try:
                    event_type = VIDEO_EVENT_TYPES[VideoEvent(record.get("e", ""))]
                except ValueError:
                    continue
                events.append(event_for(claims, record["id"], event_type, at))
        for record in records:
            if record.get("k") == Kind.INVALID.value and record.get("reason") == "expired":
                held = decode(record, self.context.secret)
                if held is not None:  # the signature held: count it against its ad as invalid traffic
                    events.append(event_for(held, record["id"], EventType.INVALID, received_at(record),
                                            attrs={"reason": "expired", "kind": str(record.get("kind", ""))}))
        self.context.store().append(events)

    def _pricing(self, items: list[Tracked]) -> tuple[dict[int, str], Any]:
        priced = {i.claims.account_id for i in items if i.record.get("ap") is not None}
        if not priced:
            return {}, None
        from adstack.accounts.models import Account
        from adstack.serving.loader import load_fx

        with self.context.session_factory() as session:
            currencies = {account_id: currency for account_id, currency in session.execute(
                select(Account.id, Account.currency).where(Account.id.in_(priced)))}
            return currencies, load_fx(session).usd_per_unit

    @staticmethod
    def _media_cost(record: dict[str, Any], claims: TrackingClaims, currencies: dict[int, str],
                    rates: dict[str, Decimal] | None) -> int | None:
        price = parse_auction_price(record.get("ap"))
        currency = parse_price_currency(record.get("cur"))
        account_currency = currencies.get(claims.account_id)
        if price is None or currency is None or account_currency is None or rates is None:
            return None
        return impression_cost_micros(price, price_currency=currency, account_currency=account_currency,
                                      usd_per_unit=rates)
