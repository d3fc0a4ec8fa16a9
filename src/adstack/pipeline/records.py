"""What the tracking endpoints append to the event log: small JSON records, each under the event's own id.

A record keeps the signed token as it arrived rather than its decoded fields, so the log stays as small as the
requests themselves. The endpoint verified the token before appending; consumers read its fields back without
verifying it again (`tracked`), once per process for all of them.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from adstack.core.timeutil import utcnow
from adstack.tracking.devices import normalise_gaid
from adstack.tracking.tokens import TokenError, TrackingClaims, decode_token, read_verified_token


class Kind(StrEnum):
    IMPRESSION = "imp"
    CLICK = "click"
    VIDEO = "video"
    INVALID = "invalid"  # a refused tracking request, kept as invalid traffic
    CPT_SLOT = "cpt"  # a booked CPT slot that has started: billed once
    POSTBACK = "pb"  # a measurement partner's postback, checked and not yet stored for attribution
    LOSS = "loss"  # an exchange's loss notice for one of our bids: its impression is never billed after it


def now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def received_at(record: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(record["ts"]) / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent a tracking request, as invalid-traffic rules need it."""

    ip: str = ""
    user_agent: str = ""


NO_CLIENT = Client()


def _client_fields(client: Client) -> dict[str, str]:
    return {"ip": client.ip[:64], "ua": client.user_agent[:300]}


def impression_record_id(impression_id: str) -> str:
    """An impression's record id: one per impression id, however often its pixel fires."""
    return f"imp:{impression_id}"


def loss(impression_id: str, *, reason: str | None) -> dict[str, Any]:
    """An exchange's loss notice (`lurl`) for the bid whose id, our impression id, it names."""
    return {"id": f"loss:{impression_id}", "k": Kind.LOSS.value, "ts": now_ms(), "i": impression_id,
            "r": (reason or "")[:16]}


def impression(claims: TrackingClaims, token: str, *, auction_price: str | None, currency: str | None,
               client: Client = NO_CLIENT) -> dict[str, Any]:
    record: dict[str, Any] = {"id": impression_record_id(claims.impression_id), "k": Kind.IMPRESSION.value,
                              "ts": now_ms(), "a": claims.account_id, "t": token, **_client_fields(client)}
    if auction_price is not None:
        record["ap"], record["cur"] = auction_price[:32], (currency or "")[:8]
    return record


def click(claims: TrackingClaims, click_id: str, token: str, client: Client = NO_CLIENT) -> dict[str, Any]:
    return {"id": f"click:{click_id}", "k": Kind.CLICK.value, "ts": now_ms(), "a": claims.account_id, "t": token,
            "c": click_id, **_client_fields(client)}


def video(claims: TrackingClaims, token: str, event: str, client: Client = NO_CLIENT) -> dict[str, Any]:
    return {"id": f"video:{claims.impression_id}:{event}", "k": Kind.VIDEO.value, "ts": now_ms(),
            "a": claims.account_id, "t": token, "e": event, **_client_fields(client)}


def invalid(*, kind: str, reason: str, message: str, token: str, client_ip: str, user_agent: str
            ) -> dict[str, Any]:
    return {"id": f"invalid:{uuid.uuid4().hex}", "k": Kind.INVALID.value, "ts": now_ms(), "kind": kind,
            "reason": reason, "msg": message[:300], "t": token[:1024], "ip": client_ip[:64], "ua": user_agent[:300]}


def slot_second(starts_at: datetime) -> int:
    """The whole epoch second a booked slot's charge id names it by."""
    return int(starts_at.timestamp())


def slot_second_of(charge_id: str) -> int | None:
    """The slot a CPT charge id (`cpt:<ad group>:<start second>`) names, or the ledger's key for it."""
    second = charge_id.rsplit(":", 1)[-1]
    return int(second) if second.isdecimal() else None


def cpt_slot(*, booking_id: int, account_id: int, campaign_id: int, ad_group_id: int, ad_space_id: int,
             starts_at: datetime, amount_micros: int, publisher_id: int = 0, placement_type: str = ""
             ) -> dict[str, Any]:
    return {"id": f"cpt:{booking_id}:{slot_second(starts_at)}", "k": Kind.CPT_SLOT.value, "ts": now_ms(),
            "account_id": account_id, "campaign_id": campaign_id, "ad_group_id": ad_group_id,
            "ad_space_id": ad_space_id, "publisher_id": publisher_id, "placement_type": placement_type,
            "starts_at": slot_second(starts_at), "amount": amount_micros}


def postback(*, app_id: int, partner: str, dedupe_key: str, method: str, fields: dict[str, str],
             received_at: datetime, parsed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A postback under an id of its app and dedupe key: a partner's retry is the same record. `parsed`: the
    adapters' reading of it (`attribution.adapters.stored_parse`), stored with it for attribution."""
    digest = hashlib.sha256(f"{app_id}\n{dedupe_key}".encode()).hexdigest()[:32]
    record = {"id": f"pb:{app_id}:{digest}", "k": Kind.POSTBACK.value, "ts": int(received_at.timestamp() * 1000),
              "app": app_id, "p": partner, "dk": dedupe_key, "m": method, "f": fields}
    if parsed is not None:
        record["pp"] = parsed
    return record


@dataclass(frozen=True, slots=True)
class Device:
    """A token's GAID in the forms the consumers store: its MD5 and SHA1 digests and the event store's hash."""

    md5: str | None
    sha1: str | None
    hash: int


@lru_cache(maxsize=32_768)
def device(gaid: str) -> Device | None:
    """Cached: the same device recurs across its ads, and every consumer reads it from every record."""
    parsed = normalise_gaid(gaid)
    return Device(parsed.md5, parsed.sha1, parsed.device_hash) if parsed is not None else None


@dataclass(frozen=True, slots=True)
class Tracked:
    """A tracking record with its token decoded."""

    record: dict[str, Any]
    claims: TrackingClaims
    at: datetime

    @property
    def device(self) -> Device | None:
        return device(self.claims.gaid) if self.claims.gaid else None


def decode(record: dict[str, Any], secret: bytes) -> TrackingClaims | None:
    """The claims of a record's token as they stood when it was received (None when they never held), its MAC
    verified: for refused records, whose tokens may be forged."""
    try:
        return decode_token(record["t"], secret, now=received_at(record) if record["k"] != Kind.INVALID.value
                            else datetime.min.replace(tzinfo=UTC))
    except (TokenError, KeyError):
        return None


def tracked(records: list[dict[str, Any]], kinds: frozenset[str]) -> list[Tracked]:
    """The records of these kinds with their tokens' claims. The log holds only records the endpoints accepted:
    they verified each token's MAC and expiry before appending (a refused token is appended as an `invalid`
    record, see `decode`), and a record that could be forged on its way could as well carry an unsigned CPT
    amount. So the tokens are read, not verified again: verifying cost the consumers more than anything else."""
    out = []
    for record in records:
        if record.get("k") in kinds:
            try:
                claims = read_verified_token(record["t"])
            except (TokenError, KeyError):
                continue
            at = received_at(record)
            if at < claims.expires_at:  # as the endpoint saw it
                out.append(Tracked(record, claims, at))
    return out
