"""Campaigns and ad groups: create, edit, review, status, copy, cascade delete, lists and serving status."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import service as accounts
from adstack.accounts.models import Account, Principal
from adstack.campaigns import cpt
from adstack.campaigns.enums import (
    BID_TYPES_BY_OBJECTIVE,
    BidType,
    MarketingObjective,
    Pacing,
    PromotionChannel,
    PromotionType,
    ServingStatus,
    StatusAction,
    TargetGroup,
    UserStatus,
)
from adstack.campaigns.estimate import AudienceEstimate, estimate_audience
from adstack.campaigns.models import (
    AdGroup,
    AdGroupCreate,
    AdGroupUpdate,
    Campaign,
    CampaignCreate,
    CampaignUpdate,
    EstimateIn,
    ItemResult,
)
from adstack.campaigns.readiness import Readiness, readiness
from adstack.campaigns.status import (
    ScheduleFacts,
    ServingFacts,
    campaign_serving_status,
    derive_serving_status,
    local_midnight_utc,
)
from adstack.campaigns.targeting import Targeting
from adstack.core.errors import DomainError, FieldError, Forbidden, InvalidState, NotFound, ValidationFailed
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.finance import service as finance
from adstack.finance.models import EntryType, LedgerEntry
from adstack.inventory import service as inventory
from adstack.inventory.models import CatalogueStatus
from adstack.inventory.service import TablePopulationSource
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.review import enforcement
from adstack.review import service as review
from adstack.review.models import ReviewAction, ReviewStatus
from adstack.serving import reservations

CAMPAIGN = "campaign"
AD_GROUP = "ad_group"

# Source: Mi Ads usage guide, 3.3 "Ad List", "List operations - edit": modifying "the ad group's app package
# name, the distribution area, publisher's pushes, or any other creative ad information (except for the ad's
# creative name)" triggers the review process. Nothing else sends an approved object back.
# The package name lives on the campaign; a non-download campaign's landing page stands in its place, and
# switching between the two replaces one with the other.
CAMPAIGN_REVIEWED_FIELDS = frozenset({"promotion_type", "package_name", "landing_kind", "landing_url",
                                      "iab_categories"})
# The publisher: the publishers and ad spaces chosen, and the placement they are chosen within (guide 3.1.2,
# "different placements correspond to different publishers/ads").
AD_GROUP_REVIEWED_FIELDS = ("placement_type", "publisher_ids", "ad_space_ids")
# The distribution area: the countries/regions targeted.
AD_GROUP_REVIEWED_TARGETING = ("countries",)

NAME_MAX = 100
_CHUNK = 900  # ids per IN (...) list, well inside every database's parameter limit


# ---------- snapshots (operation log) ----------


def campaign_snapshot(campaign: Campaign) -> dict[str, Any]:
    return {"name": campaign.name, "objective": campaign.objective, "promotion_type": campaign.promotion_type,
            "package_name": campaign.package_name, "landing_kind": campaign.landing_kind,
            "landing_url": campaign.landing_url, "status": campaign.status, "account_id": campaign.account_id,
            "iab_categories": list(campaign.iab_categories or [])}


_AD_GROUP_COLUMNS = (
    "campaign_id", "name", "promotion_channel", "target_group", "placement_type", "publisher_ids", "ad_space_ids",
    "targeting", "time_zone", "start_at", "end_at", "dayparting", "total_budget_micros", "daily_budget_micros",
    "pacing", "frequency_cap_per_day", "bid_type", "bid_micros", "conversion_event", "booked_impressions",
    "booked_slots", "status",
)


def ad_group_snapshot(ad_group: AdGroup) -> dict[str, Any]:
    values = {name: getattr(ad_group, name) for name in _AD_GROUP_COLUMNS}
    values["start_at"] = as_utc(ad_group.start_at)
    values["end_at"] = as_utc(ad_group.end_at) if ad_group.end_at else None
    values["review_status"] = ad_group.review_status
    return values


def _record(session: Session, principal: Principal, operation: Operation, obj: Campaign | AdGroup,
            before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    oplog.record(session, actor=principal, operation=operation,
                 object_type=CAMPAIGN if isinstance(obj, Campaign) else AD_GROUP, object_id=obj.id,
                 object_name=obj.name, account_id=obj.account_id, before=before, after=after)


# ---------- access ----------


def get_campaign(session: Session, principal: Principal, campaign_id: int) -> Campaign:
    """A campaign the principal may see, deleted ones included; others' answer 404 like missing ones."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not accounts.can_see_account(session, principal, campaign.account_id):
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


def get_ad_group(session: Session, principal: Principal, ad_group_id: int) -> AdGroup:
    """An ad group the principal may see, deleted ones included; others' answer 404 like missing ones."""
    ad_group = session.get(AdGroup, ad_group_id)
    if ad_group is None or not accounts.can_see_account(session, principal, ad_group.account_id):
        raise NotFound(f"ad group {ad_group_id} not found")
    return ad_group


def _ensure_not_deleted(obj: Campaign | AdGroup) -> None:
    if obj.status == UserStatus.DELETED:
        kind = "campaign" if isinstance(obj, Campaign) else "ad group"
        raise InvalidState(f"{kind} {obj.id} is deleted")


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def copy_name(name: str) -> str:
    """The name a copy starts with: the original's, marked as a copy and kept within the length limit."""
    suffix = " - copy"
    return name[: NAME_MAX - len(suffix)] + suffix


# ---------- campaigns ----------


def _promotion_errors(promotion_type: str, package_name: str | None, landing_kind: str | None,
                      landing_url: str | None) -> list[FieldError]:
    errors = []
    if promotion_type == PromotionType.APP_DOWNLOAD:
        if not package_name:
            errors.append(FieldError("package_name", "required", "app download campaigns name the app's package"))
    else:
        if not landing_kind:
            errors.append(FieldError("landing_kind", "required", "non-download campaigns say h5 or website"))
        if not landing_url:
            errors.append(FieldError("landing_url", "required", "non-download campaigns need a landing URL"))
    return errors


def create_campaign(session: Session, principal: Principal, data: CampaignCreate) -> Campaign:
    account_id = accounts.resolve_account_id(session, principal, data.account_id)
    values = {k: _plain(v) for k, v in data.model_dump(exclude={"account_id"}).items()}
    if values["promotion_type"] == PromotionType.APP_DOWNLOAD:
        values["landing_kind"] = values["landing_url"] = None
    else:
        values["package_name"] = None
    errors = _promotion_errors(values["promotion_type"], values["package_name"], values["landing_kind"],
                               values["landing_url"])
    if errors:
        raise ValidationFailed("the campaign has invalid fields", fields=errors)
    campaign = Campaign(account_id=account_id, **values)
    session.add(campaign)
    session.flush()
    _record(session, principal, Operation.CREATE, campaign, None, campaign_snapshot(campaign))
    return campaign


def update_campaign(session: Session, principal: Principal, campaign_id: int, data: CampaignUpdate
                    ) -> tuple[Campaign, str | None]:
    """Apply only the fields sent. Changing the promoted app or page sends approved ad groups back to review."""
    campaign = get_campaign(session, principal, campaign_id)
    _ensure_not_deleted(campaign)
    changes = {k: _plain(v) for k, v in data.model_dump(exclude_unset=True).items()}
    for name in ("name", "promotion_type", "status", "iab_categories"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.single(name, "not_null", f"{name} cannot be null")
    if not changes:
        return campaign, None
    merged = {**campaign_snapshot(campaign), **changes}
    if merged["promotion_type"] == PromotionType.APP_DOWNLOAD:
        merged["landing_kind"] = merged["landing_url"] = None
    else:
        merged["package_name"] = None
    errors = _promotion_errors(merged["promotion_type"], merged["package_name"], merged["landing_kind"],
                               merged["landing_url"])
    if errors:
        raise ValidationFailed("the campaign has invalid fields", fields=errors)
    before = campaign_snapshot(campaign)
    if merged["status"] != campaign.status:
        enforcement.before_status_change(session, principal, object_type=CAMPAIGN, object_id=campaign.id,
                                         account_id=campaign.account_id, pausing=merged["status"] == UserStatus.PAUSED)
    for name in ("name", "promotion_type", "package_name", "landing_kind", "landing_url", "status", "iab_categories"):
        setattr(campaign, name, merged[name])
    after = campaign_snapshot(campaign)
    if after != before:  # an unchanged form leaves no trace
        _record(session, principal, Operation.UPDATE, campaign, before, after)
    changed = sorted(f for f in CAMPAIGN_REVIEWED_FIELDS if before[f] != after[f])
    notice = None
    if changed:
        sent_back = _send_back_to_review(session, principal, _live_ad_groups(session, [campaign.id]))
        if sent_back:
            notice = (f"Changing {', '.join(changed)} of the campaign \"{campaign.name}\" sent {sent_back} "
                      "approved ad group(s) back to review; they stop serving until approved again.")
    return campaign, notice


def _live_ad_groups(session: Session, campaign_ids: Sequence[int]) -> list[AdGroup]:
    if not campaign_ids:
        return []
    stmt = select(AdGroup).where(AdGroup.campaign_id.in_(campaign_ids), AdGroup.status != UserStatus.DELETED)
    return list(session.scalars(stmt.order_by(AdGroup.id)))


def _send_back_to_review(session: Session, principal: Principal, ad_groups: Iterable[AdGroup]) -> int:
    """Approved (and waiting) ad groups go back into the queue; returns how many were approved."""
    approved = 0
    for ad_group in ad_groups:
        if ad_group.review_status not in (ReviewStatus.APPROVED, ReviewStatus.UNDER_REVIEW):
            continue
        approved += ad_group.review_status == ReviewStatus.APPROVED
        before = ad_group_snapshot(ad_group)
        ad_group.review_status = _review_move(session, principal, ad_group, ReviewAction.EDIT_REVIEWED_FIELD)
        _record(session, principal, Operation.UPDATE, ad_group, before, ad_group_snapshot(ad_group))
    return approved


def set_campaign_status(session: Session, principal: Principal, campaign_id: int, action: StatusAction | str
                        ) -> Campaign:
    """Enable, pause, or delete (soft, cascading to ad groups and their creatives)."""
    campaign = get_campaign(session, principal, campaign_id)
    action = StatusAction(action)
    _ensure_not_deleted(campaign)
    before = campaign_snapshot(campaign)
    if action == StatusAction.DELETE:
        _delete_ad_groups(session, principal, _live_ad_groups(session, [campaign.id]))
        campaign.status = UserStatus.DELETED.value
        campaign.deleted_at = utcnow()
        _record(session, principal, Operation.DELETE, campaign, before, campaign_snapshot(campaign))
        return campaign
    target = UserStatus.ENABLED if action == StatusAction.ENABLE else UserStatus.PAUSED
    if campaign.status != target:
        enforcement.before_status_change(session, principal, object_type=CAMPAIGN, object_id=campaign.id,
                                         account_id=campaign.account_id, pausing=target == UserStatus.PAUSED)
        campaign.status = target.value
        _record(session, principal, Operation(action.value), campaign, before, campaign_snapshot(campaign))
    return campaign


def copy_campaign(session: Session, principal: Principal, campaign_id: int, *, name: str | None = None,
                  deep: bool = False) -> Campaign:
    """Quick copy: the campaign's settings. Deep copy: with every live ad group and its creatives."""
    source = get_campaign(session, principal, campaign_id)
    _ensure_not_deleted(source)
    copy = Campaign(account_id=source.account_id, objective=source.objective, name=name or copy_name(source.name),
                    promotion_type=source.promotion_type, package_name=source.package_name,
                    landing_kind=source.landing_kind, landing_url=source.landing_url, status=source.status)
    session.add(copy)
    session.flush()
    after = campaign_snapshot(copy) | {"copied_from": source.id, "deep": deep}
    _record(session, principal, Operation.COPY, copy, None, after)
    if deep:
        for ad_group in _live_ad_groups(session, [source.id]):
            _copy_ad_group(session, principal, ad_group, campaign=copy, name=ad_group.name, with_creatives=True)
    return copy


# ---------- ad groups: values ----------


def _utc(moment: datetime, time_zone: str) -> datetime:
    """A time without a zone is read in the ad group's time zone."""
    if moment.tzinfo is None:
        return as_utc(moment.replace(tzinfo=zone(time_zone)))
    return as_utc(moment)


def _storage_values(changes: dict[str, Any], time_zone: str) -> dict[str, Any]:
    """API values -> column values: plain strings for enums, JSON for targeting and slots, UTC times."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "targeting":
            values[name] = (value if isinstance(value, Targeting) else Targeting.model_validate(value or {})
                            ).model_dump(mode="json")
        elif name in ("start_at", "end_at"):
            values[name] = None if value is None else _utc(value, time_zone)
        elif name == "booked_slots":
            values[name] = [
                {"start": _utc(slot.start, time_zone).isoformat(), "end": _utc(slot.end, time_zone).isoformat()}
                for slot in value or []
            ]
        elif name in ("publisher_ids", "ad_space_ids"):
            values[name] = list(dict.fromkeys(value or []))
        else:
            values[name] = _plain(value)
    return values


def _inventory_errors(session: Session, placement_type: str, publisher_ids: list[int], ad_space_ids: list[int]
                      ) -> list[FieldError]:
    errors: list[FieldError] = []
    publishers = inventory.publishers_by_id(session, publisher_ids)
    for i, publisher_id in enumerate(publisher_ids):
        publisher = publishers.get(publisher_id)
        if publisher is None:
            errors.append(FieldError(f"publisher_ids.{i}", "exists", "no such publisher", actual=publisher_id))
        elif publisher.status != CatalogueStatus.ACTIVE:
            errors.append(FieldError(f"publisher_ids.{i}", "active", "the publisher is inactive", actual=publisher_id))
    spaces = inventory.ad_spaces_by_id(session, ad_space_ids)
    for i, space_id in enumerate(ad_space_ids):
        space = spaces.get(space_id)
        field = f"ad_space_ids.{i}"
        if space is None:
            errors.append(FieldError(field, "exists", "no such ad space", actual=space_id))
        elif space.status != CatalogueStatus.ACTIVE:
            errors.append(FieldError(field, "active", "the ad space is inactive", actual=space_id))
        elif space.placement_type != placement_type:
            errors.append(FieldError(field, "placement_type", "the ad space is for another placement type",
                                     limit=placement_type, actual=space.placement_type))
        elif publisher_ids and space.publisher_id not in publisher_ids:
            errors.append(FieldError(field, "publisher", "the ad space belongs to a publisher not chosen",
                                     limit=publisher_ids, actual=space.publisher_id))
    if publisher_ids and not ad_space_ids:
        offering = {s.publisher_id for s in inventory.ad_spaces_of_publishers(session, publisher_ids)
                    if s.placement_type == placement_type and s.status == CatalogueStatus.ACTIVE}
        for i, publisher_id in enumerate(publisher_ids):
            if publisher_id in publishers and publisher_id not in offering:
                errors.append(FieldError(f"publisher_ids.{i}", "placement_type",
                                         "the publisher has no active ad space of this placement type",
                                         limit=placement_type, actual=publisher_id))
    return errors


def _bid_errors(objective: str, values: dict[str, Any], sent: set[str]) -> list[FieldError]:
    """Brand takes guaranteed CPM or CPT; performance takes CPC or CPA. Fields of other bid types are
    cleared, or refused when the request itself sent them."""
    errors: list[FieldError] = []
    bid_type = values["bid_type"]
    allowed = sorted(b.value for b in BID_TYPES_BY_OBJECTIVE[MarketingObjective(objective)])
    if bid_type not in allowed:
        errors.append(FieldError("bid_type", "objective_bid_type", f"a {objective} campaign bids with "
                                 f"{' or '.join(allowed)}", limit=allowed, actual=bid_type))
    own_fields = {BidType.CPA: "conversion_event", BidType.GUARANTEED_CPM: "booked_impressions",
                  BidType.CPT: "booked_slots"}
    for owner, name in own_fields.items():
        empty: Any = [] if name == "booked_slots" else None
        if bid_type == owner:
            if not values.get(name):
                errors.append(FieldError(name, "required", f"{owner.value} bids need {name}"))
        elif values.get(name):
            if name in sent:
                errors.append(FieldError(name, "bid_type", f"{name} applies only to {owner.value} bids",
                                         limit=owner.value, actual=bid_type))
            values[name] = empty
    for i, slot in enumerate(values.get("booked_slots") or []):
        start, end = _slot_times(slot)
        if end <= start:
            errors.append(FieldError(f"booked_slots.{i}.end", "after_start", "a slot ends after it starts"))
    return errors


def _schedule_and_budget_errors(values: dict[str, Any]) -> list[FieldError]:
    errors = []
    if values["end_at"] is not None and values["end_at"] <= values["start_at"]:
        errors.append(FieldError("end_at", "after_start", "the end must be after the start",
                                 limit=values["start_at"].isoformat(), actual=values["end_at"].isoformat()))
    total, daily = values["total_budget_micros"], values["daily_budget_micros"]
    if total is not None and daily is not None and daily > total:
        errors.append(FieldError("daily_budget_micros", "le_total_budget",
                                 "the daily budget cannot exceed the total budget", limit=total, actual=daily))
    return errors


def _audience_errors(session: Session, account_id: int, targeting: dict[str, Any]) -> list[FieldError]:
    """Audiences must belong to the ad group's account; another tenant's id reads as missing."""
    named = [*targeting.get("include_audience_ids", []), *targeting.get("exclude_audience_ids", [])]
    if not named:
        return []
    from adstack.audiences import service as audiences

    usable = audiences.usable_audience_ids(session, account_id, named)
    return [FieldError(f"targeting.{key}.{i}", "exists", "no such audience in this account", actual=audience_id)
            for key in ("include_audience_ids", "exclude_audience_ids")
            for i, audience_id in enumerate(targeting.get(key, [])) if audience_id not in usable]


def _validate_ad_group(session: Session, campaign: Campaign, values: dict[str, Any], sent: set[str], *,
                       ad_group_id: int | None = None) -> None:
    errors = (_bid_errors(campaign.objective, values, sent)
              + _schedule_and_budget_errors(values)
              + _inventory_errors(session, values["placement_type"], values["publisher_ids"], values["ad_space_ids"])
              + _audience_errors(session, campaign.account_id, values["targeting"]))
    if errors:
        raise ValidationFailed("the ad group has invalid fields", fields=errors)
    cpt.check_bookings(session, ad_group_id=ad_group_id, values=values)


def _editable_campaign(session: Session, principal: Principal, campaign_id: int, field: str = "campaign_id"
                       ) -> Campaign:
    try:
        campaign = get_campaign(session, principal, campaign_id)
    except NotFound:
        raise ValidationFailed.single(field, "exists", f"campaign {campaign_id} not found",
                                      actual=campaign_id) from None
    if campaign.status == UserStatus.DELETED:
        raise ValidationFailed.single(field, "not_deleted", f"campaign {campaign_id} is deleted", actual=campaign_id)
    return campaign


# ---------- ad groups ----------


def create_ad_group(session: Session, principal: Principal, data: AdGroupCreate) -> AdGroup:
    campaign = _editable_campaign(session, principal, data.campaign_id)
    account = session.get(Account, campaign.account_id)
    sent = set(data.model_fields_set)
    time_zone = data.time_zone or (account.time_zone if account else "UTC")
    defaults: dict[str, Any] = {
        "promotion_channel": PromotionChannel.GETAPPS.value, "target_group": TargetGroup.ALL_USERS.value,
        "publisher_ids": [], "ad_space_ids": [], "targeting": Targeting().model_dump(mode="json"),
        "time_zone": time_zone, "start_at": utcnow(), "end_at": None, "dayparting": None,
        "total_budget_micros": None, "daily_budget_micros": None, "pacing": Pacing.EVEN.value,
        "frequency_cap_per_day": None, "conversion_event": None, "booked_impressions": None, "booked_slots": [],
        "status": UserStatus.ENABLED.value,
    }
    given = {k: v for k, v in data.model_dump(exclude={"campaign_id"}).items() if v is not None}
    given["targeting"] = data.targeting or Targeting()
    if data.booked_slots is not None:
        given["booked_slots"] = data.booked_slots
    values = {**defaults, **_storage_values(given, time_zone)}
    _validate_ad_group(session, campaign, values, sent)
    ad_group = AdGroup(account_id=campaign.account_id, campaign_id=campaign.id,
                       review_status=ReviewStatus.TO_BE_SUBMITTED.value, **values)
    session.add(ad_group)
    session.flush()
    review.track(session, object_type=AD_GROUP, object_id=ad_group.id, account_id=ad_group.account_id,
                 object_name=ad_group.name, status=ReviewStatus.TO_BE_SUBMITTED)
    _record(session, principal, Operation.CREATE, ad_group, None, ad_group_snapshot(ad_group))
    return ad_group


def update_ad_group(session: Session, principal: Principal, ad_group_id: int, data: AdGroupUpdate
                    ) -> tuple[AdGroup, str | None]:
    """Apply only the fields sent. Changing a reviewed field of an approved ad group sends it back to review;
    a quick edit (name, budgets, bid amount, status) does not."""
    ad_group = get_ad_group(session, principal, ad_group_id)
    _ensure_not_deleted(ad_group)
    changes = data.model_dump(exclude_unset=True)
    nullable = {"end_at", "dayparting", "total_budget_micros", "daily_budget_micros", "frequency_cap_per_day",
                "conversion_event", "booked_impressions"}
    for name, value in changes.items():
        if value is None and name not in nullable:
            raise ValidationFailed.single(name, "not_null", f"{name} cannot be null")
    if "targeting" in changes:
        changes["targeting"] = data.targeting
    if "booked_slots" in changes:
        changes["booked_slots"] = data.booked_slots
    if not changes:
        return ad_group, None
    campaign = session.get(Campaign, ad_group.campaign_id)
    assert campaign is not None
    time_zone = changes.get("time_zone") or ad_group.time_zone
    before = ad_group_snapshot(ad_group)
    values = {**{k: v for k, v in before.items() if k != "review_status"},
              **_storage_values(changes, time_zone)}
    _validate_ad_group(session, campaign, values, set(changes), ad_group_id=ad_group.id)
    if values["status"] != ad_group.status:
        enforcement.before_status_change(session, principal, object_type=AD_GROUP, object_id=ad_group.id,
                                         account_id=ad_group.account_id, pausing=values["status"] == UserStatus.PAUSED)
    for name, value in values.items():
        setattr(ad_group, name, value)
    changed = reviewed_ad_group_changes(before, values)
    notice = None
    if changed and ad_group.review_status in (ReviewStatus.APPROVED, ReviewStatus.UNDER_REVIEW):
        was_approved = ad_group.review_status == ReviewStatus.APPROVED
        ad_group.review_status = _review_move(session, principal, ad_group, ReviewAction.EDIT_REVIEWED_FIELD)
        if was_approved:
            notice = (f"Changing {', '.join(changed)} sent the ad group \"{ad_group.name}\" back to review; "
                      "it stops serving until approved again.")
    elif ad_group.name != before["name"]:
        review.track(session, object_type=AD_GROUP, object_id=ad_group.id, account_id=ad_group.account_id,
                     object_name=ad_group.name, status=ReviewStatus(ad_group.review_status))
    after = ad_group_snapshot(ad_group)
    if after != before:  # an unchanged form leaves no trace
        _record(session, principal, Operation.UPDATE, ad_group, before, after)
    return ad_group, notice


def reviewed_ad_group_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The guide-listed fields that differ; lists compare as sets, since their order means nothing."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list) and isinstance(b, list):
            return {str(x) for x in a} == {str(x) for x in b}
        return bool(a == b)

    changed = [name for name in AD_GROUP_REVIEWED_FIELDS if not same(before[name], after[name])]
    old_targeting, new_targeting = before.get("targeting") or {}, after.get("targeting") or {}
    changed += [f"targeting.{key}" for key in AD_GROUP_REVIEWED_TARGETING
                if not same(old_targeting.get(key) or [], new_targeting.get(key) or [])]
    return changed


def _review_move(session: Session, principal: Principal, ad_group: AdGroup, action: ReviewAction,
                 reasons: list[str] | None = None) -> str:
    return review.apply(session, object_type=AD_GROUP, object_id=ad_group.id, account_id=ad_group.account_id,
                        object_name=ad_group.name, current=ad_group.review_status, action=action,
                        actor_user_id=principal.user_id, reasons=reasons).value


def submit_ad_group(session: Session, principal: Principal, ad_group_id: int) -> AdGroup:
    ad_group = get_ad_group(session, principal, ad_group_id)
    _ensure_not_deleted(ad_group)
    before = ad_group_snapshot(ad_group)
    ad_group.review_status = _review_move(session, principal, ad_group, ReviewAction.SUBMIT)
    _record(session, principal, Operation.SUBMIT, ad_group, before, ad_group_snapshot(ad_group))
    return ad_group


def review_ad_group(session: Session, principal: Principal, ad_group_id: int, *, approve: bool,
                    reasons: Iterable[str] = ()) -> AdGroup:
    if not principal.can_review:
        raise Forbidden("only reviewers decide on ad groups")
    ad_group = get_ad_group(session, principal, ad_group_id)
    _ensure_not_deleted(ad_group)
    reason_list = [r.strip() for r in reasons if r.strip()]
    before = ad_group_snapshot(ad_group) | {"rejection_reasons": ad_group.rejection_reasons}
    ad_group.review_status = _review_move(session, principal, ad_group,
                                          ReviewAction.APPROVE if approve else ReviewAction.REJECT, reason_list)
    ad_group.rejection_reasons = "" if approve else "; ".join(reason_list)[:2000]
    after = ad_group_snapshot(ad_group) | {"rejection_reasons": ad_group.rejection_reasons}
    _record(session, principal, Operation.APPROVE if approve else Operation.REJECT, ad_group, before, after)
    return ad_group


def set_ad_group_status(session: Session, principal: Principal, ad_group_id: int, action: StatusAction | str
                        ) -> AdGroup:
    ad_group = get_ad_group(session, principal, ad_group_id)
    action = StatusAction(action)
    _ensure_not_deleted(ad_group)
    if action == StatusAction.DELETE:
        _delete_ad_groups(session, principal, [ad_group])
        return ad_group
    if action == StatusAction.ENABLE:
        campaign = session.get(Campaign, ad_group.campaign_id)
        if campaign is not None and campaign.status == UserStatus.DELETED:
            raise InvalidState(f"campaign {campaign.id} is deleted")
    target = UserStatus.ENABLED if action == StatusAction.ENABLE else UserStatus.PAUSED
    if ad_group.status != target:
        enforcement.before_status_change(session, principal, object_type=AD_GROUP, object_id=ad_group.id,
                                         account_id=ad_group.account_id, pausing=target == UserStatus.PAUSED)
        before = ad_group_snapshot(ad_group)
        ad_group.status = target.value
        _record(session, principal, Operation(action.value), ad_group, before, ad_group_snapshot(ad_group))
    return ad_group


def _delete_ad_groups(session: Session, principal: Principal, ad_groups: Sequence[AdGroup]) -> None:
    """Soft delete, cascading to creatives. Spend stays in the ledger under the same ids, so parents'
    totals and reports keep it."""
    if not ad_groups:
        return
    from adstack.creatives import service as creatives  # creatives import campaigns

    moment = utcnow()
    for ad_group in ad_groups:
        before = ad_group_snapshot(ad_group)
        ad_group.status = UserStatus.DELETED.value
        ad_group.deleted_at = moment
        review.withdraw(session, object_type=AD_GROUP, object_id=ad_group.id)
        _record(session, principal, Operation.DELETE, ad_group, before, ad_group_snapshot(ad_group))
    session.flush()
    creatives.delete_creatives_of(session, principal, ad_group_ids=[g.id for g in ad_groups])


def _copy_ad_group(session: Session, principal: Principal, source: AdGroup, *, campaign: Campaign, name: str,
                   with_creatives: bool) -> AdGroup:
    values = {k: v for k, v in ad_group_snapshot(source).items() if k not in ("review_status", "campaign_id")}
    values["name"] = name
    if campaign.id != source.campaign_id:
        _validate_ad_group(session, campaign, values, set())
    copy = AdGroup(account_id=campaign.account_id, campaign_id=campaign.id,
                   review_status=ReviewStatus.TO_BE_SUBMITTED.value, **values)
    session.add(copy)
    session.flush()
    review.track(session, object_type=AD_GROUP, object_id=copy.id, account_id=copy.account_id,
                 object_name=copy.name, status=ReviewStatus.TO_BE_SUBMITTED)
    _record(session, principal, Operation.COPY, copy, None,
            ad_group_snapshot(copy) | {"copied_from": source.id, "with_creatives": with_creatives})
    if with_creatives:
        from adstack.creatives import service as creatives  # creatives import campaigns

        creatives.copy_creatives(session, principal, from_ad_group_id=source.id, to_ad_group_id=copy.id)
    return copy


def copy_ad_group(session: Session, principal: Principal, ad_group_id: int, *, campaign_id: int | None = None,
                  name: str | None = None, deep: bool = False) -> AdGroup:
    """A prefilled draft (to be submitted) of the ad group, in its campaign or another of the same account;
    `deep` also copies its creatives."""
    source = get_ad_group(session, principal, ad_group_id)
    _ensure_not_deleted(source)
    campaign = _editable_campaign(session, principal, campaign_id or source.campaign_id)
    if campaign.account_id != source.account_id:
        raise ValidationFailed.single("campaign_id", "same_account", "copy within the ad group's own account",
                                      actual=campaign.id)
    return _copy_ad_group(session, principal, source, campaign=campaign, name=name or copy_name(source.name),
                          with_creatives=deep)


def batch_set_status(session: Session, principal: Principal, object_type: str, ids: Sequence[int],
                     action: StatusAction) -> list[ItemResult]:
    """Each id succeeds or fails alone (a savepoint per item); the caller commits what succeeded."""
    results = []
    for object_id in dict.fromkeys(ids):
        try:
            with session.begin_nested():
                if object_type == CAMPAIGN:
                    obj: Campaign | AdGroup = set_campaign_status(session, principal, object_id, action)
                else:
                    obj = set_ad_group_status(session, principal, object_id, action)
            results.append(ItemResult(id=object_id, ok=True, status=UserStatus(obj.status)))
        except DomainError as exc:
            results.append(ItemResult(id=object_id, ok=False, error=exc.as_dict()["error"]))
    return results


# ---------- serving status ----------


def _slot_times(slot: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])


def _schedule_facts(ad_group: AdGroup) -> ScheduleFacts:
    slots = [_slot_times(slot) for slot in ad_group.booked_slots or []]
    return ScheduleFacts(time_zone=ad_group.time_zone, start_at=ad_group.start_at, end_at=ad_group.end_at,
                         dayparting=ad_group.dayparting, booked_slots=slots, bid_type=ad_group.bid_type)


def _facts(ad_group: AdGroup, campaign: Campaign | None, account: Account | None, *, available: int,
           total_spend: int, spend_today: int, now: datetime, reserved_today: int = 0,
           ready: Readiness | None = None) -> ServingFacts:
    ready = ready or Readiness()
    return ServingFacts(
        status=ad_group.status,
        campaign_status=campaign.status if campaign else UserStatus.DELETED.value,
        account_review_status=account.review_status if account else ReviewStatus.TO_BE_SUBMITTED.value,
        review_status=ad_group.review_status,
        rejection_reasons=ad_group.rejection_reasons,
        account_rejection_reasons=account.rejection_reasons if account else "",
        available_micros=available,
        total_spend_micros=total_spend,
        spend_today_micros=spend_today,
        total_budget_micros=ad_group.total_budget_micros,
        daily_budget_micros=ad_group.daily_budget_micros,
        schedule=_schedule_facts(ad_group),
        now=now,
        currency=account.currency if account else "",
        reserved_today_micros=reserved_today,
        creatives=ready.creatives,
        approved_creatives=ready.approved_creatives,
        creatives_under_review=ready.creatives_under_review,
        inventory_spaces=ready.inventory_spaces,
    )


def ad_group_serving_status(session: Session, ad_group: AdGroup, *, now: datetime | None = None
                            ) -> tuple[ServingStatus, str]:
    """Why the ad group serves or not at `now`; see status.derive_serving_status for the order of checks."""
    moment = as_utc(now) if now else utcnow()
    spend_today = finance.ad_group_spend_micros(session, ad_group.id,
                                                since=local_midnight_utc(moment, ad_group.time_zone))
    held = reservations.held_today({(ad_group.id, _local_day(moment, ad_group.time_zone)): spend_today})
    facts = _facts(
        ad_group, session.get(Campaign, ad_group.campaign_id), session.get(Account, ad_group.account_id),
        available=finance.available_micros(session, ad_group.account_id),
        total_spend=finance.ad_group_spend_micros(session, ad_group.id),
        spend_today=spend_today, now=moment, reserved_today=held.get(ad_group.id, 0),
        ready=readiness(session, [ad_group])[ad_group.id],
    )
    return derive_serving_status(facts)


def _local_day(moment: datetime, time_zone: str) -> date:
    return as_utc(moment).astimezone(zone(time_zone)).date()


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def spend_by(session: Session, column: InstrumentedAttribute[int | None], ids: Iterable[int], *,
             since: datetime | None = None) -> dict[int, int]:
    """Charges per campaign or ad group id, from the ledger (the same rule as finance.ad_group_spend_micros)."""
    totals: dict[int, int] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = (select(column, func.coalesce(func.sum(-LedgerEntry.amount_micros), 0))
                .where(LedgerEntry.entry_type == EntryType.CHARGE.value, column.in_(chunk)).group_by(column))
        if since is not None:
            stmt = stmt.where(LedgerEntry.occurred_at >= since)
        for key, total in session.execute(stmt):
            if key is not None:
                totals[int(key)] = int(total or 0)
    return totals


def serving_statuses(session: Session, ad_groups: Sequence[AdGroup], *, now: datetime | None = None
                     ) -> dict[int, tuple[ServingStatus, str]]:
    """The serving status of many ad groups with a handful of queries (lists, snapshots)."""
    if not ad_groups:
        return {}
    moment = as_utc(now) if now else utcnow()
    campaigns = {c.id: c for c in session.scalars(
        select(Campaign).where(Campaign.id.in_({g.campaign_id for g in ad_groups})))}
    account_ids = {g.account_id for g in ad_groups}
    account_rows = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(account_ids)))}
    available = {account_id: finance.available_micros(session, account_id) for account_id in account_ids}
    ids = [g.id for g in ad_groups]
    total = spend_by(session, LedgerEntry.ad_group_id, ids)
    by_midnight: dict[datetime, list[int]] = defaultdict(list)
    for g in ad_groups:
        by_midnight[local_midnight_utc(moment, g.time_zone)].append(g.id)
    today: dict[int, int] = {}
    for midnight, group_ids in by_midnight.items():
        today.update(spend_by(session, LedgerEntry.ad_group_id, group_ids, since=midnight))
    held = reservations.held_today({(g.id, _local_day(moment, g.time_zone)): today.get(g.id, 0)
                                    for g in ad_groups if g.daily_budget_micros is not None})
    ready = readiness(session, ad_groups)
    return {
        g.id: derive_serving_status(_facts(
            g, campaigns.get(g.campaign_id), account_rows.get(g.account_id), available=available[g.account_id],
            total_spend=total.get(g.id, 0), spend_today=today.get(g.id, 0), now=moment,
            reserved_today=held.get(g.id, 0), ready=ready[g.id]))
        for g in ad_groups
    }


def campaign_statuses(session: Session, campaigns: Sequence[Campaign], *, now: datetime | None = None
                      ) -> dict[int, tuple[ServingStatus, str]]:
    if not campaigns:
        return {}
    groups = _live_ad_groups(session, [c.id for c in campaigns])
    group_status = serving_statuses(session, groups, now=now)
    per_campaign: dict[int, list[ServingStatus]] = defaultdict(list)
    for g in groups:
        per_campaign[g.campaign_id].append(group_status[g.id][0])
    accounts_by_id = {a.id: a for a in session.scalars(
        select(Account).where(Account.id.in_({c.account_id for c in campaigns})))}
    out = {}
    for c in campaigns:
        account = accounts_by_id.get(c.account_id)
        out[c.id] = campaign_serving_status(c.status, account.review_status if account else "",
                                            per_campaign.get(c.id, []),
                                            account.rejection_reasons if account else "")
    return out


# ---------- lists ----------


@dataclass(frozen=True)
class CampaignView:
    campaign: Campaign
    serving_status: ServingStatus
    serving_reason: str
    spend_micros: int
    ad_group_count: int


@dataclass(frozen=True)
class AdGroupView:
    ad_group: AdGroup
    serving_status: ServingStatus
    serving_reason: str
    spend_micros: int


_COMPUTED_SORTS = frozenset({"spend_micros", "serving_status"})


def _search(column: Any, id_column: Any, query: str) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [column.ilike(f"%{query}%")]
    if query.isdigit() and len(query) < 19:
        conditions.append(id_column == int(query))
    return or_(*conditions)


def _scope(session: Session, principal: Principal, model: type[Campaign] | type[AdGroup], stmt: Any,
           account_id: int | None) -> Any:
    if account_id is not None:
        accounts.ensure_account_visible(session, principal, account_id)
        return stmt.where(model.account_id == account_id)
    visible = accounts.visible_account_ids(session, principal)
    return stmt if visible is None else stmt.where(model.account_id.in_(visible))


def _runs_on_publisher(ad_group: AdGroup, publisher_id: int, space_owner: dict[int, int],
                       publisher_placements: set[str]) -> bool:
    if not ad_group.publisher_ids and not ad_group.ad_space_ids:
        # "All publishers": every publisher with an ad space of the ad group's placement type.
        return ad_group.placement_type in publisher_placements
    return publisher_id in (ad_group.publisher_ids or []) or any(
        space_owner.get(s) == publisher_id for s in ad_group.ad_space_ids or [])


def ad_groups_on_publisher(session: Session, ad_groups: Sequence[AdGroup], publisher_id: int) -> list[AdGroup]:
    """The ad groups that can run on the publisher: those naming it or one of its ad spaces, and those on all
    publishers whose placement type the publisher offers."""
    owners = {s.id: s.publisher_id for s in inventory.ad_spaces_by_id(
        session, {s for g in ad_groups for s in g.ad_space_ids or []}).values()}
    placements = {s.placement_type for s in inventory.ad_spaces_of_publishers(session, [publisher_id])}
    return [g for g in ad_groups if _runs_on_publisher(g, publisher_id, owners, placements)]


def _order(rows: list[Any], key: Any, descending: bool) -> list[Any]:
    return sorted(rows, key=key, reverse=descending)


def list_campaigns(
    session: Session,
    principal: Principal,
    *,
    query: str | None = None,
    account_id: int | None = None,
    objective: str | None = None,
    status: str | None = None,
    serving_status: str | None = None,
    placement_type: str | None = None,
    publisher_id: int | None = None,
    sort: str = "id",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[CampaignView], int]:
    """Search by name or id, filter, sort and page. Deleted campaigns show only when asked for by status."""
    stmt = _scope(session, principal, Campaign, select(Campaign), account_id)
    if query:
        stmt = stmt.where(_search(Campaign.name, Campaign.id, query))
    if objective:
        stmt = stmt.where(Campaign.objective == objective)
    stmt = stmt.where(Campaign.status == status) if status else stmt.where(Campaign.status != UserStatus.DELETED)
    if placement_type:
        stmt = stmt.where(exists().where(AdGroup.campaign_id == Campaign.id, AdGroup.placement_type == placement_type,
                                         AdGroup.status != UserStatus.DELETED))
    computed = serving_status is not None or publisher_id is not None or sort in _COMPUTED_SORTS
    if not computed:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        column = getattr(Campaign, sort)
        page = list(session.scalars(stmt.order_by(column.desc() if descending else column.asc(),
                                                  Campaign.id.desc() if descending else Campaign.id.asc())
                                    .limit(limit).offset(offset)))
        return _campaign_views(session, page, now), total
    rows = list(session.scalars(stmt.order_by(Campaign.id)))
    if publisher_id is not None:
        groups = ad_groups_on_publisher(session, _live_ad_groups(session, [c.id for c in rows]), publisher_id)
        wanted = {g.campaign_id for g in groups}
        rows = [c for c in rows if c.id in wanted]
    views = _campaign_views(session, rows, now)
    if serving_status is not None:
        views = [v for v in views if v.serving_status == serving_status]
    views = _order(views, lambda v: (_sort_value(v.campaign, v, sort), v.campaign.id), descending)
    return views[offset:offset + limit], len(views)


def _sort_value(obj: Any, view: Any, sort: str) -> Any:
    if sort in _COMPUTED_SORTS:
        value = getattr(view, sort)
        return value.value if isinstance(value, ServingStatus) else value
    value = getattr(obj, sort)
    return (value is not None, value if value is not None else 0)


def _campaign_views(session: Session, campaigns: list[Campaign], now: datetime | None) -> list[CampaignView]:
    ids = [c.id for c in campaigns]
    statuses = campaign_statuses(session, campaigns, now=now)
    spend = spend_by(session, LedgerEntry.campaign_id, ids)
    counts: dict[int, int] = {}
    for chunk in _chunks(ids):
        counts.update({int(k): int(n) for k, n in session.execute(
            select(AdGroup.campaign_id, func.count()).where(AdGroup.campaign_id.in_(chunk),
                                                            AdGroup.status != UserStatus.DELETED)
            .group_by(AdGroup.campaign_id))})
    return [CampaignView(c, statuses[c.id][0], statuses[c.id][1], spend.get(c.id, 0), counts.get(c.id, 0))
            for c in campaigns]


def campaign_view(session: Session, campaign: Campaign, *, now: datetime | None = None) -> CampaignView:
    return _campaign_views(session, [campaign], now)[0]


def list_ad_groups(
    session: Session,
    principal: Principal,
    *,
    query: str | None = None,
    account_id: int | None = None,
    campaign_id: int | None = None,
    objective: str | None = None,
    status: str | None = None,
    serving_status: str | None = None,
    review_status: str | None = None,
    placement_type: str | None = None,
    publisher_id: int | None = None,
    sort: str = "id",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[AdGroupView], int]:
    stmt = _scope(session, principal, AdGroup, select(AdGroup), account_id)
    if query:
        stmt = stmt.where(_search(AdGroup.name, AdGroup.id, query))
    if campaign_id is not None:
        stmt = stmt.where(AdGroup.campaign_id == campaign_id)
    if objective:
        stmt = stmt.where(AdGroup.campaign_id.in_(select(Campaign.id).where(Campaign.objective == objective)))
    stmt = stmt.where(AdGroup.status == status) if status else stmt.where(AdGroup.status != UserStatus.DELETED)
    if review_status:
        stmt = stmt.where(AdGroup.review_status == review_status)
    if placement_type:
        stmt = stmt.where(AdGroup.placement_type == placement_type)
    computed = serving_status is not None or publisher_id is not None or sort in _COMPUTED_SORTS
    if not computed:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        column = getattr(AdGroup, sort)
        page = list(session.scalars(stmt.order_by(column.desc() if descending else column.asc(),
                                                  AdGroup.id.desc() if descending else AdGroup.id.asc())
                                    .limit(limit).offset(offset)))
        return ad_group_views(session, page, now=now), total
    rows = list(session.scalars(stmt.order_by(AdGroup.id)))
    if publisher_id is not None:
        rows = ad_groups_on_publisher(session, rows, publisher_id)
    views = ad_group_views(session, rows, now=now)
    if serving_status is not None:
        views = [v for v in views if v.serving_status == serving_status]
    views = _order(views, lambda v: (_sort_value(v.ad_group, v, sort), v.ad_group.id), descending)
    return views[offset:offset + limit], len(views)


def ad_group_views(session: Session, ad_groups: Sequence[AdGroup], *, now: datetime | None = None
                   ) -> list[AdGroupView]:
    statuses = serving_statuses(session, ad_groups, now=now)
    spend = spend_by(session, LedgerEntry.ad_group_id, [g.id for g in ad_groups])
    return [AdGroupView(g, statuses[g.id][0], statuses[g.id][1], spend.get(g.id, 0)) for g in ad_groups]


# ---------- audience-size estimate ----------


def estimate(session: Session, principal: Principal, data: EstimateIn) -> tuple[AudienceEstimate, str]:
    """Size a targeting from the device-population table. Returns the estimate and the name of its source."""
    errors = _inventory_errors(session, data.placement_type.value, list(data.publisher_ids),
                               list(data.ad_space_ids))
    if errors:
        raise ValidationFailed("the estimate has invalid fields", fields=errors)
    publisher_ids = set(data.publisher_ids)
    publisher_ids |= {s.publisher_id for s in inventory.ad_spaces_by_id(session, data.ad_space_ids).values()}
    publisher_countries = (
        {p.country for p in inventory.publishers_by_id(session, publisher_ids).values()} if publisher_ids else None
    )
    audience_cap = None
    if data.targeting.include_audience_ids:
        from adstack.audiences import service as audiences

        account_id = accounts.resolve_account_id(session, principal, data.account_id)
        usable = audiences.usable_audience_ids(session, account_id, data.targeting.include_audience_ids)
        unknown = [FieldError(f"targeting.include_audience_ids.{i}", "exists", "no such audience in this account",
                              actual=a) for i, a in enumerate(data.targeting.include_audience_ids) if a not in usable]
        if unknown:
            raise ValidationFailed("the estimate has invalid fields", fields=unknown)
        audience_cap = sum(audiences.audience_size(session, a) for a in usable)
    source = TablePopulationSource(session)
    result = estimate_audience(source, data.targeting, data.placement_type.value,
                               publisher_countries=publisher_countries,
                               frequency_cap_per_day=data.frequency_cap_per_day, audience_devices=audience_cap)
    return result, "device_population_table" if audience_cap is None else "device_population_table+audiences"
