"""Builders of snapshot objects and requests for serving tests: the engine's own inputs, no database."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adstack.serving.counters import MemoryCounters
from adstack.serving.engine import DecisionEngine, ServingState
from adstack.serving.request import AdRequest, Slot
from adstack.serving.snapshot import (
    AccountSnap,
    AdGroupSnap,
    AdSpaceSnap,
    AssetCombination,
    CreativeSnap,
    PublisherSnap,
    Schedule,
    Snapshot,
    TargetingSnap,
)

NOW = datetime(2025, 6, 4, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC
SPACE_ID = 10
PUBLISHER_ID = 1
_ids = itertools.count(1000)


def creative(
    group_id: int,
    *,
    format: str = "interstitial_image",
    width: int = 1200,
    height: int = 628,
    video: bool = False,
    combinations: int = 1,
    **overrides: Any,
) -> CreativeSnap:
    creative_id = overrides.pop("id", next(_ids))
    combos = tuple(
        AssetCombination(
            key=f"c{creative_id}x{n}",
            title=f"Title {n}",
            description="Description",
            button="Install",
            image_url="" if video else f"https://cdn.example.com/{creative_id}/{n}.png",
            video_url=f"https://cdn.example.com/{creative_id}/{n}.mp4" if video else "",
            icon_url=f"https://cdn.example.com/{creative_id}/icon.png",
            image_mime="" if video else "image/png",
            icon_mime="image/png",
            width=width,
            height=height,
            duration_ms=15_000 if video else 0,
        )
        for n in range(combinations)
    )
    values: dict[str, Any] = dict(
        id=creative_id,
        ad_group_id=group_id,
        name=f"creative {creative_id}",
        format=format,
        width=width,
        height=height,
        has_image=not video,
        has_video=video,
        click_url="https://advertiser.example.com/landing",
        combinations=combos,
        duration_ms=15_000 if video else 0,
    )
    values.update(overrides)
    return CreativeSnap(**values)


def group(
    group_id: int,
    *,
    bid_type: str = "cpm",
    bid_micros: int = 1_000_000,
    placement: str = "interstitial",
    account_id: int = 1,
    campaign_id: int | None = None,
    targeting: dict[str, Any] | None = None,
    creatives: tuple[CreativeSnap, ...] | None = None,
    **overrides: Any,
) -> AdGroupSnap:
    spec = {"placement_types": frozenset({placement})}
    spec.update(targeting or {})
    values: dict[str, Any] = dict(
        id=group_id,
        name=f"ad group {group_id}",
        account_id=account_id,
        campaign_id=campaign_id or group_id,
        bid_type=bid_type,
        bid_micros=bid_micros,
        creatives=creatives or (creative(group_id),),
        targeting=TargetingSnap(**spec),
        schedule=Schedule(),
        advertiser_domains=("advertiser.example.com",),
    )
    values.update(overrides)
    return AdGroupSnap(**values)


def snapshot(
    groups: list[AdGroupSnap],
    *,
    accounts: list[AccountSnap] | None = None,
    spaces: list[AdSpaceSnap] | None = None,
    **extra: Any,
) -> Snapshot:
    account_ids = {g.account_id for g in groups}
    return Snapshot(
        ad_groups=groups,
        accounts=accounts if accounts is not None else [AccountSnap(a, available_micros=10**12) for a in account_ids],
        publishers=[PublisherSnap(PUBLISHER_ID, "publisher", app_package="com.publisher.app", country="IN")],
        ad_spaces=spaces
        if spaces is not None
        else [
            AdSpaceSnap(
                SPACE_ID, PUBLISHER_ID, "space", "interstitial", accepted_formats=frozenset(), sizes=frozenset()
            )
        ],
        **extra,
    )


def engine(snap: Snapshot, **overrides: Any) -> DecisionEngine:
    return DecisionEngine(
        ServingState.build(snap),
        counters=overrides.pop("counters", MemoryCounters()),
        rng_seed=overrides.pop("rng_seed", 7),
        **overrides,
    )


def request(**overrides: Any) -> AdRequest:
    values: dict[str, Any] = dict(
        now=NOW,
        placement_type="interstitial",
        ad_space_id=SPACE_ID,
        publisher_id=PUBLISHER_ID,
        country="IN",
        slot=Slot(),
    )
    values.update(overrides)
    return AdRequest(**values)


def served(eng: DecisionEngine, req: AdRequest | None = None, **overrides: Any) -> list[int]:
    """Ids of the ad groups a request gets, best first."""
    req = req or request(**overrides)
    space = eng.state.snapshot.ad_spaces.get(req.ad_space_id) if req.ad_space_id else None
    return [d.ad_group.id for d in eng.decide(req, space=space)]


def with_targeting(base: AdGroupSnap, **changes: Any) -> AdGroupSnap:
    return replace(base, targeting=replace(base.targeting, **changes))


SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available(url: str = SHARED_REDIS_URL) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:
        return False
