"""What a tracking request does, independent of the web framework: check the token, append to the event log,
answer. The FastAPI routes (`api.py`, which also document the endpoints) and the raw ASGI fast path
(`fastpath.py`, which serves the same requests without the framework's per-request machinery) both call these."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

import orjson
from starlette.concurrency import run_in_threadpool

from adstack.core.http import error_body
from adstack.core.timeutil import utcnow
from adstack.pipeline import records
from adstack.pipeline.log import LogUnavailable
from adstack.pipeline.service import Pipeline
from adstack.tracking import deeplink, service
from adstack.tracking.tokens import TokenError, TrackingClaims, new_click_id

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = ("cache-control", "no-store, max-age=0")
RETRY_AFTER_SECONDS = "5"
TOKEN_CODES = {"expired": "expired_token", "bad_signature": "invalid_signature"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    media_type: str | None = None
    location: str | None = None
    retry_after: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def headers(self) -> list[tuple[str, str]]:
        out = [NO_STORE, *self.extra]
        if self.media_type:
            out.append(("content-type", self.media_type))
        if self.location:
            out.append(("location", self.location))
        if self.retry_after:
            out.append(("retry-after", self.retry_after))
        return out


ACKNOWLEDGED = Answer(204)
GIF = Answer(200, PIXEL, "image/gif")
UNAVAILABLE = Answer(503, orjson.dumps(error_body("unavailable", "tracking is temporarily unavailable; retry later")),
                     "application/json", retry_after=RETRY_AFTER_SECONDS)


class Tracker:
    """One per application: the pipeline it appends to, the key tokens are signed with, the click destinations."""

    def __init__(self, pipeline: Pipeline, secret: bytes, destinations: service.DestinationCache):
        self.pipeline = pipeline
        self.secret = secret
        self.destinations = destinations

    async def _append(self, record: dict[str, object]) -> bool:
        try:
            await self.pipeline.append(record)
        except LogUnavailable:
            return False  # nothing was stored, so nothing is acknowledged: the sender tries again later
        return True

    async def refuse(self, kind: str, token: str, error: TokenError, client: records.Client) -> Answer:
        record = records.invalid(kind=kind, reason=error.reason, message=error.message, token=token,
                                 client_ip=client.ip, user_agent=client.user_agent)
        if not await self._append(record):
            return UNAVAILABLE
        code = TOKEN_CODES.get(error.reason, "malformed_token")
        body = error_body(code, error.message, [{"field": "t", "rule": error.reason, "message": error.message}])
        return Answer(400, orjson.dumps(body), "application/json")

    def _verify(self, token: str) -> TrackingClaims:
        return service.verify(token, self.secret, now=utcnow())

    async def impression(self, token: str, *, gif: bool, auction_price: str | None, currency: str | None,
                         client: records.Client) -> Answer:
        try:
            claims = self._verify(token)
        except TokenError as error:
            return await self.refuse("imp", token, error, client)
        record = records.impression(claims, token, auction_price=auction_price, currency=currency, client=client)
        if not await self._append(record):
            return UNAVAILABLE
        return GIF if gif else ACKNOWLEDGED

    async def click(self, token: str, *, client: records.Client) -> Answer:
        now = utcnow()
        try:
            claims = service.verify(token, self.secret, now=now)
        except TokenError as error:
            return await self.refuse("click", token, error, client)
        click_id = new_click_id(claims.impression_id, claims.issued_at, self.secret)
        if not await self._append(records.click(claims, click_id, token, client)):
            return UNAVAILABLE
        route = self.destinations.cached(claims)
        if route is None:
            route = await run_in_threadpool(self.destinations.load, claims)
        destination = service.resolve(route, claims, click_id=click_id, now=now)
        if destination is None:
            return ACKNOWLEDGED
        if destination.deeplink and deeplink.allowed(destination.deeplink):
            return Answer(200, deeplink.page(destination.deeplink, destination.location),
                          "text/html; charset=utf-8", extra=deeplink.HEADERS)
        # Quoted exactly as Starlette's RedirectResponse quotes a location.
        return Answer(302, location=quote(destination.location, safe=":/%#?=@[]!$&'()*+,;"))

    async def video(self, token: str, event: str, *, gif: bool, client: records.Client) -> Answer:
        try:
            claims = self._verify(token)
        except TokenError as error:
            return await self.refuse("video", token, error, client)
        if not await self._append(records.video(claims, token, event, client)):
            return UNAVAILABLE
        return GIF if gif else ACKNOWLEDGED
