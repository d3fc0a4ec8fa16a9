"""The postbacks consumer: partners' postbacks, acknowledged once in the log, stored for attribution in batches.

The receiver checked each postback (partner, fields, app signature) before appending it, so here a batch becomes
one insert into the `postbacks` table, once per app and dedupe key whatever the retries, and the attribution
worker is woken to attribute it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from adstack.attribution.locks import WRITE_LOCK
from adstack.attribution.models import UNSIGNED_KEY_PREFIX
from adstack.attribution.service import IncomingPostback, accept_postbacks
from adstack.core.vocabulary import Partner
from adstack.pipeline.consumers import Context
from adstack.pipeline.records import Kind, received_at

log = logging.getLogger("adstack.pipeline")


def incoming(record: dict[str, Any]) -> IncomingPostback | None:
    try:
        parsed = record.get("pp")
        key = str(record["dk"])
        fields = {str(k): str(v) for k, v in record["f"].items()}
        reading = orjson.dumps(parsed).decode() if isinstance(parsed, dict) else None
        return IncomingPostback(int(record["app"]), Partner(record["p"]), key, str(record["m"]), fields,
                                received_at(record), reading, not key.startswith(UNSIGNED_KEY_PREFIX))
    except (KeyError, ValueError, TypeError, AttributeError):
        log.warning("skipping an unreadable postback record %s", record.get("id"))
        return None


class Postbacks:
    name = "postbacks"

    def __init__(self, context: Context, on_stored: Callable[[], None] | None = None):
        self.context = context
        self.on_stored = on_stored  # wakes the attribution worker

    def apply(self, records: list[dict[str, Any]]) -> None:
        batch = [p for r in records if r.get("k") == Kind.POSTBACK.value and (p := incoming(r)) is not None]
        if not batch:
            return
        with self.context.session_factory() as session:
            sqlite = session.get_bind().dialect.name == "sqlite"
            with WRITE_LOCK if sqlite else contextlib.nullcontext():
                accept_postbacks(session.connection(), batch)
                session.commit()
        if self.on_stored is not None:
            self.on_stored()
