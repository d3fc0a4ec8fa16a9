"""Signed tracking tokens and click ids, verifiable without a database.

A tracking token carries everything an impression, click or video event needs to be counted and billed:
impression id, account, campaign, ad group, creative, ad space, publisher, bid type, clearing price, country,
placement, device and its issue and expiry times. The device is the raw GAID where a publisher's SDK sent one
(partner click links expand it), else only its event-store hash (`device_hash`): exchange traffic never carries
a readable device id in a URL. It is `<payload>.<mac>`: the payload is a base64url text of
`|`-separated fields (numbers in base 36 to keep URLs short) and the MAC is a truncated HMAC-SHA256 under a
key derived for this purpose only. Any change to the payload breaks the MAC.

A click id is 25 bytes in base64url: version, the impression's issue time, ten bytes derived from the
impression id with a secret key, and a MAC over those. It is unguessable, carries no personal data, is the
same for every click on one impression (so a double click is one click) and verifies on its own.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adstack.core.security import derive_key, hmac_sha256, hmac_sign, hmac_verify

TOKEN_VERSION = "1"
CLICK_ID_VERSION = 1
# Clicks may come long after the ad was shown (a banner left on screen, a notification read later).
DEFAULT_TOKEN_TTL = timedelta(hours=24)
TOKEN_MAC_BYTES = 16
MAX_TOKEN_LENGTH = 1024
IMPRESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TEXT_FIELD = re.compile(r"^[A-Za-z0-9_\-]{0,40}$")
_CLICK_ID_BYTES = 25
_CLICK_ID_MAC_BYTES = 10


class TokenError(ValueError):
    """Why a token or click id was refused: `reason` is one of malformed, bad_signature, expired."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class TrackingClaims:
    impression_id: str
    account_id: int
    campaign_id: int
    ad_group_id: int
    creative_id: int
    ad_space_id: int
    publisher_id: int
    bid_type: str
    price_micros: int
    issued_at: datetime
    expires_at: datetime
    country: str = ""
    placement_type: str = ""
    gaid: str = ""  # canonical lowercase GAID, "" when the request had none
    device_hash: int = 0  # the event store's 63-bit device hash when no GAID is carried; 0 for none
    # An exchange's bid: our bid price (CPM, micros of `exchange_currency`), which caps the clearing price the
    # exchange reports; "" for the SDK's own traffic, whose impression URLs carry no clearing price.
    exchange_bid_micros: int = 0
    exchange_currency: str = ""
    test: bool = False  # an OpenRTB test auction (`test=1`): "auctions are not billable"
    # The exchange clears the bid at its own price (a first-price auction, a fixed-price deal): an impression is
    # charged no more than the clearing price the exchange reports for it.
    clears_at_bid: bool = False


def token_key(secret: bytes) -> bytes:
    return derive_key(secret, "tracking-token")


def click_id_key(secret: bytes) -> bytes:
    return derive_key(secret, "click-id")


@functools.lru_cache(maxsize=16_384)  # ids, prices and the current second repeat across every token issued
def _b36(value: int) -> str:
    if value < 0:
        raise ValueError("negative numbers are not encoded")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
        if value == 0:
            return out


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_text(name: str, value: str, pattern: re.Pattern[str] = _TEXT_FIELD) -> str:
    if not pattern.match(value):
        raise ValueError(f"{name} must match {pattern.pattern}: {value!r}")
    return value


def encode_token(claims: TrackingClaims, secret: bytes) -> str:
    _check_text("impression_id", claims.impression_id, IMPRESSION_ID_PATTERN)
    fields = [
        TOKEN_VERSION,
        claims.impression_id,
        *(_b36(n) for n in (claims.account_id, claims.campaign_id, claims.ad_group_id, claims.creative_id,
                            claims.ad_space_id, claims.publisher_id)),
        _check_text("bid_type", claims.bid_type.lower()),
        _b36(claims.price_micros),
        _b36(int(claims.issued_at.timestamp())),
        _b36(int(claims.expires_at.timestamp())),
        _check_text("country", claims.country.upper()),
        _check_text("placement_type", claims.placement_type),
        claims.gaid.replace("-", ""),
        _b36(claims.device_hash) if claims.device_hash else "",
    ]
    if claims.exchange_currency or claims.test:
        fields += [_b36(claims.exchange_bid_micros), _check_text("exchange_currency", claims.exchange_currency.upper()),
                   "1" if claims.test else ""]
        if claims.clears_at_bid:
            fields.append("1")  # only then: a second-price bid keeps the layout of tokens issued before the field
    payload = "|".join(fields).encode()
    return f"{_b64encode(payload)}.{hmac_sign(token_key(secret), payload, TOKEN_MAC_BYTES)}"


def _b64decode_fast(text: str) -> bytes:
    # binascii directly: base64.urlsafe_b64decode's argument checks cost more than the decoding itself. Strict:
    # otherwise characters outside the alphabet are skipped, and a token with "!!!" inserted verified.
    return binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), strict_mode=True)


def _split(token: str) -> tuple[bytes, str]:
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise TokenError("malformed", "the tracking token is missing or malformed")
    body, mac = token.split(".")
    try:
        return _b64decode_fast(body), mac
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "the tracking token is not base64url") from None


@functools.lru_cache(maxsize=1_024)  # tokens issued in the same second share their issue and expiry times
def _token_time(base36_seconds: str) -> datetime:
    return datetime.fromtimestamp(int(base36_seconds, 36), UTC)


def _claims(payload: bytes) -> TrackingClaims:
    try:
        fields = payload.decode().split("|")
        # 15 fields: tokens issued before the device hash was carried, still valid for their lifetime; 19: an
        # exchange's bid, with its price and currency; 20: one the exchange clears at its price.
        if len(fields) not in (15, 16, 19, 20) or fields[0] != TOKEN_VERSION:
            raise ValueError("unknown token layout")
        gaid_hex = fields[14]
        gaid = (f"{gaid_hex[:8]}-{gaid_hex[8:12]}-{gaid_hex[12:16]}-{gaid_hex[16:20]}-{gaid_hex[20:]}"
                if gaid_hex else "")
        # Positional, in field order: matching fifteen keywords cost a quarter of building the claims.
        return TrackingClaims(
            fields[1],  # impression_id
            int(fields[2], 36), int(fields[3], 36), int(fields[4], 36),  # account, campaign, ad group
            int(fields[5], 36), int(fields[6], 36), int(fields[7], 36),  # creative, ad space, publisher
            fields[8],  # bid_type
            int(fields[9], 36),  # price_micros
            _token_time(fields[10]), _token_time(fields[11]),  # issued_at, expires_at
            fields[12], fields[13],  # country, placement_type
            gaid,
            int(fields[15], 36) if len(fields) >= 16 and fields[15] else 0,  # device_hash
            *((int(fields[16], 36), fields[17], fields[18] == "1") if len(fields) >= 19 else ()),
            *((fields[19] == "1",) if len(fields) == 20 else ()),
        )
    except (ValueError, OverflowError, UnicodeDecodeError):
        # Signed by us but unreadable: only a key shared with an incompatible version can do this.
        raise TokenError("malformed", "the tracking token's payload cannot be read") from None


def decode_token(token: str, secret: bytes, *, now: datetime) -> TrackingClaims:
    """Verify the MAC, then the expiry; raises TokenError naming the reason."""
    payload, mac = _split(token)
    if not hmac_verify(token_key(secret), payload, mac, TOKEN_MAC_BYTES):
        raise TokenError("bad_signature", "the tracking token's signature does not match: forged or altered")
    claims = _claims(payload)
    if now >= claims.expires_at:
        raise TokenError("expired", f"the tracking token expired at {claims.expires_at.isoformat()}")
    return claims


@functools.lru_cache(maxsize=32_768)
def read_verified_token(token: str) -> TrackingClaims:
    """The claims of a token `decode_token` accepted before, read without checking its MAC or expiry again.

    Only for tokens that cannot have been altered since: the pipeline's consumers read what the tracking
    endpoints verified and appended to the log. Cached, because every consumer reads every record's token."""
    return _claims(_split(token)[0])


def new_click_id(impression_id: str, issued_at: datetime, secret: bytes) -> str:
    key = click_id_key(secret)
    nonce = hmac_sha256(key, b"nonce:" + impression_id.encode())[:10]
    body = struct.pack(">BI", CLICK_ID_VERSION, int(issued_at.timestamp()) & 0xFFFFFFFF) + nonce
    mac = hmac_sha256(key, b"mac:" + body)[:_CLICK_ID_MAC_BYTES]
    return _b64encode(body + mac)


def verify_click_id(click_id: str, secret: bytes) -> datetime:
    """The time of the impression the click id was issued for; TokenError when forged or malformed."""
    if not click_id or len(click_id) != 34:
        raise TokenError("malformed", "the click id is missing or malformed")
    try:
        raw = _b64decode(click_id)
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "the click id is not base64url") from None
    if len(raw) != _CLICK_ID_BYTES or raw[0] != CLICK_ID_VERSION or _b64encode(raw) != click_id:
        raise TokenError("malformed", "the click id has an unknown layout")
    body, mac = raw[:-_CLICK_ID_MAC_BYTES], raw[-_CLICK_ID_MAC_BYTES:]
    expected = hmac_sha256(click_id_key(secret), b"mac:" + body)[:_CLICK_ID_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise TokenError("bad_signature", "the click id's signature does not match: forged or altered")
    (_, seconds) = struct.unpack(">BI", body[:5])
    return datetime.fromtimestamp(seconds, UTC)


def is_valid_click_id(click_id: str | None, secret: bytes) -> bool:
    if not click_id:
        return False
    try:
        verify_click_id(click_id, secret)
    except TokenError:
        return False
    return True
