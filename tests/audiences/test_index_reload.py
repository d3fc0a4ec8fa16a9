"""Serving's audience index across deletes: a deleted audience's id is not given again, and an audience that
still carries a deleted one's id and version (a database that reused it) is loaded afresh, never served from the
deleted audience's members."""

from __future__ import annotations

from pyroaring import BitMap64
from sqlalchemy.orm import Session

from adstack.audiences import service
from adstack.audiences.ids import device_key
from adstack.audiences.label_audiences import _split_partitions
from adstack.audiences.models import Audience, AudienceKind, AudienceStatus
from tests.audiences.helpers import gaids, id_file, upload
from tests.support import Api, expect


def test_a_deleted_audiences_id_is_not_given_to_the_next_audience(api: Api) -> None:
    admin = api.admin()
    tenant_a, tenant_b = api.approved_account(admin), api.approved_account(admin)
    deleted = upload(api, tenant_a, id_file(gaids(1000, seed=1)), name="A payers")["audience"]["id"]
    expect(api.client.delete(f"/api/v1/audiences/{deleted}", headers=tenant_a.headers), 204)
    fresh = upload(api, tenant_b, id_file(gaids(1000, seed=2)), name="B payers")["audience"]["id"]
    # Ad groups name audiences by id: tenant A's old references must never reach tenant B's audience.
    assert fresh > deleted


def test_an_audience_with_a_deleted_ones_id_and_version_is_reloaded(api: Api, session: Session) -> None:
    admin = api.admin()
    tenant_a, tenant_b = api.approved_account(admin), api.approved_account(admin)
    devices_a, devices_b = gaids(1000, seed=1), gaids(1000, seed=2)
    audience_id = upload(api, tenant_a, id_file(devices_a), name="A payers")["audience"]["id"]
    before = service.audience_index_signature(session)
    index = service.load_audience_index(session)
    assert index.contains(audience_id, device_key(devices_a[0]))
    session.rollback()
    expect(api.client.delete(f"/api/v1/audiences/{audience_id}", headers=tenant_a.headers), 204)

    # As a database that gives a deleted id again would store tenant B's next upload: same id, version 1.
    session.add(Audience(id=audience_id, account_id=tenant_b.account_id, name="B payers",
                         kind=AudienceKind.UPLOADED.value, region_code="SG", id_type="gaid", key_space="md5",
                         status=AudienceStatus.READY.value, size=len(devices_b), version=1))
    session.flush()
    service._replace_membership(session, audience_id, _split_partitions(BitMap64(device_key(g) for g in devices_b)))
    session.commit()

    assert service.audience_index_signature(session) != before  # serving's once-a-second check sees the change
    reloaded = service.load_audience_index(session, previous=index)
    assert reloaded.contains(audience_id, device_key(devices_b[0]))
    assert not reloaded.contains(audience_id, device_key(devices_a[0]))
    assert reloaded.size(audience_id) == 1000
