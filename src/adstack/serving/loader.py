"""Reading the control plane into a snapshot, and telling cheaply when it has changed.

`control_plane_signature` is a handful of aggregate queries (row count and latest update per table) that a
refresher runs every second; `load_snapshot` runs only when the signature moves. Money moves far more often than
the control plane (every charge), so `load_money` refreshes only the accounts and ad groups charged since the last
look and patches them into the current snapshot without rebuilding its index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.campaigns.cpt import unpaid_slot_starts
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.serving.fx import FxRates
from adstack.serving.request import parse_os_version
from adstack.serving.snapshot import (
    CPT,
    AccountSnap,
    AdGroupSnap,
    AdSpaceSnap,
    AssetCombination,
    BehaviourRule,
    CreativeSnap,
    PublisherSnap,
    Schedule,
    Snapshot,
    Spend,
    TargetingSnap,
    UsageRule,
)

log = logging.getLogger("adstack.serving")

CHUNK = 500
APPROVED = "approved"
ENABLED = "enabled"
ACTIVE = "active"


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _watched_tables() -> list[Any]:
    from adstack.accounts.models import Account
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.creatives.models import Creative
    from adstack.inventory.models import AdSpace, Publisher

    tables: list[Any] = [Account, Campaign, AdGroup, Creative, Publisher, AdSpace]
    try:
        from adstack.audiences.models import PackageCategory
        tables.append(PackageCategory)
    except ImportError:  # pragma: no cover - the audiences domain is optional
        pass
    try:
        from adstack.attribution.models import FxRate
        tables.append(FxRate)
    except ImportError:  # pragma: no cover
        pass
    try:
        from adstack.finance.models import CreditLine
        tables.append(CreditLine)
    except ImportError:  # pragma: no cover
        pass
    try:
        from adstack.apps.models import App
        tables.append(App)  # a filled-in tracker id or view-through setting changes the served impression links
    except ImportError:  # pragma: no cover
        pass
    return tables


def control_plane_signature(session: Session) -> tuple[Any, ...]:
    """Changes whenever anything a snapshot is built from is created, updated or deleted."""
    parts: list[Any] = []
    for table in _watched_tables():
        stamp = getattr(table, "updated_at", None)
        key = getattr(table, "id", None)
        columns: list[Any] = [func.count()]
        if stamp is not None:
            columns.append(func.max(stamp))
        if key is not None:
            columns.append(func.max(key))
        row = session.execute(select(*columns).select_from(table)).one()
        parts.append(tuple(str(v) for v in row))
    return tuple(parts)


# ---------- money ----------


@dataclass(frozen=True, slots=True)
class MoneyMark:
    """Where the last money refresh stopped: the newest ledger entry and spend counter it saw."""

    ledger_id: int = 0
    counter_at: datetime | None = None
    refusal_id: int = 0  # the newest refused charge: a refused CPT slot stops serving


def _funds(session: Session, account_ids: Iterable[int]) -> dict[int, AccountSnap]:
    from adstack.accounts.models import Account
    from adstack.finance import service as finance
    from adstack.finance.models import TOTAL_PERIOD, SpendCounter, SpendScope

    ids = sorted(set(account_ids))
    out: dict[int, AccountSnap] = {}
    for chunk in _chunks(ids):
        charged = dict(session.execute(select(SpendCounter.scope_id, SpendCounter.spent_micros).where(
            SpendCounter.scope == SpendScope.ACCOUNT.value, SpendCounter.period == TOTAL_PERIOD,
            SpendCounter.scope_id.in_(chunk))).all())
        for account in session.scalars(select(Account).where(Account.id.in_(chunk))):
            available = finance.funds(session, account).available_micros
            out[account.id] = AccountSnap(id=account.id, currency=account.currency,
                                          charged_micros=int(charged.get(account.id, 0)),
                                          available_micros=int(available))
    return out


def _ledger_spend(session: Session, groups: Iterable[tuple[int, str]], now: datetime) -> dict[int, Spend]:
    from adstack.finance import budgets

    days: dict[int, date] = {}
    pairs = []
    for group_id, time_zone in groups:
        day = as_utc(now).astimezone(zone(time_zone)).date()
        days[group_id] = day
        pairs.append((group_id, day.isoformat()))
    spent = budgets.ad_group_spend_today(session, pairs)
    return {g: Spend(today_micros=today, total_micros=total, day=days[g], total_units=units)
            for g, (today, total, units) in spent.items() if today or total or units}


def money_mark(session: Session) -> MoneyMark:
    """The last ledger entry, spend update and refusal; refunds up to the entry are committed (`refunds_between`)."""
    from adstack.finance.charges import read_after_refunds_in_flight
    from adstack.finance.models import ChargeRefusal, LedgerEntry, SpendCounter

    read_after_refunds_in_flight(session)

    return MoneyMark(ledger_id=int(session.scalar(select(func.coalesce(func.max(LedgerEntry.id), 0))) or 0),
                     counter_at=session.scalar(select(func.max(SpendCounter.last_charge_at))),
                     refusal_id=int(session.scalar(select(func.coalesce(func.max(ChargeRefusal.id), 0))) or 0))


def load_money(session: Session, snapshot: Snapshot, since: MoneyMark, *, now: datetime | None = None
               ) -> tuple[Snapshot, MoneyMark]:
    """The snapshot with the funds and spend of whatever was charged, credited or refunded since `since`."""
    from adstack.finance.models import EntryType, LedgerEntry, SpendCounter, SpendScope

    moment = now or utcnow()
    mark = money_mark(session)
    if mark == since:
        return snapshot, mark
    accounts = set(session.scalars(select(LedgerEntry.account_id).where(LedgerEntry.id > since.ledger_id)
                                   .distinct()))
    group_ids: set[int] = set()
    if since.counter_at is not None:
        group_ids = {int(g) for g in session.scalars(select(SpendCounter.scope_id).where(
            SpendCounter.scope == SpendScope.AD_GROUP.value, SpendCounter.last_charge_at >= since.counter_at)
            .distinct())}
        # A refund lowers its ad group's spend counters but leaves their last charge's time as it was.
        group_ids.update(int(g) for g in session.scalars(select(LedgerEntry.ad_group_id).where(
            LedgerEntry.id > since.ledger_id, LedgerEntry.entry_type == EntryType.REFUND.value).distinct())
            if g is not None)
    else:
        group_ids = set(snapshot.ad_groups)
    known_accounts = {a for a in accounts if a in snapshot.accounts}
    funds = _funds(session, known_accounts) if known_accounts else {}
    groups = [(g, snapshot.ad_groups[g].schedule.time_zone) for g in group_ids if g in snapshot.ad_groups]
    spend = _ledger_spend(session, groups, moment) if groups else {}
    for group_id, _ in groups:  # spent nothing now (all refunded): the figure read before no longer holds
        spend.setdefault(group_id, Spend())
    unpaid = unpaid_slot_starts(session, (g.id for g in snapshot.by_ordinal if g.bid_type == CPT)) \
        if mark.refusal_id != since.refusal_id or mark.ledger_id != since.ledger_id else snapshot.unpaid_slots
    if not funds and not spend and unpaid == snapshot.unpaid_slots:
        return snapshot, mark
    return snapshot.patched(accounts=funds, ledger_spend=spend, unpaid_slots=unpaid, ledger_mark=mark.ledger_id), mark


# ---------- the snapshot ----------


def _host(url: str | None) -> str:
    if not url:
        return ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def _hours_of_week(dayparting: Sequence[Sequence[bool]] | None) -> frozenset[int] | None:
    if dayparting is None:
        return None
    return frozenset(day * 24 + hour for day, row in enumerate(dayparting) for hour, on in enumerate(row) if on)


def _slots(raw: Sequence[dict[str, str]] | None) -> tuple[tuple[datetime, datetime], ...]:
    slots = []
    for slot in raw or ():
        try:
            slots.append((as_utc(datetime.fromisoformat(slot["start"])), as_utc(datetime.fromisoformat(slot["end"]))))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(slots)


def _lower(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(str(v).lower() for v in values)


def targeting_snap(raw: dict[str, Any], *, placement_type: str, publisher_ids: Sequence[int],
                   ad_space_ids: Sequence[int], space_owner: dict[int, int], target_group: str,
                   promoted_package: str) -> TargetingSnap:
    """The stored targeting JSON (validated on write) as the snapshot's sets.

    Publishers and ad spaces: listed ad spaces restrict their publisher to those spaces; a listed publisher with
    no listed space is open on all its spaces."""
    spaces = frozenset(int(s) for s in ad_space_ids)
    publishers_with_spaces = {space_owner.get(s) for s in spaces}
    publishers = frozenset(int(p) for p in publisher_ids if p not in publishers_with_spaces)
    behaviours = tuple(BehaviourRule(action=str(b.get("action", "")), packages=frozenset(b.get("packages") or ()),
                                     categories=frozenset(b.get("categories") or ()))
                       for b in raw.get("app_behaviours") or ())
    usage = tuple(UsageRule(min_minutes=int(u.get("min_minutes", 0)), package=u.get("package"),
                            category=u.get("category")) for u in raw.get("app_usage") or ())
    return TargetingSnap(
        countries=_lower(raw.get("countries") or ()),
        genders=_lower(raw.get("genders") or ()),
        age_ranges=frozenset(raw.get("age_ranges") or ()),
        languages=_lower(raw.get("languages") or ()),
        networks=_lower(raw.get("networks") or ()),
        carriers=_lower(raw.get("carriers") or ()),
        device_models=_lower(raw.get("device_models") or ()),
        os_min=parse_os_version(raw.get("os_version_min")),
        os_max=parse_os_version(raw.get("os_version_max")),
        placement_types=frozenset({placement_type}) if placement_type else frozenset(),
        publisher_ids=publishers,
        ad_space_ids=spaces,
        deal_ids=frozenset(raw.get("deal_ids") or ()),
        installed_apps=frozenset(raw.get("installed_apps") or ()),
        installed_categories=frozenset(raw.get("installed_app_categories") or ()),
        not_installed_apps=frozenset(raw.get("not_installed_apps") or ()),
        not_installed_categories=frozenset(raw.get("not_installed_app_categories") or ()),
        behaviours=behaviours,
        usage=usage,
        include_audiences=tuple(int(a) for a in raw.get("include_audience_ids") or ()),
        exclude_audiences=tuple(int(a) for a in raw.get("exclude_audience_ids") or ()),
        target_group=target_group,
        promoted_package=promoted_package,
        excluded_publisher_packages=frozenset((raw.get("exceptions") or {}).get("publisher_packages") or ()),
        excluded_ad_space_ids=frozenset(int(s) for s in (raw.get("exceptions") or {}).get("ad_space_ids") or ()),
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _creative_snaps(session: Session, ad_group_ids: Sequence[int], base_url: str) -> dict[int, list[CreativeSnap]]:
    from adstack.creatives.combinations import asset_combinations
    from adstack.creatives.models import Creative
    from adstack.media import service as media
    from adstack.media.models import MediaAsset

    rows: list[Any] = []
    for chunk in _chunks(list(ad_group_ids)):
        rows += session.scalars(select(Creative).where(
            Creative.ad_group_id.in_(chunk), Creative.status == ENABLED, Creative.review_status == APPROVED,
            Creative.deleted_at.is_(None))).all()
    media_ids: set[int] = set()
    for creative in rows:
        materials = creative.materials or {}
        media_ids.update(int(i) for i in materials.get("images") or ())
        media_ids.update(int(i) for i in materials.get("videos") or ())
        media_ids.update(int(materials[k]) for k in ("icon", "cover_image") if materials.get(k) is not None)
    assets: dict[int, Any] = {}
    for chunk in _chunks(sorted(media_ids)):
        for asset in session.scalars(select(MediaAsset).where(MediaAsset.id.in_(chunk))):
            assets[asset.id] = asset
    out: dict[int, list[CreativeSnap]] = {}
    for creative in rows:
        combinations = []
        for combo in asset_combinations(creative.materials or {}):
            image = assets.get(combo.image_id) if combo.image_id is not None else None
            video = assets.get(combo.video_id) if combo.video_id is not None else None
            icon = assets.get(combo.icon_id) if combo.icon_id is not None else None
            if (combo.image_id is not None and image is None) or (combo.video_id is not None and video is None):
                continue  # a material whose file is gone cannot be shown
            visual = video or image
            combinations.append(AssetCombination(
                key=combo.key, title=combo.title or "", description=combo.description or "",
                image_url=media.public_url(image, base_url) if image is not None else "",
                video_url=media.public_url(video, base_url) if video is not None else "",
                icon_url=media.public_url(icon, base_url) if icon is not None else "",
                button=combo.button_text or "", width=visual.width if visual is not None else 0,
                height=visual.height if visual is not None else 0,
                duration_ms=(video.duration_ms or 0) if video is not None else 0,
                icon_width=(icon.width or 0) if icon is not None else 0,
                icon_height=(icon.height or 0) if icon is not None else 0,
                image_mime=image.mime_type if image is not None else "",
                icon_mime=icon.mime_type if icon is not None else ""))
        if not combinations:
            continue
        first = combinations[0]
        tracking = creative.video_tracking or {}
        materials = creative.materials or {}
        cover_id = materials.get("cover_image")
        cover = assets.get(int(cover_id)) if cover_id is not None else None
        out.setdefault(creative.ad_group_id, []).append(CreativeSnap(
            id=creative.id, ad_group_id=creative.ad_group_id, name=creative.name, format=creative.format,
            width=first.width, height=first.height,
            has_image=any(c.image_url for c in combinations), has_video=any(c.video_url for c in combinations),
            click_url=creative.click_url, deeplink=creative.deeplink or "",
            impression_monitor_urls=tuple(creative.impression_urls or ()),
            video_tracking_urls=tuple((event, url) for event, urls in sorted(tracking.items()) for url in urls or ()),
            duration_ms=max((c.duration_ms for c in combinations), default=0),
            combinations=tuple(combinations),
            business_name=_text(materials.get("business_name") or materials.get("brand_name")),
            business_phone=_text(materials.get("business_phone")),
            subtitles=tuple(t.strip() for t in materials.get("subtitles") or () if t and t.strip()),
            button_1=_text(materials.get("button_1")), button_2=_text(materials.get("button_2")),
            background_color=_text(materials.get("background_color")), top_button=bool(materials.get("top_button")),
            cover_image_url=media.public_url(cover, base_url) if cover is not None else "",
            cover_width=(cover.width or 0) if cover is not None else 0,
            cover_height=(cover.height or 0) if cover is not None else 0,
            cover_image_mime=cover.mime_type if cover is not None else "",
            language=_text(materials.get("language")).lower()))
    return out


def _view_through_urls(session: Session, campaigns: Iterable[Any]) -> dict[int, str]:
    """Per campaign promoting an app: its partner's view-through link template, where the app has one."""
    from adstack.apps import service as apps
    from adstack.apps.models import App

    wanted = {(c.account_id, c.package_name): c.id for c in campaigns if c.package_name}
    if not wanted:
        return {}
    out: dict[int, str] = {}
    packages = sorted({package for _, package in wanted})
    for start in range(0, len(packages), CHUNK):
        for app in session.scalars(select(App).where(App.package_name.in_(packages[start:start + CHUNK]),
                                                     App.deleted_at.is_(None))):
            campaign_id = wanted.get((app.account_id, app.package_name))
            link = apps.impression_tracking_link(app) if campaign_id is not None else None
            if campaign_id is not None and link:
                out[campaign_id] = link
    return out


def load_fx(session: Session) -> FxRates:
    try:
        from adstack.attribution.models import FxRate
    except ImportError:  # pragma: no cover
        return FxRates()
    rows = session.execute(select(FxRate.currency, FxRate.units_per_usd)).all()
    return FxRates.from_units_per_usd({currency: Decimal(units) for currency, units in rows})


def load_snapshot(session: Session, *, base_url: str, now: datetime | None = None, version: str = "",
                  ledger_mark: int = 0) -> Snapshot:
    """Everything that may serve, as of now, in one read of the control plane (its money read after ledger entry
    `ledger_mark`)."""
    from adstack.accounts.models import Account
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.inventory.models import AdSpace, Publisher

    moment = now or utcnow()
    fx = load_fx(session)
    publishers = [PublisherSnap(id=p.id, name=p.name, app_package=p.app_package, platform=p.platform,
                                country=p.country)
                  for p in session.scalars(select(Publisher).where(Publisher.status == ACTIVE))]
    live_publishers = {p.id for p in publishers}
    spaces = []
    space_owner: dict[int, int] = {}
    for space in session.scalars(select(AdSpace)):
        space_owner[space.id] = space.publisher_id
        if space.status != ACTIVE or space.publisher_id not in live_publishers:
            continue
        sizes = set()
        for text in space.sizes or ():
            width, _, height = str(text).partition("x")
            if width.isdecimal() and height.isdecimal():
                sizes.add((int(width), int(height)))
        reserve = fx.to_usd(space.reserve_price_micros or 0, space.reserve_currency or "USD")
        spaces.append(AdSpaceSnap(id=space.id, publisher_id=space.publisher_id, name=space.name,
                                  placement_type=space.placement_type,
                                  accepted_formats=frozenset(space.accepted_formats or ()),
                                  sizes=frozenset(sizes), reserve_price_micros=round(reserve)))

    found = session.execute(
        select(AdGroup, Campaign, Account)
        .join(Campaign, Campaign.id == AdGroup.campaign_id)
        .join(Account, Account.id == AdGroup.account_id)
        .where(AdGroup.status == ENABLED, AdGroup.review_status == APPROVED, AdGroup.deleted_at.is_(None),
               Campaign.status == ENABLED, Campaign.deleted_at.is_(None), Account.review_status == APPROVED)
    ).all()
    rows = [(g, c, a) for g, c, a in found if g.end_at is None or as_utc(g.end_at) > moment]
    creatives = _creative_snaps(session, [g.id for g, _, _ in rows], base_url)
    view_through = _view_through_urls(session, {c.id: c for _, c, _ in rows}.values())
    groups: list[AdGroupSnap] = []
    for group, campaign, account in rows:
        own = creatives.get(group.id)
        if not own:
            continue
        promoted = campaign.package_name or "" if campaign.promotion_type == "app_download" else ""
        domains = sorted({d for d in (_host(campaign.landing_url), *(_host(c.click_url) for c in own)) if d})
        slots = _slots(group.booked_slots)
        groups.append(AdGroupSnap(
            id=group.id, name=group.name, account_id=group.account_id, campaign_id=group.campaign_id,
            campaign_name=campaign.name, objective=campaign.objective, bid_type=group.bid_type,
            bid_micros=group.bid_micros, currency=account.currency, conversion_event=group.conversion_event or "",
            creatives=tuple(own),
            targeting=targeting_snap(group.targeting or {}, placement_type=group.placement_type,
                                     publisher_ids=group.publisher_ids or [], ad_space_ids=group.ad_space_ids or [],
                                     space_owner=space_owner, target_group=group.target_group,
                                     promoted_package=promoted),
            schedule=Schedule(time_zone=group.time_zone or "UTC", start=as_utc(group.start_at) if group.start_at
                              else None, end=as_utc(group.end_at) if group.end_at else None,
                              hours_of_week=_hours_of_week(group.dayparting), booked_slots=slots),
            daily_budget_micros=group.daily_budget_micros, total_budget_micros=group.total_budget_micros,
            pacing=group.pacing, frequency_cap=group.frequency_cap_per_day,
            booked_impressions=group.booked_impressions, advertiser_domains=tuple(domains),
            categories=tuple(campaign.iab_categories or ()),
            view_through_url=view_through.get(campaign.id, "")))
    accounts = _funds(session, {g.account_id for g in groups})
    spend = _ledger_spend(session, [(g.id, g.schedule.time_zone) for g in groups], moment)
    categories: dict[str, str] = {}
    try:
        from adstack.audiences.models import PackageCategory
        categories = dict(session.execute(select(PackageCategory.package, PackageCategory.category)).all())
    except ImportError:  # pragma: no cover
        pass
    return Snapshot(ad_groups=groups, accounts=accounts.values(), publishers=publishers, ad_spaces=spaces,
                    package_categories=categories, ledger_spend=spend, fx=fx, version=version, built_at=moment,
                    unpaid_slots=unpaid_slot_starts(session, (g.id for g in groups if g.bid_type == CPT)),
                    ledger_mark=ledger_mark)
