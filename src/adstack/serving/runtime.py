"""The serving process's moving parts: the engine, and a background thread that keeps its state current.

Every second the thread compares the control plane's signature (row counts and latest updates); when it moved,
it builds a new snapshot off the request path and swaps the engine's state reference, so requests never wait and
never see a half-built state. Between rebuilds it patches money (funds, ledger spend) every few seconds, rebuilds
the rate model when new outcomes were observed, reloads audience membership, flushes buffered device profiles and
request events, and re-learns the daily traffic curve.

Refunds reach the budget counters the same way, whichever process booked them: each refresh that moves the money
gives the refunds booked since back to the counters (`Counters.give_back`, once per refund when processes share
them), after the new state with the lowered ledger figures is in place.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adstack.core.background import Periodic
from adstack.core.settings import Settings
from adstack.core.timeutil import as_utc, utcnow
from adstack.events.models import Event, EventType
from adstack.serving import reservations
from adstack.serving.counters import DAY_PREFIX, Counters, GiveBack, MemoryCounters, make_counters
from adstack.serving.engine import DecisionEngine, ServingState, combination_of
from adstack.serving.installs import HISTORY_TARGET_GROUPS, make_install_history
from adstack.serving.loader import MoneyMark, control_plane_signature, load_money, load_snapshot, money_mark
from adstack.serving.prediction import Leaf, Outcomes
from adstack.serving.ranking import MinimumPrices
from adstack.serving.snapshot import Snapshot

log = logging.getLogger("adstack.serving")

POLL_SECONDS = 1.0
MONEY_SECONDS = 2.0
RATES_SECONDS = 10.0
AUDIENCES_SECONDS = 1.0  # an aggregate of the audiences' versions; the index is rebuilt only when it moves
TRAFFIC_SECONDS = 300.0
STATS_SECONDS = 300.0  # outcome counts re-read from the event store's rollup
EVENTS_SECONDS = 1.0
DELIVERY_SECONDS = 10.0  # how much frequency and booked delivery a crash of the one serving process may forget
DELIVERY_FILE = "serving-delivery-counters.json"
STATS_LOOKBACK_DAYS = 30
DEVICE_REPORT_SECONDS = 600.0
FREEZE_AT_AD_GROUPS = 5_000
MAX_REMEMBERED_DEVICE_REPORTS = 500_000
MAX_LOADED_INSTALL_ROWS = 500_000
# Event ids the predictions remember, per generation (two are kept): a retried pixel, a double tap or a replayed
# batch counts once. Retries come within minutes; the leaf counts are reloaded from the deduplicated store every
# few minutes anyway, and the window protects the creative combinations' counts, which are not.
OBSERVED_IDS_PER_GENERATION = 200_000

_live: weakref.WeakSet[ServingRuntime] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class _Refunds:
    through: int  # every refund up to this ledger entry is in `given` or on the counters already
    given: list[GiveBack]


def observe_events(events: Iterable[Event]) -> None:
    """Feed tracking outcomes (impressions, clicks, conversions) to every serving runtime of this process."""
    batch = list(events)
    for runtime in list(_live):
        runtime.observe(batch)


class ServingRuntime:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session], *,
                 counters: Counters | None = None, poll_seconds: float = POLL_SECONDS):
        self.settings = settings
        self.session_factory = session_factory
        self.engine = DecisionEngine(ServingState.build(Snapshot.empty()),
                                     counters=counters or make_counters(settings.redis_url, settings.redis_prefix),
                                     auction_type=settings.auction_type,
                                     minimum_prices=MinimumPrices.from_settings(settings))
        self.poll_seconds = poll_seconds
        self.base_url = settings.public_base_url
        self.engine.sdk_hold_seconds = float(settings.sdk_reservation_seconds)
        reservations.register(self.engine.counters)  # the control plane's serving status reads what is held
        self.secret = settings.resolved_secret_key
        self._signature: tuple[Any, ...] | None = None
        self._money = MoneyMark()
        self._rates_changes = 0
        # Each part of a cycle is guarded on its own (`_guard`): a bad one leaves the others and the last state.
        self._periodic = Periodic("adstack-serving-refresh", self._cycle, interval=poll_seconds, log=log,
                                  failure="serving refresh failed", join_seconds=10.0)
        self._refresh_lock = threading.Lock()
        self._events: list[Event] = []
        self._events_lock = threading.Lock()
        self._last: dict[str, float] = {}
        self.device_profiles: Any = None
        self.install_history = make_install_history(settings.redis_url, settings.redis_prefix)
        self._device_reports: dict[tuple[str, str | None, int], float] = {}
        self.audience_index: Any = None
        self._audiences_signature: tuple[int, int, int, str] | None = None
        self.rebuilds = 0
        self._delivery_saved = ""  # what the delivery counters file last received
        self._refunds_since: int | None = None  # refunds up to this ledger entry are on the counters
        self._observed: set[str] = set()
        self._observed_before: set[str] = set()
        self._observe_lock = threading.Lock()
        _live.add(self)

    # ---------- lifecycle ----------

    @property
    def state(self) -> ServingState:
        return self.engine.state

    def start(self) -> None:
        try:
            from adstack.audiences.profiles import DeviceProfileStore

            self.device_profiles = DeviceProfileStore(self.session_factory)
        except ImportError:  # pragma: no cover - audiences are optional
            self.device_profiles = None
        self._guard("audiences", self._reload_audiences)
        self._guard("delivery counters", self.load_delivery_counters)
        self.refresh()
        self._guard("install history", self.load_install_history)
        started = time.monotonic()
        for name in ("money", "rates", "audiences", "traffic", "stats"):
            self._last[name] = started
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
        self._guard("delivery counters", self.save_delivery_counters)
        self._guard("events", self.flush_events)
        if self.device_profiles is not None:
            self._guard("device profiles", self.device_profiles.flush)
        self.engine.counters.close()
        _live.discard(self)

    def _cycle(self) -> None:
        self._guard("snapshot", self.refresh)
        now = time.monotonic()
        self._every("money", MONEY_SECONDS, now, self.refresh_money)
        self._every("rates", RATES_SECONDS, now, self.refresh_rates)
        self._every("audiences", AUDIENCES_SECONDS, now, self._reload_audiences)
        self._every("events", EVENTS_SECONDS, now, self.flush_events)
        self._every("delivery counters", DELIVERY_SECONDS, now, self.save_delivery_counters)
        self._every("traffic", TRAFFIC_SECONDS, now, self.engine.traffic.refresh)
        if self.device_profiles is not None:
            self._every("device profiles", 5.0, now, self.device_profiles.flush)
        # The event store is read rarely (and first only after a full interval): it is the slow path.
        self._every("stats", STATS_SECONDS, now, self.load_outcome_stats)

    def _every(self, name: str, interval: float, now: float, work: Callable[[], object]) -> None:
        if now - self._last.get(name, 0.0) >= interval:
            self._last[name] = now
            self._guard(name, work)

    @staticmethod
    def _guard(name: str, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # the refresher must outlive a bad cycle; serving goes on with the last state
            log.exception("serving refresh of %s failed", name)

    # ---------- delivery counters of the embedded default ----------

    def _embedded_counters(self) -> tuple[MemoryCounters, Path] | None:
        """This process's own counters and their file; None when shared counters (Redis) keep them."""
        counters = self.engine.counters
        return (counters, self.settings.data_dir / DELIVERY_FILE) if isinstance(counters, MemoryCounters) else None

    def save_delivery_counters(self) -> None:
        """Frequency, booked delivery and the day's spend live in this process's memory (shared counters keep them
        in Redis): written to the data directory, atomically, so a restart does not give every device its cap, nor
        an ad group the budget shown CPA ads keep, again. With them goes the last refund given back on them."""
        embedded = self._embedded_counters()
        if embedded is None:
            return
        counters, path = embedded
        with self._refresh_lock:  # the counters and their refund mark as of the same moment
            exported = counters.export_delivery()
            through = counters.refunds_through()
        text = json.dumps({"refunds_through": through, "counters": exported}, separators=(",", ":"))
        if text == self._delivery_saved or (not exported and not path.exists()):
            return  # nothing new: no write every 10 seconds of an idle process
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
        self._delivery_saved = text

    def load_delivery_counters(self) -> None:
        embedded = self._embedded_counters()
        if embedded is None or not embedded[1].exists():
            return
        counters, path = embedded
        try:
            raw = json.loads(path.read_text())
            if "counters" not in raw:  # saved before the refund mark was: {key: [value, expiry]}
                raw = {"refunds_through": None, "counters": raw}
            through = raw["refunds_through"]
            through = None if through is None else int(through)
            saved = {key: (int(value), float(expires)) for key, (value, expires) in raw["counters"].items()}
        except (ValueError, TypeError, AttributeError, KeyError):
            log.warning("unreadable delivery counters in %s: starting from zero", path)
            return
        if through is None:  # which refunds a saved day's spend still counts is unknown: the ledger's figure holds
            saved = {key: value for key, value in saved.items() if not key.startswith(DAY_PREFIX)}
        counters.import_delivery(saved, refunds_through=through)

    # ---------- refreshing ----------

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild the snapshot if the control plane changed (or when forced); True when it swapped."""
        with self._refresh_lock:
            with self.session_factory() as session:
                signature = control_plane_signature(session)
                if not force and signature == self._signature:
                    return False
                mark = money_mark(session)
                snapshot = load_snapshot(session, base_url=self.base_url, version=str(hash(signature)),
                                         ledger_mark=mark.ledger_id)
                refunds = self._refunds_until(session, mark.ledger_id)
                session.rollback()
            self.install_snapshot(snapshot)
            self._give_back(refunds)
            self._signature = signature
            self._money = mark
            self.install_history.track(g.targeting.promoted_package for g in snapshot.by_ordinal
                                       if g.targeting.target_group in HISTORY_TARGET_GROUPS)
            self.rebuilds += 1
            log.info("serving snapshot rebuilt: %d ad groups", len(snapshot))
            return True

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Serve `snapshot` from now on, with the rates learned so far."""
        current = self.engine.state
        self.engine.swap(ServingState.build(snapshot, current.rates))
        del current
        if len(snapshot) >= FREEZE_AT_AD_GROUPS:
            # A large snapshot is millions of long-lived objects: collect what the old one left, then exempt
            # the new one from the collector's full passes so they never pause requests (it holds no reference
            # cycles; reference counting frees it when it is replaced).
            gc.collect()
            gc.freeze()

    def refresh_money(self) -> None:
        with self._refresh_lock, self.session_factory() as session:
            state = self.engine.state
            snapshot, mark = load_money(session, state.snapshot, self._money)
            refunds = self._refunds_until(session, mark.ledger_id)
            session.rollback()
            if snapshot is not state.snapshot or (refunds is not None and refunds.given):
                # Also forgets refusals remembered for the rest of the day: a refund may have lifted them.
                self.engine.swap(ServingState(snapshot, state.rates, state.order))
            self._money = mark
            self._give_back(refunds)

    def _refunds_until(self, session: Session, until: int) -> _Refunds | None:
        """The refunds booked after the last one given back to the counters, up to ledger entry `until`."""
        since = self._refunds_since
        if since is None:
            try:
                since = self.engine.counters.refunds_through()
            except Exception:  # the shared counters are unreachable: asked again on the next refresh
                log.warning("could not read which refunds the budget counters hold", exc_info=True)
                return None
            if since is None:  # new counters start from the ledger's figures, refunds included
                since = until
        elif since >= until:
            return None
        from adstack.finance.charges import refunds_between

        given = [reservations.given_back(r) for r in refunds_between(session, since, until)] if since < until else []
        return _Refunds(max(since, until), given)

    def _give_back(self, refunds: _Refunds | None) -> None:
        """Called once the state with the refunds' ledger figures is served."""
        if refunds is None:
            return
        try:
            self.engine.counters.give_back(refunds.given, refunds.through)
        except Exception:  # the shared counters are unreachable: given back on the next refresh
            log.warning("could not give refunds back to the budget counters", exc_info=True)
            return
        self._refunds_since = refunds.through

    def refresh_rates(self, *, force: bool = False) -> None:
        outcomes = self.engine.outcomes
        if not force and outcomes.changes == self._rates_changes:
            return
        self._rates_changes = outcomes.changes
        rates = outcomes.model()
        with self._refresh_lock:
            state = self.engine.state
            self.engine.swap(ServingState.build(state.snapshot, rates))

    def _reload_audiences(self) -> None:
        try:
            from adstack.audiences.service import audience_index_signature, load_audience_index
        except ImportError:  # pragma: no cover
            return
        with self.session_factory() as session:
            signature = audience_index_signature(session)
            if self.audience_index is not None and signature == self._audiences_signature:
                return
            index = load_audience_index(session, self.settings, previous=self.audience_index)
            session.rollback()
        self._audiences_signature = signature
        self.audience_index = index
        self.engine.audiences = index

    # ---------- outcomes ----------

    def observe(self, events: Iterable[Event]) -> None:
        """Count impressions, clicks and conversions for the predictions and the creative combinations."""
        snapshot = self.engine.state.snapshot
        outcomes = self.engine.outcomes
        for event in self._first_sight(events):
            leaf: Leaf = (event.placement_type, event.campaign_id, event.ad_group_id, event.creative_id)
            kind = event.event_type
            impression_id = event.attrs.get("impression_id") or (
                event.event_id.split(":", 1)[1] if kind is EventType.IMPRESSION and ":" in event.event_id else "")
            if kind is EventType.IMPRESSION:
                outcomes.add(leaf, impressions=1)
                self._count_combination(event.creative_id, impression_id, impressions=1)
            elif kind is EventType.CLICK:
                outcomes.add(leaf, clicks=1)
                self._count_combination(event.creative_id, impression_id, clicks=1)
            elif kind in (EventType.INSTALL, EventType.IN_APP_EVENT):
                group = snapshot.ad_groups.get(event.ad_group_id)
                wanted = (group.conversion_event or "INSTALL") if group is not None else ""
                name = "INSTALL" if kind is EventType.INSTALL else event.conversion_event
                if name == wanted:
                    outcomes.add(leaf, conversions=1)

    def _first_sight(self, events: Iterable[Event]) -> list[Event]:
        """The events of ads not observed before (within the remembered window): the event log repeats what a
        client retried, and the store only drops the repeats when it loads them."""
        fresh = []
        with self._observe_lock:
            for event in events:
                event_id = event.event_id
                if not event.ad_group_id or event_id in self._observed or event_id in self._observed_before:
                    continue
                if len(self._observed) >= OBSERVED_IDS_PER_GENERATION:
                    self._observed_before, self._observed = self._observed, set()
                self._observed.add(event_id)
                fresh.append(event)
        return fresh

    def _count_combination(self, creative_id: int, impression_id: str, *, impressions: int = 0,
                           clicks: int = 0) -> None:
        key = combination_of(impression_id) if impression_id else None
        if key:
            self.engine.outcomes.add_combination(creative_id, key, impressions=impressions, clicks=clicks)

    def load_outcome_stats(self) -> None:
        """Replace the outcome counts with the event store's (every process then predicts from all traffic)."""
        from adstack.events.schema import ROLLUP_TABLE
        from adstack.events.service import get_event_store

        store = get_event_store(self.settings)
        result = store.query(
            f"SELECT placement_type, campaign_id, ad_group_id, creative_id, conversion_event, "  # noqa: S608
            f"sum(impressions) AS imps, sum(clicks) AS clicks, sum(installs) AS installs, "
            f"sum(conversions) AS convs FROM {ROLLUP_TABLE} "
            f"WHERE hour >= now() - INTERVAL {STATS_LOOKBACK_DAYS} DAY AND ad_group_id != 0 "
            f"GROUP BY placement_type, campaign_id, ad_group_id, creative_id, conversion_event", fresh=False)
        snapshot = self.engine.state.snapshot
        leaves: dict[Leaf, Outcomes] = {}
        for row in result.dicts():
            leaf = (str(row["placement_type"]), int(row["campaign_id"]), int(row["ad_group_id"]),
                    int(row["creative_id"]))
            seen = leaves.setdefault(leaf, Outcomes())
            seen.impressions += int(row["imps"])
            seen.clicks += int(row["clicks"])
            group = snapshot.ad_groups.get(leaf[2])
            wanted = (group.conversion_event or "INSTALL") if group is not None else "INSTALL"
            if wanted == "INSTALL":
                seen.conversions += int(row["installs"])
            elif row["conversion_event"] == wanted:
                seen.conversions += int(row["convs"])
        self.engine.outcomes.replace(leaves)

    # ---------- device profiles ----------

    def note_device(self, gaid: str, installed_packages: list[str] | None, usage_seconds: dict[str, int] | None,
                    now: datetime, *, country: str | None = None) -> None:
        """Pass what a request reports about its device to the profile store. A device asks for ads many times
        a session; the same report within DEVICE_REPORT_SECONDS adds nothing and is skipped (usage time always
        counts). Reported packages that ad groups promote also enter the install history."""
        store = self.device_profiles
        if not usage_seconds:
            signature = (gaid, country, hash(tuple(installed_packages)) if installed_packages else 0)
            moment = now.timestamp()
            last = self._device_reports.get(signature)
            if last is not None and moment - last < DEVICE_REPORT_SECONDS:
                return
            if len(self._device_reports) >= MAX_REMEMBERED_DEVICE_REPORTS:
                self._device_reports.clear()
            self._device_reports[signature] = moment
        if installed_packages and self.install_history.tracked:
            from adstack.audiences.ids import device_key

            self.install_history.observe(device_key(gaid), installed_packages, now.timestamp())
        if store is None:
            return
        store.record(gaid=gaid, installed_packages=installed_packages or [], usage=usage_seconds, seen_at=now,
                     country=country)

    def load_install_history(self, limit: int = MAX_LOADED_INSTALL_ROWS) -> int:
        """Take back what the device profile store kept of the tracked packages, most recently reported first."""
        packages = sorted(self.install_history.tracked)
        if not packages:
            return 0
        try:
            from adstack.audiences.ids import to_unsigned
            from adstack.audiences.models import DeviceApp
        except ImportError:  # pragma: no cover - audiences are optional
            return 0
        from sqlalchemy import select

        with self.session_factory() as session:
            rows = session.execute(select(DeviceApp.device_key, DeviceApp.package, DeviceApp.first_seen_at,
                                          DeviceApp.last_seen_at).where(DeviceApp.package.in_(packages))
                                   .order_by(DeviceApp.last_seen_at.desc()).limit(limit)).all()
            session.rollback()
        return self.install_history.load(
            (to_unsigned(key), package, as_utc(first).timestamp(), as_utc(last).timestamp())
            for key, package, first, last in rows)

    # ---------- request events ----------

    def record(self, events: Iterable[Event]) -> None:
        """Buffer events of the hot path; the background thread appends them to the event store in batches."""
        with self._events_lock:
            self._events.extend(events)

    def flush_events(self) -> None:
        with self._events_lock:
            batch, self._events = self._events, []
        if batch:
            from adstack.events.service import get_event_store

            get_event_store(self.settings).append(batch)

    def now(self) -> datetime:
        return utcnow()
