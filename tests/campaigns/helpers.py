"""Builders for campaign and ad group tests, over the public HTTP API."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from adstack.finance.models import EntryType, LedgerEntry
from tests.support import Actor, Api, expect


def publisher(api: Api, admin: Actor, **overrides: Any) -> dict[str, Any]:
    body = {"name": "Mi Browser", "app_package": "com.mi.browser", "platform": "android", "country": "ID"}
    body.update(overrides)
    return expect(api.client.post("/api/v1/publishers", headers=admin.headers, json=body), 201)


def ad_space(api: Api, admin: Actor, publisher_id: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "publisher_id": publisher_id,
        "name": "Home banner",
        "placement_type": "banner",
        "accepted_formats": ["image_640x100"],
        "sizes": ["640x100"],
        "reserve_price_micros": 100_000,
    }
    body.update(overrides)
    return expect(api.client.post("/api/v1/ad-spaces", headers=admin.headers, json=body), 201)


def campaign(api: Api, actor: Actor, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "objective": "performance",
        "name": "Summer installs",
        "promotion_type": "app_download",
        "package_name": "com.example.game",
    }
    body.update(overrides)
    return expect(api.client.post("/api/v1/campaigns", headers=actor.headers, json=body), 201)


def ad_group(api: Api, actor: Actor, campaign_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "campaign_id": campaign_id,
        "name": "ID banner",
        "placement_type": "banner",
        "bid_type": "cpc",
        "bid_micros": 200_000,
        "daily_budget_micros": 50_000_000,
        "total_budget_micros": 500_000_000,
        "targeting": {"countries": ["ID"]},
        "start_at": "2024-01-01T00:00:00Z",
    }
    body.update(overrides)
    return expect(api.client.post("/api/v1/ad-groups", headers=actor.headers, json=body), 201)


def approved_ad_group(api: Api, actor: Actor, admin: Actor, campaign_id: int, **overrides: Any) -> dict[str, Any]:
    group = ad_group(api, actor, campaign_id, **overrides)
    expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=actor.headers), 200)
    return expect(
        api.client.post(f"/api/v1/ad-groups/{group['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )


def ledger(
    session: Session, account_id: int | None, amount_micros: int, entry_type: EntryType = EntryType.TOP_UP, **ids: Any
) -> None:
    """Money arrives through the finance domain; tests write the ledger rows it would write."""
    assert account_id is not None
    session.add(
        LedgerEntry(
            account_id=account_id, entry_type=entry_type.value, amount_micros=amount_micros, currency="USD", **ids
        )
    )
    session.commit()


def charge(session: Session, account_id: int | None, group: dict[str, Any], micros: int, **extra: Any) -> None:
    ledger(
        session,
        account_id,
        -micros,
        EntryType.CHARGE,
        campaign_id=group["campaign_id"],
        ad_group_id=group["id"],
        **extra,
    )


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def creative(api: Api, actor: Actor, ad_group_id: int, name: str = "Banner 640x100") -> dict[str, Any]:
    """A real creative: an uploaded 640x100 PNG in the guide's banner 640x100 format."""
    media = expect(
        api.client.post("/api/v1/media", headers=actor.headers, files={"file": ("banner.png", png(640, 100))}), 201
    )
    return expect(
        api.client.post(
            "/api/v1/creatives",
            headers=actor.headers,
            json={
                "ad_group_id": ad_group_id,
                "name": name,
                "format": "image_640x100",
                "materials": {"images": [media["id"]]},
                "click_url": "https://example.com/app",
            },
        ),
        201,
    )
