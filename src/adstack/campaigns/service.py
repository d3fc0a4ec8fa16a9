"""Campaigns and ad groups: create, edit, review, status, copy and cascade delete.

Ad group values and their rules are in ad_group_values.py, serving status in serving_status.py, lists in lists.py
and the audience-size estimate in audience_size.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Account, Principal
from adstack.campaigns import cpt
from adstack.campaigns.ad_group_values import (
    _plain,
    _storage_values,
    _validate_ad_group,
    allowed_target_groups,
    target_group_error,
)
from adstack.campaigns.enums import (
    BidType,
    Pacing,
    PromotionChannel,
    PromotionType,
    StatusAction,
    TargetGroup,
    UserStatus,
)
from adstack.campaigns.models import (
    AdGroup,
    AdGroupCreate,
    AdGroupUpdate,
    Campaign,
    CampaignCreate,
    CampaignUpdate,
    ItemResult,
)
from adstack.campaigns.targeting import Targeting
from adstack.core.errors import DomainError, FieldError, Forbidden, InvalidState, NotFound, ValidationFailed
from adstack.core.timeutil import as_utc, utcnow, validate_time_zone
from adstack.finance import budgets
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.review import enforcement
from adstack.review import service as review
from adstack.review.models import ReviewAction, ReviewStatus

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
    if campaign is None or not tenancy.can_see_account(session, principal, campaign.account_id):
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


def get_ad_group(session: Session, principal: Principal, ad_group_id: int) -> AdGroup:
    """An ad group the principal may see, deleted ones included; others' answer 404 like missing ones."""
    ad_group = session.get(AdGroup, ad_group_id)
    if ad_group is None or not tenancy.can_see_account(session, principal, ad_group.account_id):
        raise NotFound(f"ad group {ad_group_id} not found")
    return ad_group


def _ensure_not_deleted(obj: Campaign | AdGroup) -> None:
    if obj.status == UserStatus.DELETED:
        kind = "campaign" if isinstance(obj, Campaign) else "ad group"
        raise InvalidState(f"{kind} {obj.id} is deleted")


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
    account_id = tenancy.resolve_account_id(session, principal, data.account_id)
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
    if merged["promotion_type"] != campaign.promotion_type:
        errors += _promotion_target_errors(session, campaign, merged["promotion_type"])
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


def _promotion_target_errors(session: Session, campaign: Campaign, promotion_type: str) -> list[FieldError]:
    """A campaign keeps a promotion target its ad groups' target groups match (ad_group_values.allowed_target_groups):
    switching to non-download waits until none targets installs of the app."""
    clashing = [g.id for g in _live_ad_groups(session, [campaign.id])
                if target_group_error(promotion_type, g.target_group) is not None]
    if not clashing:
        return []
    allowed = allowed_target_groups(promotion_type)
    return [FieldError("promotion_type", "promotion_target",
                       f"ad groups {', '.join(map(str, clashing))} have a target group a {promotion_type} campaign "
                       f"does not take; set it to {' or '.join(allowed)} first", limit=allowed,
                       actual=clashing)]


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
    # Source: Mi Ads usage guide, 3.3 "Ad List", "② Copy": "Create an identical campaign/ad group/creation".
    # Every setting comes along, the IAB categories too (an uncategorised campaign gets no bid wherever an exchange
    # sends bcat); ids, review and spend are the copy's own.
    copy = Campaign(account_id=source.account_id, objective=source.objective, name=name or copy_name(source.name),
                    promotion_type=source.promotion_type, package_name=source.package_name,
                    landing_kind=source.landing_kind, landing_url=source.landing_url,
                    iab_categories=list(source.iab_categories or []), status=source.status)
    session.add(copy)
    session.flush()
    after = campaign_snapshot(copy) | {"copied_from": source.id, "deep": deep}
    _record(session, principal, Operation.COPY, copy, None, after)
    if deep:
        for ad_group in _live_ad_groups(session, [source.id]):
            _copy_ad_group(session, principal, ad_group, campaign=copy, name=ad_group.name, with_creatives=True)
    return copy


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
    if not data.time_zone:
        try:
            validate_time_zone(time_zone)
        except ValueError as exc:  # an account in UTC+13 or +14: an ad group keeps to the guide's range
            raise ValidationFailed.single(
                "time_zone", "guide_range", f"the account's time zone does not suit an ad group: {exc}; choose the "
                "ad group's time zone", limit="UTC-12..UTC+12", actual=time_zone) from exc
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
    if time_zone != ad_group.time_zone and budgets.ad_group_spend_micros(session, ad_group.id) > 0:
        # Its daily budget counts spend by its local day: a new zone would start a fresh day's budget at once.
        raise ValidationFailed.single("time_zone", "fixed_once_spent",
                                      "the time zone of an ad group that has spent cannot change",
                                      actual=time_zone)
    before = ad_group_snapshot(ad_group)
    values = {**{k: v for k, v in before.items() if k != "review_status"},
              **_storage_values(changes, time_zone)}
    _validate_ad_group(session, campaign, values, set(changes), ad_group_id=ad_group.id,
                       stored_slots=ad_group.booked_slots or [])
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
    # A draft held no slots: they are checked now, when they start to be held.
    cpt.check_bookings(session, ad_group_id=ad_group.id, account_id=ad_group.account_id, values=before)
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
    source_campaign = session.get(Campaign, source.campaign_id)
    if source_campaign is not None and target_group_error(source_campaign.promotion_type, source.target_group):
        # Stored before the target group had to match the promotion target and never in force (serving reads it
        # only for app downloads): the copy says what the original did, all users.
        values["target_group"] = allowed_target_groups(source_campaign.promotion_type)[0]
    if campaign.id != source.campaign_id or values.get("bid_type") == BidType.CPT.value:
        _validate_ad_group(session, campaign, values, set())  # a CPT copy books its slots anew
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
