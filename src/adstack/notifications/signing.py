"""Webhook bodies and their signatures.

The scheme is Stripe's (https://docs.stripe.com/webhooks/signatures, "verify manually"; Stripe's own libraries'
`compute_signature`): the header `Adstack-Signature: t=<unix seconds>,v1=<hex>` where the hex is
HMAC-SHA256, keyed with the endpoint's secret, over `"<t>.<raw body>"`. A receiver recomputes it from the raw
body, compares in constant time and refuses timestamps older than its tolerance (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from adstack.core.timeutil import as_utc
from adstack.notifications.models import NotificationEvent

SIGNATURE_HEADER = "Adstack-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def event_body(record: NotificationEvent) -> str:
    """The JSON body POSTed for an event: the same bytes on every retry."""
    return json.dumps({
        "id": record.public_id,
        "type": record.event_type,
        "created": int(as_utc(record.created_at).timestamp()),
        "account_id": record.account_id,
        "data": record.data,
    }, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},{SCHEME}={signature(secret, moment, body)}"


def verify(header: str, body: bytes, secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """What a receiver does; kept here for receivers written in Python and for the docs."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    sent = [v for k, v in parts if k.strip() == SCHEME]
    if len(stamps) != 1 or not stamps[0].isdecimal() or not sent:
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in sent)
