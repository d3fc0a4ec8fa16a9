"""Ad group values: API values to column values (enums as strings, targeting and slots as JSON, times in UTC),
and the rules they are checked against (bids, target group, schedule and budget, inventory, audiences, CPT
bookings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from adstack.campaigns import cpt
from adstack.campaigns.enums import BID_TYPES_BY_OBJECTIVE, BidType, MarketingObjective, PromotionType, TargetGroup
from adstack.campaigns.models import Campaign
from adstack.campaigns.targeting import Targeting
from adstack.core.errors import FieldError, ValidationFailed
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.inventory import service as inventory
from adstack.inventory.models import CatalogueStatus

# ---------- ad groups: values ----------


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _slot_times(slot: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])


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


# Source: Mi Ads usage guide, 3.1.2 "Create Ad Group", "Set promotion target": "Select the target group that
# matches the promotion target". The "App install" groups (not currently installed, not installed within 90 days,
# never installed, already installed) are about the promoted app, so they belong to app download campaigns; a
# non-download campaign promotes a page and has only "User coverage: All users".
def allowed_target_groups(promotion_type: str) -> list[str]:
    if promotion_type == PromotionType.APP_DOWNLOAD:
        return [t.value for t in TargetGroup]
    return [TargetGroup.ALL_USERS.value]


def target_group_error(promotion_type: str, target_group: str) -> FieldError | None:
    allowed = allowed_target_groups(promotion_type)
    if target_group in allowed:
        return None
    return FieldError("target_group", "promotion_target",
                      f"the target group must match the campaign's promotion target: a {promotion_type} campaign's "
                      f"ad groups target {' or '.join(allowed)}", limit=allowed, actual=target_group)


def _target_group_errors(promotion_type: str, values: dict[str, Any], sent: set[str], *, new: bool
                         ) -> list[FieldError]:
    # An ad group stored before the rule keeps its value until the target group is edited: serving reads the
    # target group only for app download campaigns, so it has no effect, and other edits must not be refused.
    if not new and "target_group" not in sent:
        return []
    error = target_group_error(promotion_type, values.get("target_group") or TargetGroup.ALL_USERS.value)
    return [error] if error else []


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
                       ad_group_id: int | None = None, stored_slots: list[dict[str, str]] | None = None) -> None:
    """`stored_slots`: the ad group's booked slots before this change (none for a new one)."""
    errors = (_bid_errors(campaign.objective, values, sent)
              + _target_group_errors(campaign.promotion_type, values, sent, new=ad_group_id is None)
              + _schedule_and_budget_errors(values)
              + _inventory_errors(session, values["placement_type"], values["publisher_ids"], values["ad_space_ids"])
              + _audience_errors(session, campaign.account_id, values["targeting"]))
    if not errors:
        errors = cpt.slot_errors(values, stored_slots or [], now=utcnow())
    if errors:
        raise ValidationFailed("the ad group has invalid fields", fields=errors)
    cpt.check_bookings(session, ad_group_id=ad_group_id, account_id=campaign.account_id, values=values)
