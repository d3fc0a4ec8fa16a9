"""What an ad group needs besides its own settings before serving would pick it: creatives serving may show, and
ad spaces it may show on. Read with the same rules as the serving snapshot (`serving/loader.py`) and its creative
fit (`serving/eligibility.creative_fits`): a creative serves when enabled, approved and not deleted; an ad space
when it and its publisher are active, it is of the ad group's placement, within the publishers and ad spaces the
ad group chose and not among its exceptions, and one of its approved creatives fits it (a format the space
accepts, and a main visual of one of its sizes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    # It includes audiences and none of them has members serving can match (built, not empty): it cannot serve.
    no_audience_members: bool = False


@dataclass(frozen=True)
class _Shown:
    """An approved creative as serving sizes it: its format and main visual (0x0 when it has none)."""

    format: str
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class _Space:
    id: int
    publisher_id: int
    placement_type: str
    accepted_formats: frozenset[str]
    sizes: frozenset[tuple[int, int]]  # empty = any size
    publisher_package: str


def _first_visual(materials: Mapping[str, Any] | None) -> int | None:
    # The snapshot sizes a creative by its first combination's visual: the first image, else the first video.
    for key in ("images", "videos"):
        for media_id in (materials or {}).get(key) or ():
            return int(media_id)
    return None


def _sizes(texts: Iterable[Any] | None) -> frozenset[tuple[int, int]]:
    sizes = set()
    for text in texts or ():
        width, _, height = str(text).partition("x")
        if width.isdecimal() and height.isdecimal():
            sizes.add((int(width), int(height)))
    return frozenset(sizes)


def readiness(session: Session, ad_groups: Sequence[AdGroup]) -> dict[int, Readiness]:
    """Per ad group id; a handful of queries for any number of ad groups."""
    from adstack.creatives.models import Creative
    from adstack.inventory.models import AdSpace, Publisher
    from adstack.media.models import MediaAsset

    ids = [g.id for g in ad_groups]
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    approved: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(select(Creative.ad_group_id, Creative.format, Creative.review_status,
                                      Creative.materials).where(
            Creative.ad_group_id.in_(ids[start:start + _CHUNK]), Creative.status == ENABLED,
            Creative.deleted_at.is_(None)))
        for group_id, creative_format, review_status, materials in rows:
            count = counts[group_id]
            count[0] += 1
            if review_status == "approved":
                count[1] += 1
                approved[group_id].append((creative_format, _first_visual(materials)))
            elif review_status == "under_review":
                count[2] += 1
    media_ids = sorted({m for shown in approved.values() for _, m in shown if m is not None})
    dims: dict[int, tuple[int, int]] = {}
    for start in range(0, len(media_ids), _CHUNK):
        for media_id, width, height in session.execute(select(MediaAsset.id, MediaAsset.width, MediaAsset.height)
                                                       .where(MediaAsset.id.in_(media_ids[start:start + _CHUNK]))):
            dims[media_id] = (width or 0, height or 0)
    placements = {g.placement_type for g in ad_groups}
    spaces = [_Space(space_id, publisher_id, placement, frozenset(accepted or ()), _sizes(sizes), package or "")
              for space_id, publisher_id, placement, accepted, sizes, package in session.execute(
                  select(AdSpace.id, AdSpace.publisher_id, AdSpace.placement_type, AdSpace.accepted_formats,
                         AdSpace.sizes, Publisher.app_package)
                  .join(Publisher, Publisher.id == AdSpace.publisher_id)
                  .where(AdSpace.status == ACTIVE, Publisher.status == ACTIVE,
                         AdSpace.placement_type.in_(placements)))]
    owner = {s.id: s.publisher_id for s in spaces}
    with_members = _audiences_with_members(session, ad_groups)
    out: dict[int, Readiness] = {}
    for group in ad_groups:
        creatives, approved_count, in_review = counts.get(group.id, (0, 0, 0))
        shown = [_Shown(f, *dims.get(m, (0, 0))) if m is not None else _Shown(f)
                 for f, m in approved.get(group.id, ())]
        out[group.id] = Readiness(creatives=creatives, approved_creatives=approved_count,
                                  creatives_under_review=in_review, formats=frozenset(s.format for s in shown),
                                  inventory_spaces=_spaces_for(group, spaces, owner, shown),
                                  no_audience_members=bool(_included(group))
                                  and not _included(group) & with_members)
    return out


def _included(group: AdGroup) -> set[int]:
    return {int(a) for a in (group.targeting or {}).get("include_audience_ids") or ()}


def _audiences_with_members(session: Session, ad_groups: Sequence[AdGroup]) -> set[int]:
    """Of the audiences these ad groups include, those serving can match a device in: built and not empty."""
    try:
        from adstack.audiences.models import Audience, AudienceStatus
    except ImportError:  # pragma: no cover - audiences are optional
        return set()
    ids = sorted({a for g in ad_groups for a in _included(g)})
    found: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        found.update(session.scalars(select(Audience.id).where(
            Audience.id.in_(ids[start:start + _CHUNK]), Audience.status == AudienceStatus.READY.value,
            Audience.size > 0)))
    return found


def _fits(creative: _Shown, space: _Space) -> bool:
    """As serving/eligibility.creative_fits for an SDK slot: the space's formats, then its sizes."""
    if space.accepted_formats and creative.format not in space.accepted_formats:
        return False
    return not space.sizes or (creative.width, creative.height) in space.sizes


def _spaces_for(group: AdGroup, spaces: Sequence[_Space], owner: dict[int, int], shown: Sequence[_Shown]) -> int:
    # Listed ad spaces restrict their publisher to those spaces; a listed publisher with none listed is open on
    # all its spaces (serving/loader.targeting_snap).
    chosen_spaces = {int(s) for s in group.ad_space_ids or ()}
    restricted = {owner.get(s) for s in chosen_spaces}
    open_publishers = {int(p) for p in group.publisher_ids or () if int(p) not in restricted}
    chosen = bool(chosen_spaces or group.publisher_ids)
    # Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group, "Set orientation": exceptions, the publisher apps and ad
    # spaces the ad group never serves on (as serving/eligibility.check_exceptions).
    exceptions = (group.targeting or {}).get("exceptions") or {}
    excluded_spaces = {int(s) for s in exceptions.get("ad_space_ids") or ()}
    excluded_packages = set(exceptions.get("publisher_packages") or ())
    found = 0
    for space in spaces:
        if space.placement_type != group.placement_type:
            continue
        if chosen and space.id not in chosen_spaces and space.publisher_id not in open_publishers:
            continue
        if space.id in excluded_spaces or space.publisher_package in excluded_packages:
            continue
        if shown and not any(_fits(c, space) for c in shown):
            continue
        found += 1
    return found
