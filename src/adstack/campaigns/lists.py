"""Campaign and ad group lists: search, filter, sort and page, with serving status and spend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.campaigns.enums import ServingStatus, UserStatus
from adstack.campaigns.models import AdGroup, Campaign
from adstack.campaigns.service import _live_ad_groups
from adstack.campaigns.serving_status import _chunks, campaign_statuses, serving_statuses, spend_by
from adstack.finance.models import LedgerEntry
from adstack.inventory import service as inventory

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
    conditions: list[ColumnElement[bool]] = [column.icontains(query, autoescape=True)]
    if query.isdecimal() and len(query) < 19:
        conditions.append(id_column == int(query))
    return or_(*conditions)


def _scope(session: Session, principal: Principal, model: type[Campaign] | type[AdGroup], stmt: Any,
           account_id: int | None) -> Any:
    if account_id is not None:
        tenancy.ensure_account_visible(session, principal, account_id)
        return stmt.where(model.account_id == account_id)
    visible = tenancy.visible_account_ids(session, principal)
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
