"""Builders for audience tests: generated id files and uploads over the public HTTP API."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterable
from typing import Any

from tests.support import Actor, Api, expect


def gaids(count: int, *, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def md5_hex(gaid: str) -> str:
    return hashlib.md5(gaid.strip().lower().encode()).hexdigest()


def sha256_hex(gaid: str) -> str:
    return hashlib.sha256(gaid.strip().lower().encode()).hexdigest()


def id_file(lines: Iterable[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def upload(
    api: Api,
    actor: Actor,
    body: bytes,
    *,
    name: str = "Payers",
    id_type: str = "gaid",
    region_code: str = "SG",
    expected: int = 201,
    **params: Any,
) -> Any:
    query = {"name": name, "region_code": region_code, "id_type": id_type, **params}
    response = api.client.post("/api/v1/audiences/upload", params=query, headers=actor.headers, content=body)
    return expect(response, expected)


def change(api: Api, actor: Actor, audience_id: int, body: bytes, *, mode: str, expected: int = 200) -> Any:
    response = api.client.post(
        f"/api/v1/audiences/{audience_id}/upload", params={"mode": mode}, headers=actor.headers, content=body
    )
    return expect(response, expected)
