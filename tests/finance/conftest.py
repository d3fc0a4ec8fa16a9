"""Shared set-up for the money tests: funded accounts with campaigns and ad groups, made through the API."""

from __future__ import annotations

import itertools
from typing import Any

from tests.campaigns.helpers import ad_space, publisher
from tests.serving.test_api import approved_creative
from tests.support import Actor, Api, expect

_names = itertools.count(1)


def top_up(api: Api, admin: Actor, account_id: int, amount_micros: int, **extra: Any) -> dict[str, Any]:
    body = {"account_id": account_id, "amount_micros": amount_micros, **extra}
    return expect(api.client.post("/api/v1/finance/top-ups", headers=admin.headers, json=body), 201)


def balance(api: Api, actor: Actor, account_id: int) -> dict[str, Any]:
    return expect(api.client.get(f"/api/v1/finance/accounts/{account_id}/balance", headers=actor.headers), 200)


def campaign(api: Api, actor: Actor, **overrides: Any) -> dict[str, Any]:
    body = {
        "objective": "performance",
        "name": f"Campaign {next(_names)}",
        "promotion_type": "non_download",
        "landing_kind": "h5",
        "landing_url": "https://example.com/landing",
        **overrides,
    }
    return expect(api.client.post("/api/v1/campaigns", headers=actor.headers, json=body), 201)


def ad_group(api: Api, actor: Actor, campaign_id: int | None = None, **overrides: Any) -> dict[str, Any]:
    if campaign_id is None:
        campaign_id = campaign(api, actor)["id"]
    body = {
        "campaign_id": campaign_id,
        "name": f"Ad group {next(_names)}",
        "placement_type": "banner",
        "bid_type": "cpc",
        "bid_micros": 200_000,
        **overrides,
    }
    return expect(api.client.post("/api/v1/ad-groups", headers=actor.headers, json=body), 201)


def approve_ad_group(api: Api, admin: Actor, owner: Actor, group: dict[str, Any]) -> None:
    """Approved, with an approved creative and an ad space of its placement: ready to serve, so its serving
    status speaks of money and budgets."""
    expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=owner.headers), 200)
    expect(
        api.client.post(f"/api/v1/ad-groups/{group['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )
    spaces = expect(api.client.get("/api/v1/ad-spaces", headers=admin.headers), 200)
    if not (spaces["items"] if isinstance(spaces, dict) else spaces):
        ad_space(api, admin, publisher(api, admin)["id"])
    approved_creative(api, owner, admin, group["id"])
