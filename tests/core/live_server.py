"""A real `adstack serve` on loopback for tests of what only a real server and real sockets show."""

from __future__ import annotations

import uuid

import httpx


def register_and_sign_in(base_url: str) -> tuple[str, int]:
    """A new advertiser over the API; its bearer token and account id."""
    n = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post(
            "/api/v1/auth/register",
            json={
                "email": f"live-{n}@example.com",
                "password": "live-password-1",
                "type": "advertiser",
                "company_name": f"Live {n}",
                "contact_name": "Live",
                "contact_email": f"ops-{n}@example.com",
                "country": "ID",
                "settlement_entity": "Xiaomi Singapore",
                "currency": "USD",
                "time_zone": "UTC",
                "accept_agreement": True,
            },
        ).raise_for_status()
        login = client.post(
            "/api/v1/auth/login", json={"email": f"live-{n}@example.com", "password": "live-password-1"}
        )
        login.raise_for_status()
        return str(login.json()["access_token"]), int(login.json()["account_id"])
