"""Junk postbacks: kept row by row up to the per-minute bound, then only counted, in one row per minute."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.app import create_app
from adstack.attribution import api as attribution_api
from adstack.attribution.models import RejectedPostback
from adstack.core.settings import Settings


def test_junk_beyond_the_bound_is_counted_not_stored(
    settings: Settings, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attribution_api, "_rejected_budget", attribution_api._RejectedBudget())
    monkeypatch.setattr(attribution_api, "REJECTED_FLUSH_SECONDS", 0.0)  # write the count on every overflow
    bounded = settings.model_copy(update={"rejected_postback_rows_per_minute": 3})
    with TestClient(create_app(bounded), raise_server_exceptions=False) as client:
        for n in range(40):
            assert client.get(f"/track/m3rd/v1.0?partner=nobody{n}").status_code == 400
    rows = session.scalars(select(RejectedPostback).order_by(RejectedPostback.id)).all()
    # Unless the minute turned during the loop: then each minute has its own bound and its own count.
    if len({r.received_at.replace(second=0, microsecond=0) for r in rows}) == 1:
        assert len(rows) == 4
    kept = [r for r in rows if r.method == "GET"]
    counted = [r for r in rows if r.method == ""]
    assert len(kept) <= 6 and len(counted) <= 2
    assert all(r.reason == "unknown_partner" for r in rows)
    total = len(kept) + sum(int(r.message.split(" ", 1)[0]) for r in counted)
    assert total == 40
    assert "counted, not kept" in counted[0].message
    assert session.scalar(select(func.count()).select_from(RejectedPostback)) == len(rows)
