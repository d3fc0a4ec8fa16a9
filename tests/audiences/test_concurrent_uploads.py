"""Uploads that meet: two files appended to one audience at once both count, and each lifts the version."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adstack.accounts import auth
from adstack.audiences import service, uploads
from adstack.audiences.ids import IdType, device_key
from adstack.audiences.models import Audience, AudienceUpload, UploadMode
from adstack.core.errors import Conflict
from tests.audiences.helpers import gaids, id_file, upload
from tests.support import Api

MB = 1024 * 1024


def test_two_appends_at_once_keep_both_files(api: Api, session: Session, session_factory: sessionmaker[Session],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    adv = api.approved_account()
    first, second, third = gaids(1000, seed=1), gaids(1000, seed=2), gaids(1000, seed=3)
    audience_id = upload(api, adv, id_file(first))["audience"]["id"]
    principal = auth.authenticate(session, adv.token)
    session.commit()
    served_before = service.load_audience_index(session)
    session.rollback()

    # Each append's first write waits (up to a second) for the other to reach its own: without a lock taken
    # before the membership is read, both have read the same partitions by then.
    met = threading.Barrier(2, timeout=1)
    waited = threading.local()
    write_segment = uploads._write_segment

    def write_when_both_read(*args: Any, **kwargs: Any) -> None:
        if not getattr(waited, "done", False):
            waited.done = True
            # Broken when the other append is waiting for this one's lock instead.
            with contextlib.suppress(threading.BrokenBarrierError):
                met.wait()
        write_segment(*args, **kwargs)

    monkeypatch.setattr(uploads, "_write_segment", write_when_both_read)

    def append(devices: list[str]) -> None:
        with session_factory() as own:
            uploads.change_uploaded_audience(own, principal, audience_id, mode=UploadMode.APPEND,
                                              chunks=[id_file(devices)], max_bytes=64 * MB)
            own.commit()

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(append, second), pool.submit(append, third)]:
            done.result()

    session.expire_all()
    audience = session.get(Audience, audience_id)
    assert audience is not None
    assert (audience.size, audience.version) == (3000, 3)
    assert len(service.load_members(session, audience_id)) == 3000
    reports = session.scalars(select(AudienceUpload).where(AudienceUpload.audience_id == audience_id)
                              .order_by(AudienceUpload.id)).all()
    assert [(r.mode, r.changed) for r in reports] == [("create", 1000), ("append", 1000), ("append", 1000)]
    assert sorted(r.size_after for r in reports[1:]) == [2000, 3000]
    served = service.load_audience_index(session, previous=served_before)
    assert all(served.contains(audience_id, device_key(devices[0])) for devices in (first, second, third))
    assert served.size(audience_id) == 3000


def test_two_uploads_of_one_name_at_once_refuse_the_second_by_the_name(
        api: Api, session: Session, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    adv = api.approved_account()
    principal = auth.authenticate(session, adv.token)
    session.commit()
    # Both have checked that the name is free before either creates its audience.
    checked = threading.Barrier(2, timeout=5)
    prepare = uploads.prepare_uploaded_audience

    def prepare_together(*args: Any, **kwargs: Any) -> int:
        owner = prepare(*args, **kwargs)
        checked.wait()
        return owner

    monkeypatch.setattr(uploads, "prepare_uploaded_audience", prepare_together)

    def create(seed: int) -> int:
        with session_factory() as own:
            chunks = [id_file(gaids(1000, seed=seed))]
            audience, _ = uploads.create_uploaded_audience(own, principal, name="Payers", region_code="SG",
                                                           id_type=IdType.GAID, chunks=chunks, max_bytes=64 * MB)
            own.commit()
            return audience.id

    with ThreadPoolExecutor(2) as pool:
        attempts = [pool.submit(create, seed) for seed in (1, 2)]
        refused = [a.exception() for a in attempts if a.exception() is not None]
    assert len(refused) == 1
    assert isinstance(refused[0], Conflict)
    assert [(f.field, f.rule, f.actual) for f in refused[0].fields] == [("name", "unique", "Payers")]
    assert session.scalars(select(Audience.name)).all() == ["Payers"]
