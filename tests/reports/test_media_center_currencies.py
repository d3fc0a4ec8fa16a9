"""The media center adds every account's spend per app or ad space: accounts of several currencies are refused
naming its own field (account_id), and one account of them is shown in its currency."""

from __future__ import annotations

from adstack.events.service import EventStore
from tests.support import Api, expect

PARAMS = {"start_date": "2025-05-20", "end_date": "2025-05-20"}


def test_an_agency_with_two_currencies_chooses_one_account(api: Api, store: EventStore) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    api.sub_account(agency, admin)
    inr = api.sub_account(agency, admin, currency="INR", country="IN", settlement_entity="Xiaomi India")
    refused = api.client.get("/api/v1/media-center", params=PARAMS, headers=agency.headers)
    assert refused.status_code == 422
    (field,) = refused.json()["error"]["fields"]
    assert (field["field"], field["rule"], field["limit"]) == ("account_id", "one_currency", ["INR", "USD"])
    assert "dimension" not in field["message"]
    body = expect(api.client.get("/api/v1/media-center", params=PARAMS | {"account_id": inr},
                                 headers=agency.headers), 200)
    assert body["currency"] == "INR"
    other = api.approved_account(admin)
    unseen = api.client.get("/api/v1/media-center", params=PARAMS | {"account_id": other.account_id},
                            headers=agency.headers)
    assert unseen.status_code == 404 and unseen.json()["error"]["fields"][0]["field"] == "account_id"
