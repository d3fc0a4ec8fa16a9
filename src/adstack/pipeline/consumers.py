"""The consumers of the event log. Each applies a whole batch at once and is idempotent by event id, so a batch
replayed after a crash (its checkpoint not yet moved) changes nothing twice:

- `billing`: one `finance.charges.apply_charges` for the batch (each charge id applies once), the charges' events in the
  event store under their charge ids, then each booked reservation settled with its actual charge; an impression
  of an exchange bid cleared at its price (first price, a fixed-price deal) costs no more than the exchange reports;
- `touchpoints`: impressions and clicks, and refused requests, inserted in bulk, once per id;
- `events`: the event store, which counts each event id once (and feeds predictions through its listeners).

Before any of that, each tracking record gets its invalid-traffic verdict (`Verdicts`, rules in `pipeline/ivt.py`):
the first consumer to reach a record judges it and stores the verdict under the record id; every other consumer,
and every replay, reads the stored one. An invalid event is never billed (its reservation is given back), never
a touchpoint, and reaches the event store as an `invalid` event with its reasons, so predictions never count it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from adstack.core.db import dialect_insert, driver_datetime, insert_many
from adstack.core.errors import DomainError
from adstack.core.money import MICROS_PER_UNIT
from adstack.core.settings import Settings, get_settings
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore
from adstack.finance.pricing import cpm_impression_micros
from adstack.finance.service import member_of, select_members
from adstack.pipeline import ivt
from adstack.pipeline.records import Kind, Tracked, decode, impression_record_id, now_ms, received_at, tracked
from adstack.serving.counters import Counters
from adstack.tracking.auction_price import impression_cost_micros, parse_auction_price, parse_price_currency
from adstack.tracking.service import CLICK_BILLED, IMPRESSION_BILLED, VIDEO_EVENT_TYPES, event_for
from adstack.tracking.tokens import TrackingClaims, new_click_id
from adstack.tracking.urls import VideoEvent

log = logging.getLogger("adstack.pipeline")

TRACKING_KINDS = frozenset({Kind.IMPRESSION.value, Kind.CLICK.value, Kind.VIDEO.value})
TOUCH_KINDS = frozenset({Kind.IMPRESSION.value, Kind.CLICK.value})
# Reservations of these bid types end at the impression, replaced by its charge; CPC ones wait for the click
# or their expiry.
SETTLED_AT_IMPRESSION = frozenset({"cpm", "guaranteed_cpm", "cpt"})
# A shown CPA ad keeps what it reserved (its expected cost): its conversions are charged up to the attribution
# window later, and giving the hold back at its expiry would let the same budget serve again and again.
KEPT_AT_IMPRESSION = frozenset({"cpa"})


class Consumer(Protocol):
    name: str

    def apply(self, records: list[dict[str, Any]]) -> None: ...


@dataclass
class Context:
    session_factory: Callable[[], Session]
    secret: bytes
    store: Callable[[], EventStore]
    counters: Callable[[], Counters | None]
    settings: Callable[[], Settings] = get_settings
    verdicts: Verdicts = field(init=False)

    def __post_init__(self) -> None:
        self.verdicts = Verdicts(self.session_factory, self.settings)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = dialect_insert(session)
    for start in range(0, len(rows), 1_000):
        session.execute(insert(table).on_conflict_do_nothing(), list(rows[start:start + 1_000]))


def _chunks(values: Sequence[Any], size: int = 1_000) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# ---------- invalid traffic verdicts ----------

Reasons = tuple[str, ...]
VALID: Reasons = ()
MAX_CACHED_VERDICTS = 500_000
VERDICT_COLUMNS = ("record_id", "kind", "received_ms", "impression_id", "ad_group_id", "client_ip", "device",
                   "reasons")
PRUNE_SECONDS = 600.0


class Verdicts:
    """Each tracking record's invalid-traffic verdict, reached once and stored under its record id.

    The consumers read the log at their own pace and a crashed batch is replayed, so judging again could give
    another answer (an impression received since, a burst window now full). Instead the first consumer to reach
    a record judges it from the verdicts stored before it (impression receipts, recent clicks) and inserts the
    verdict, ignoring one another consumer stored first; then all read the stored rows back. One select, one
    insert and a couple of history selects per batch; verdicts stored in this process are remembered, so the
    other consumers usually need no query at all.
    """

    def __init__(self, session_factory: Callable[[], Session], settings: Callable[[], Settings]):
        self._session_factory = session_factory
        self._settings = settings
        self._cache: dict[str, Reasons] = {}
        self._lock = threading.Lock()
        # One consumer judges a batch while the others, arriving with the same records, wait for its verdicts.
        self._judging = threading.Lock()
        self._networks: tuple[tuple[str, str, float], ivt.Networks] | None = None
        self._last_prune = 0.0

    def rules(self, settings: Settings) -> ivt.Rules:
        return ivt.Rules(min_click_ms=settings.ivt_min_click_ms, burst_clicks=settings.ivt_click_burst_limit,
                         burst_ms=settings.ivt_click_burst_seconds * 1000, datacenter=self._datacenter(settings))

    def _datacenter(self, settings: Settings) -> ivt.Networks:
        path: Path | None = settings.ivt_datacenter_file
        try:
            mtime = path.stat().st_mtime if path is not None else 0.0
        except OSError:
            log.warning("the data-center list %s cannot be read", path)
            mtime, path = -1.0, None
        key = (settings.ivt_datacenter_networks, str(path or ""), mtime)
        if self._networks is None or self._networks[0] != key:  # re-read when the setting or the file changes
            self._networks = (key, ivt.parse_networks(settings.ivt_datacenter_networks, path))
        return self._networks[1]

    def __call__(self, items: Sequence[Tracked], records: Sequence[dict[str, Any]] = ()) -> dict[str, Reasons]:
        """The reasons each record is invalid (empty when valid), by record id. `records`: the whole batch, whose
        loss notices are stored first as the verdicts of their bids' impressions."""
        settings = self._settings()
        if settings.ivt_active:
            self._note_losses(records)
        if not settings.ivt_active or not items:
            # Without the rules a test auction is still not billable.
            return {i.record["id"]: TEST_AUCTION for i in items if i.claims.test}
        items = _first_of_each(items)
        found, missing = self._cached(items)
        if not missing:
            return found
        with self._judging:
            more, missing = self._cached(missing)  # judged by another consumer while this one waited
            found.update(more)
            if not missing:
                return found
            with self._session_factory() as session:
                stored = self._load(session, [i.record["id"] for i in missing])
                fresh = [i for i in missing if i.record["id"] not in stored]
                if fresh:
                    inserted = self._judge(session, fresh, self.rules(settings))
                    session.commit()
                    stored.update(inserted)
                    # Read back the rest: where another process stored a verdict first, its verdict holds.
                    lost = [i.record["id"] for i in fresh if i.record["id"] not in inserted]
                    if lost:
                        stored.update(self._load(session, lost))
                self._prune(session, settings)
            found.update(stored)
            with self._lock:
                if len(self._cache) + len(stored) > MAX_CACHED_VERDICTS:
                    self._cache.clear()
                self._cache.update(stored)
        return found

    def _note_losses(self, records: Sequence[dict[str, Any]]) -> None:
        """An exchange's loss notice is the verdict of its bid's impression, unless one was reached first: a
        billing notice after it is then invalid (`lost_auction`) for every consumer alike."""
        from adstack.tracking.models import IvtVerdict

        rows = []
        earlier: set[str] = set()  # an impression before its loss notice in the log is judged as it is
        for record in records:
            kind = record.get("k")
            if kind == Kind.IMPRESSION.value:
                earlier.add(record["id"])
            elif kind == Kind.LOSS.value and record.get("i"):
                record_id = impression_record_id(str(record["i"])[:64])
                if record_id not in earlier and record_id not in self._cache:
                    rows.append((record_id, Kind.IMPRESSION.value, int(record["ts"]), str(record["i"])[:64], 0,
                                 "", "", ivt.Reason.LOST_AUCTION.value))
        if not rows:
            return
        with self._judging, self._session_factory() as session:
            connection = session.connection()
            inserted = insert_many(connection, IvtVerdict.__table__, VERDICT_COLUMNS, rows,  # type: ignore[arg-type]
                                   ignore_duplicates=True)
            session.commit()
        if connection.dialect.supports_sane_multi_rowcount and inserted == len(rows):
            with self._lock:  # every one is this call's: the other consumers need not insert them again
                self._cache.update((row[0], LOST_AUCTION) for row in rows)

    def _cached(self, items: Sequence[Tracked]) -> tuple[dict[str, Reasons], list[Tracked]]:
        with self._lock:
            cache = self._cache
            found = {i.record["id"]: cache[i.record["id"]] for i in items if i.record["id"] in cache}
        return found, [i for i in items if i.record["id"] not in found]

    @staticmethod
    def _load(session: Session, ids: Sequence[str]) -> dict[str, Reasons]:
        from adstack.tracking.models import IvtVerdict

        out: dict[str, Reasons] = {}
        statement = select_members((IvtVerdict.record_id, IvtVerdict.reasons), IvtVerdict.record_id, "p_ids",
                                   _dialect(session))
        for record_id, reasons in session.connection().execute(statement, {"p_ids": list(ids)}):
            out[record_id] = tuple(reasons.split(",")) if reasons else VALID
        return out

    def _judge(self, session: Session, items: Sequence[Tracked], rules: ivt.Rules) -> dict[str, Reasons]:
        """Judge and store; the verdicts this call stored (not those another consumer stored first)."""
        from adstack.tracking.models import IvtVerdict

        observations = [_observation(i) for i in items]
        history = self._history(session, observations, rules)
        verdicts = ivt.judge(observations, history, rules)
        rows = [(o.record_id[:96], o.kind, o.at_ms, o.impression_id[:64], o.ad_group_id, o.ip[:64], o.device,
                 ",".join(reasons)) for o, reasons in zip(observations, verdicts, strict=True)]
        connection = session.connection()
        inserted = insert_many(connection, IvtVerdict.__table__, VERDICT_COLUMNS, rows,  # type: ignore[arg-type]
                               ignore_duplicates=True)
        if connection.dialect.supports_sane_multi_rowcount and inserted == len(rows):
            # Every row went in, so every verdict is this call's (cheaper than RETURNING the ids).
            return {o.record_id: tuple(reasons) for o, reasons in zip(observations, verdicts, strict=True)}
        return {}  # some were stored first elsewhere: the caller reads them all back

    @staticmethod
    def _history(session: Session, observations: Sequence[ivt.Observation], rules: ivt.Rules) -> ivt.History:
        """The stored verdicts the rules need: the receipts of the clicked impressions, and the clicks on the same
        ad groups within one burst window before the batch."""
        from adstack.tracking.models import IvtVerdict

        history = ivt.History()
        clicks = [o for o in observations if o.kind == "click"]
        if not clicks:
            return history
        record_ids = sorted({impression_record_id(o.impression_id) for o in clicks})
        for impression_id, at_ms, reasons in session.connection().execute(
                select(IvtVerdict.impression_id, IvtVerdict.received_ms, IvtVerdict.reasons)
                .where(IvtVerdict.kind == "imp", member_of(IvtVerdict.record_id, "p_ids", _dialect(session))),
                {"p_ids": record_ids}):
            history.impressions[impression_id] = (int(at_ms), bool(reasons))
        groups = sorted({o.ad_group_id for o in clicks})
        since = min(o.at_ms for o in clicks) - rules.burst_ms
        until = max(o.at_ms for o in clicks)
        for chunk in _chunks(groups):
            for group, ip, device, at_ms in session.execute(
                    select(IvtVerdict.ad_group_id, IvtVerdict.client_ip, IvtVerdict.device, IvtVerdict.received_ms)
                    .where(IvtVerdict.kind == "click", IvtVerdict.ad_group_id.in_(chunk),
                           IvtVerdict.received_ms > since, IvtVerdict.received_ms <= until)
                    .order_by(IvtVerdict.received_ms)):
                earlier = ivt.Observation("", "click", int(at_ms), ip, "", "", int(group), device)
                for key in ivt.click_keys(earlier):
                    history.clicks.setdefault(key, []).append(int(at_ms))
        return history

    def _prune(self, session: Session, settings: Settings) -> None:
        """Verdicts are needed while a batch may be replayed and a click may follow its impression: days."""
        from adstack.tracking.models import IvtVerdict

        if time.monotonic() - self._last_prune < PRUNE_SECONDS:
            return
        self._last_prune = time.monotonic()
        horizon = now_ms() - settings.ivt_verdict_retention_hours * 3_600_000
        session.execute(delete(IvtVerdict).where(IvtVerdict.received_ms < horizon))
        session.commit()


def _observation(item: Tracked) -> ivt.Observation:
    record, claims, device = item.record, item.claims, item.device
    return ivt.Observation(  # positional, in field order: one per record, and keywords cost a third more
        record["id"], record["k"], int(record["ts"]),  # record_id, kind, at_ms
        str(record.get("ip") or ""), str(record.get("ua") or ""),  # ip, user_agent
        claims.impression_id, claims.ad_group_id,
        str(device.hash) if device else str(claims.device_hash or ""),  # device
        bool(claims.exchange_currency), claims.test)  # exchange, test


def _first_of_each(items: Iterable[Tracked]) -> list[Tracked]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.record["id"] not in seen:
            seen.add(item.record["id"])
            out.append(item)
    return out


TEST_AUCTION: Reasons = (ivt.Reason.TEST_AUCTION,)
LOST_AUCTION: Reasons = (ivt.Reason.LOST_AUCTION.value,)


# ---------- billing ----------


# Cached: a batch's impressions share a few prices, and the exact rounding goes through Decimal.
_impression_micros = lru_cache(maxsize=4_096)(cpm_impression_micros)


class Billing:
    name = "billing"

    def __init__(self, context: Context):
        self.context = context

    def apply(self, records: list[dict[str, Any]]) -> None:
        from adstack.finance.charges import ChargeRequest

        items = _first_of_each(tracked(records, TRACKING_KINDS))
        invalid = self.context.verdicts(items, records)
        charges: list[tuple[ChargeRequest, Tracked | None, dict[str, Any]]] = []
        currencies, rates = exchange_pricing(self.context, [i for i in items if i.claims.clears_at_bid])
        for item in items:
            claims, kind = item.claims, item.record["k"]
            if invalid.get(item.record["id"]):
                continue  # never billed; its reservation is settled at nothing below
            if kind == Kind.IMPRESSION.value and claims.bid_type in IMPRESSION_BILLED:
                amount, charge_kind = _impression_micros(claims.price_micros), claims.bid_type
                if claims.clears_at_bid:
                    # The exchange charges us what it reports (our bid, or less after a discount, OpenRTB 2.6
                    # 4.4): the advertiser pays no more than that.
                    reported = exchange_cost_micros(item.record, claims, currencies, rates)
                    if reported is not None:
                        amount = min(amount, reported)
            elif kind == Kind.CLICK.value and claims.bid_type in CLICK_BILLED:
                amount, charge_kind = claims.price_micros, "cpc"
            else:
                continue
            if amount > 0:
                charges.append((ChargeRequest(item.record["id"], claims.account_id, claims.campaign_id,
                                              claims.ad_group_id, claims.creative_id, amount, charge_kind, item.at),
                                item, item.record))
        for record in records:
            if record.get("k") == Kind.CPT_SLOT.value and int(record.get("amount", 0)) > 0:
                # Charged at the slot's start, the moment it is owed, however late billing catches up: its day is
                # the slot's for the budget and the reports.
                starts = datetime.fromtimestamp(int(record["starts_at"]), UTC)
                charges.append((ChargeRequest(record["id"], int(record["account_id"]), int(record["campaign_id"]),
                                              int(record["ad_group_id"]), 0, int(record["amount"]), "cpt",
                                              starts), None, record))
        charged: dict[str, int] = {}
        if charges:
            charged = self._charge(charges)
        self._settle(items, charged, invalid)
        self._release_lost(records)

    def _charge(self, charges: list[tuple[Any, Tracked | None, dict[str, Any]]]) -> dict[str, int]:
        from adstack.finance.charges import apply_charges

        requests = [c for c, _, _ in charges]
        with self.context.session_factory() as session:
            results: list[Any]
            try:
                results = list(apply_charges(session, requests, with_entry_ids=False))
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
            for (request, item, record), result in zip(charges, results, strict=True):
                if result is None or not result.in_ledger:
                    continue
                # A charge the ledger already held (a replayed batch) gets its event again, with the ledger's
                # amount: the store counts each id once, so whatever the first pass did not store is stored now.
                charged[request.charge_id] = result.ledger_micros
                events.append(_charge_event(request, item, record, result.ledger_micros))
            # In the store before the commit: a crash in between replays the batch, whose charges then apply
            # with the same ids and amounts, and the store counts each charge event once.
            self.context.store().append(events)
            session.commit()
        return charged

    def _settle(self, items: list[Tracked], charged: dict[str, int], invalid: dict[str, Reasons]) -> None:
        counters = self.context.counters()
        if counters is None:
            return
        for item in items:
            claims, kind = item.claims, item.record["k"]
            try:
                shown = kind == Kind.IMPRESSION.value
                if shown and claims.bid_type in KEPT_AT_IMPRESSION:
                    if invalid.get(item.record["id"]):
                        counters.settle(claims.impression_id, 0)  # never billable: nothing to keep
                    else:
                        counters.keep(claims.impression_id)
                elif (claims.bid_type in SETTLED_AT_IMPRESSION if shown
                      else kind == Kind.CLICK.value and claims.bid_type in CLICK_BILLED):
                    counters.settle(claims.impression_id, charged.get(item.record["id"], 0))
            except Exception:  # the counters are unreachable: the reservation expires on its own
                log.warning("could not settle the reservation of %s", claims.impression_id, exc_info=True)
                return

    def _release_lost(self, records: list[dict[str, Any]]) -> None:
        """A signed loss notice gives its bid's reservation back, here in the log's order rather than when it
        arrives: an impression of the bid applied before it has settled the reservation, and the notice then finds
        nothing to give back (the first word stands, as for the verdicts)."""
        counters = self.context.counters()
        if counters is None:
            return
        for record in records:
            if record.get("k") == Kind.LOSS.value and record.get("i"):
                try:
                    counters.release_held(str(record["i"])[:64])
                except Exception:  # the counters are unreachable: the reservation expires on its own
                    log.warning("could not release the reservation of %s", record["i"], exc_info=True)
                    return


def tracked_event(item: Tracked, event_id: str, event_type: EventType, **extra: Any) -> Event:
    """As `tracking.service.event_for`, with the device read once per process (`records.device`)."""
    claims, device = item.claims, item.device
    return Event(event_id=event_id, event_type=event_type, occurred_at=item.at, account_id=claims.account_id,
                 campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id, creative_id=claims.creative_id,
                 ad_space_id=claims.ad_space_id, publisher_id=claims.publisher_id,
                 placement_type=claims.placement_type, country=claims.country,
                 device_hash=device.hash if device else claims.device_hash, **extra)


def _charge_event(request: Any, item: Tracked | None, record: dict[str, Any], amount: int) -> Event:
    attrs = {"kind": request.kind}
    if item is not None:
        return tracked_event(item, f"charge:{request.charge_id}", EventType.CHARGE, cost_micros=amount, attrs=attrs)
    return Event(event_id=f"charge:{request.charge_id}", event_type=EventType.CHARGE, occurred_at=request.occurred_at,
                 account_id=request.account_id, campaign_id=request.campaign_id, ad_group_id=request.ad_group_id,
                 ad_space_id=int(record.get("ad_space_id", 0)), publisher_id=int(record.get("publisher_id", 0)),
                 placement_type=str(record.get("placement_type", "")), cost_micros=amount, attrs=attrs)


# ---------- touchpoints and invalid traffic ----------


TOUCHPOINT_COLUMNS = ("kind", "touch_id", "impression_id", "click_id", "account_id", "campaign_id", "ad_group_id",
                      "creative_id", "ad_space_id", "publisher_id", "bid_type", "price_micros", "country",
                      "placement_type", "app_package", "gaid_md5", "gaid_sha1", "occurred_at")


class Touchpoints:
    name = "touchpoints"

    def __init__(self, context: Context):
        self.context = context

    def apply(self, records: list[dict[str, Any]]) -> None:
        from adstack.attribution.models import Touchpoint
        from adstack.campaigns.models import Campaign

        judged = _first_of_each(tracked(records, TRACKING_KINDS))
        invalid = self.context.verdicts(judged, records)
        items = [i for i in judged if i.record["k"] in TOUCH_KINDS and not invalid.get(i.record["id"])]
        filtered = [(i, invalid[i.record["id"]]) for i in judged if invalid.get(i.record["id"])]
        refused = [r for r in records if r.get("k") == Kind.INVALID.value]
        if not items and not refused and not filtered:
            return
        with self.context.session_factory() as session:
            packages = {}
            campaign_ids = {i.claims.campaign_id for i in items}
            if campaign_ids:
                packages = {campaign_id: package for campaign_id, package in session.execute(
                    select(Campaign.id, Campaign.package_name).where(Campaign.id.in_(campaign_ids)))}
            connection = session.connection()
            stored_time = driver_datetime(connection)
            rows = []
            for item in items:
                claims, device = item.claims, item.device
                is_click = item.record["k"] == Kind.CLICK.value
                rows.append((  # in TOUCHPOINT_COLUMNS order
                    "click" if is_click else "impression", item.record["c"] if is_click else claims.impression_id,
                    # An impression is also known by the click id its links carry: the partner's view-through
                    # link fired with it returns that id for a view-through install (serving.impression_monitors).
                    claims.impression_id, None if is_click else new_click_id(claims.impression_id, claims.issued_at,
                                                                             self.context.secret),
                    claims.account_id, claims.campaign_id, claims.ad_group_id,
                    claims.creative_id, claims.ad_space_id, claims.publisher_id, claims.bid_type,
                    claims.price_micros, claims.country[:2], claims.placement_type[:32],
                    (packages.get(claims.campaign_id) or "")[:255], device.md5 if device else None,
                    device.sha1 if device else None, stored_time(item.at)))
            insert_many(connection, Touchpoint.__table__, TOUCHPOINT_COLUMNS, rows,  # type: ignore[arg-type]
                        ignore_duplicates=True)
            keep_bounded(session, [self._refusal(r) for r in refused] + [_filtered(i, why) for i, why in filtered],
                         self.context.settings().invalid_traffic_rows_per_minute)
            session.commit()

    def _refusal(self, record: dict[str, Any]) -> dict[str, Any]:
        claims = decode(record, self.context.secret) if record.get("reason") == "expired" else None
        return {"event_id": record["id"][:64], "kind": text(record.get("kind"), 16),
                "reason": text(record.get("reason"), 24), "message": text(record.get("msg"), 300),
                "token": text(record.get("t"), 300), "account_id": claims.account_id if claims else None,
                "ad_group_id": claims.ad_group_id if claims else None,
                "impression_id": claims.impression_id if claims else "", "client_ip": truncated_ip(record.get("ip")),
                "user_agent": text(record.get("ua"), 300), "occurred_at": received_at(record)}


def text(value: Any, limit: int) -> str:  # PostgreSQL text cannot hold NUL
    return str(value or "").replace("\x00", "\\x00")[:limit]


def truncated_ip(value: Any) -> str:
    """What a stored invalid-traffic record keeps of a client address: its network, not the device's own
    address (IPv4 /24, IPv6 /48, as address anonymisation commonly does); "" when it is no address."""
    try:
        address = ipaddress.ip_address(str(value or ""))
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def _filtered(item: Tracked, reasons: Reasons) -> dict[str, Any]:
    record, claims = item.record, item.claims
    return {"event_id": record["id"][:64], "kind": record["k"], "reason": reasons[0][:24],
            "message": "invalid traffic: " + ", ".join(reasons), "token": text(record.get("t"), 300),
            "account_id": claims.account_id, "ad_group_id": claims.ad_group_id,
            "impression_id": claims.impression_id[:64], "client_ip": truncated_ip(record.get("ip")),
            "user_agent": text(record.get("ua"), 300), "occurred_at": item.at}


def keep_bounded(session: Session, rows: list[dict[str, Any]], per_minute: int) -> None:
    """Keep at most `per_minute` invalid-traffic rows per minute of receipt; count the rest per minute, kind and
    reason, so a flood of forged requests costs a few rows. Rows already kept (a replayed batch) are skipped; a
    replayed batch's overflow may be counted twice, the rows themselves never are."""
    from adstack.tracking.models import InvalidTraffic, InvalidTrafficOverflow

    if not rows:
        return
    ids = [r["event_id"] for r in rows]
    kept: set[str] = set()
    for chunk in _chunks(ids):
        kept.update(session.scalars(select(InvalidTraffic.event_id).where(InvalidTraffic.event_id.in_(chunk))))
    by_minute: dict[datetime, list[dict[str, Any]]] = {}
    for row in rows:
        if row["event_id"] not in kept:
            at: datetime = row["occurred_at"]
            by_minute.setdefault(at.astimezone(UTC).replace(second=0, microsecond=0), []).append(row)
    keep: list[dict[str, Any]] = []
    overflow: dict[tuple[datetime, str, str], int] = {}
    for minute, group in sorted(by_minute.items()):
        used = session.scalar(select(func.count()).select_from(InvalidTraffic).where(
            InvalidTraffic.occurred_at >= minute, InvalidTraffic.occurred_at < minute + timedelta(minutes=1))) or 0
        room = max(0, per_minute - int(used))
        keep.extend(group[:room])
        for row in group[room:]:
            key = (minute, row["kind"], row["reason"])
            overflow[key] = overflow.get(key, 0) + 1
    insert_ignoring_duplicates(session, InvalidTraffic.__table__, keep)  # type: ignore[arg-type]
    if overflow:
        table = InvalidTrafficOverflow.__table__
        statement = dialect_insert(session)(table)
        statement = statement.on_conflict_do_update(
            index_elements=["minute", "kind", "reason"],
            set_={"count": table.c.count + statement.excluded["count"]})
        session.execute(statement, [{"minute": m, "kind": k, "reason": r, "count": n}
                                    for (m, k, r), n in overflow.items()])


# ---------- the event store ----------


class StoreEvents:
    name = "events"

    def __init__(self, context: Context):
        self.context = context

    def apply(self, records: list[dict[str, Any]]) -> None:
        items = tracked(records, TRACKING_KINDS)
        invalid = self.context.verdicts(items, records)
        currencies, rates = exchange_pricing(self.context, items)
        events: list[Event] = []
        for item in items:
            claims, record = item.claims, item.record
            kind = record["k"]
            reasons = invalid.get(record["id"])
            if reasons:  # counted against its ad as invalid traffic; predictions and reports never see it as valid
                events.append(tracked_event(item, record["id"], EventType.INVALID,
                                            attrs={"reason": reasons[0], "reasons": ",".join(reasons), "kind": kind}))
            elif kind == Kind.IMPRESSION.value:
                events.append(tracked_event(item, record["id"], EventType.IMPRESSION,
                                            media_cost_micros=exchange_cost_micros(record, claims, currencies,
                                                                                   rates)))
            elif kind == Kind.CLICK.value:
                events.append(tracked_event(item, record["id"], EventType.CLICK,
                                            attrs={"click_id": record["c"], "impression_id": claims.impression_id}))
            else:
                try:
                    event_type = VIDEO_EVENT_TYPES[VideoEvent(record.get("e", ""))]
                except ValueError:
                    continue
                events.append(tracked_event(item, record["id"], event_type))
        for record in records:
            if record.get("k") == Kind.INVALID.value and record.get("reason") == "expired":
                held = decode(record, self.context.secret)
                if held is not None:  # the signature held: count it against its ad as invalid traffic
                    events.append(event_for(held, record["id"], EventType.INVALID, received_at(record),
                                            attrs={"reason": "expired", "kind": str(record.get("kind", ""))}))
        self.context.store().append(events)


def exchange_pricing(context: Context, items: Sequence[Tracked],
                     ) -> tuple[dict[int, str], Mapping[str, Decimal] | None]:
    """What reading exchange clearing prices needs: the currencies of the accounts whose items carry one, and the
    FX table; nothing is loaded when none does."""
    priced = {i.claims.account_id for i in items if i.record.get("ap") is not None and i.claims.exchange_currency}
    if not priced:
        return {}, None
    from adstack.accounts.models import Account
    from adstack.serving.loader import load_fx

    with context.session_factory() as session:
        currencies = {account_id: currency for account_id, currency in session.execute(
            select(Account.id, Account.currency).where(Account.id.in_(priced)))}
        return currencies, load_fx(session).usd_per_unit


def exchange_cost_micros(record: dict[str, Any], claims: TrackingClaims, currencies: dict[int, str],
                         rates: Mapping[str, Decimal] | None) -> int | None:
    """What the exchange says it charged for an impression our bid won, in the account currency: read in the
    bid's signed currency (the URL's `cur` is only a copy of it) and never above our signed bid, which the
    clearing price cannot exceed (OpenRTB 2.6, 4.4: "the same currency and units as the bid"). None for the
    SDK's own impressions, whose URLs carry no price of ours, and for a test auction, which is not billed."""
    if not claims.exchange_currency or claims.test:
        return None
    price = parse_auction_price(record.get("ap"))
    currency = parse_price_currency(record.get("cur"))
    account_currency = currencies.get(claims.account_id)
    if price is None or currency != claims.exchange_currency or account_currency is None or rates is None:
        return None
    bid = Decimal(claims.exchange_bid_micros) / MICROS_PER_UNIT
    return impression_cost_micros(min(price, bid), price_currency=currency, account_currency=account_currency,
                                  usd_per_unit=rates)
