"""What an ad group needs besides its own settings before serving would pick it: creatives serving may show, and
ad spaces it may show on. Read with the same rules as the serving snapshot (`serving/loader.py`): a creative
serves when enabled, approved and not deleted; an ad space when it and its publisher are active, it is of the ad
group's placement, within the publishers and ad spaces the ad group chose, and accepts one of its formats."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.campaigns.models import AdGroup

_CHUNK = 500
ACTIVE = "active"
ENABLED = "enabled"


@dataclass(frozen=True)
class Readiness:
    creatives: int = 0  # live creatives, enabled
    approved_creatives: int = 0  # of those, approved: what serving may show
    creatives_under_review: int = 0
    inventory_spaces: int = 0  # ad spaces it may show on
    formats: frozenset[str] = field(default_factory=frozenset)


def readiness(session: Session, ad_groups: Sequence[AdGroup]) -> dict[int, Readiness]:
    """Per ad group id; a handful of queries for any number of ad groups."""
    from adstack.creatives.models import Creative
    from adstack.inventory.models import AdSpace, Publisher

    ids = [g.id for g in ad_groups]
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    formats: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(select(Creative.ad_group_id, Creative.format, Creative.review_status).where(
            Creative.ad_group_id.in_(ids[start:start + _CHUNK]), Creative.status == ENABLED,
            Creative.deleted_at.is_(None)))
        for group_id, creative_format, review_status in rows:
            count = counts[group_id]
            count[0] += 1
            if review_status == "approved":
                count[1] += 1
                formats[group_id].add(creative_format)
            elif review_status == "under_review":
                count[2] += 1
    placements = {g.placement_type for g in ad_groups}
    spaces = list(session.execute(
        select(AdSpace.id, AdSpace.publisher_id, AdSpace.placement_type, AdSpace.accepted_formats)
        .join(Publisher, Publisher.id == AdSpace.publisher_id)
        .where(AdSpace.status == ACTIVE, Publisher.status == ACTIVE, AdSpace.placement_type.in_(placements))))
    owner = {space_id: publisher_id for space_id, publisher_id, _, _ in spaces}
    out: dict[int, Readiness] = {}
    for group in ad_groups:
        creatives, approved, in_review = counts.get(group.id, (0, 0, 0))
        own_formats = frozenset(formats.get(group.id, ()))
        out[group.id] = Readiness(creatives=creatives, approved_creatives=approved,
                                  creatives_under_review=in_review, formats=own_formats,
                                  inventory_spaces=_spaces_for(group, spaces, owner, own_formats))
    return out


def _spaces_for(group: AdGroup, spaces: Sequence[tuple[int, int, str, list[str] | None]], owner: dict[int, int],
                formats: frozenset[str]) -> int:
    # Listed ad spaces restrict their publisher to those spaces; a listed publisher with none listed is open on
    # all its spaces (serving/loader.targeting_snap).
    chosen_spaces = {int(s) for s in group.ad_space_ids or ()}
    restricted = {owner.get(s) for s in chosen_spaces}
    open_publishers = {int(p) for p in group.publisher_ids or () if int(p) not in restricted}
    chosen = bool(chosen_spaces or group.publisher_ids)
    found = 0
    for space_id, publisher_id, placement_type, accepted in spaces:
        if placement_type != group.placement_type:
            continue
        if chosen and space_id not in chosen_spaces and publisher_id not in open_publishers:
            continue
        if accepted and formats and not formats.intersection(accepted):
            continue
        found += 1
    return found
