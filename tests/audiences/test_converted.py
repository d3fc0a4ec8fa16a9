"""Label audiences from the measurement partners' postbacks: the devices that installed, or bought, in the
account's own apps, for remarketing or to leave existing users out of acquisition."""

from __future__ import annotations

from datetime import timedelta

from adstack.audiences import profiles
from adstack.audiences.ids import device_key
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution import partners
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect


def test_a_converted_audience_holds_the_devices_a_partner_reported_in_the_accounts_own_apps(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    template = s.integration()["postback_url_template"]
    installer, buyer, stranger = new_gaid(), new_gaid(), new_gaid()
    now = utcnow()
    for gaid, event in ((installer, ""), (buyer, ""), (buyer, partners.EVENT_NAMES[Partner.APPSFLYER]["PURCHASE"])):
        # Organic to the partner: an existing user is one whichever source brought them.
        conversion = partners.Conversion(at=now - timedelta(hours=2), event=event, gaid=gaid, attributed=False)
        expect(api.client.get(partners.url(Partner.APPSFLYER, template, conversion)), 200)
    s.process()
    for gaid in (installer, buyer, stranger):  # all three ask for ads, so serving knows them
        profiles.record_device_profile(api.session, gaid=gaid, installed_packages=[], usage=None, seen_at=now,
                                       country="SG")
    api.session.commit()

    def audience(events: list[str], app_ids: list[int], expected: int = 201) -> dict:
        body = {"name": f"Converted {events} {app_ids}", "region_code": "SG",
                "rule": {"conditions": [{"kind": "converted", "app_ids": app_ids, "events": events}]}}
        return expect(api.client.post("/api/v1/audiences/labels", headers=s.advertiser.headers, json=body), expected)

    installers = audience(["INSTALL"], [s.app["id"]])
    refreshed = expect(api.client.post(f"/api/v1/audiences/{installers['id']}/refresh",
                                       headers=s.advertiser.headers), 200)
    assert refreshed["size"] == 2
    buyers = audience(["PURCHASE"], [s.app["id"]])
    refreshed = expect(api.client.post(f"/api/v1/audiences/{buyers['id']}/refresh", headers=s.advertiser.headers),
                       200)
    assert refreshed["size"] == 1
    from adstack.audiences.service import load_audience_index

    index = load_audience_index(api.session)
    assert index.contains(buyers["id"], device_key(buyer))
    assert not index.contains(buyers["id"], device_key(installer))
    assert not index.contains(installers["id"], device_key(stranger))

    # Another tenant cannot read this account's postbacks through an audience: its app reads as unknown.
    other = api.approved_account(s.admin)
    body = {"name": "Theirs", "region_code": "SG",
            "rule": {"conditions": [{"kind": "converted", "app_ids": [s.app["id"]]}]}}
    refused = expect(api.client.post("/api/v1/audiences/labels", headers=other.headers, json=body), 422)
    assert [(f["field"], f["rule"]) for f in refused["error"]["fields"]] == [
        ("rule.conditions.0.app_ids.0", "belongs_to_account")]
