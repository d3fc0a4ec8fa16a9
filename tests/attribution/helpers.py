"""Scenario builders over the public API: a funded advertiser with a campaign for an app, an ad group, the app
with its partner, and ads served through the real tracking URLs."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from adstack.core.settings import Settings
from adstack.core.timeutil import shifted_clock, utcnow
from adstack.core.vocabulary import Partner
from adstack.tracking.urls import TrackingUrls, build_tracking_urls
from tests.support import Actor, Api, expect

_names = itertools.count(1)
PACKAGE = "com.example.puzzle"
# A click id macro as each partner's or ad server's syntax leaves it when nothing replaced it.
UNREPLACED_CLICK_ID_MACROS = ("__CLICK_ID__", "%%CLICK_ID%%", "$click_id$", "{click_id}", "(clickid)", "[CLICK_ID]",
                              "${click_id}", "{{click_id}}")
# A tracker id per partner that needs one: without it the integration shows no link to click through.
LINK_IDS: dict[Partner, str] = {
    Partner.ADJUST: "abc123",
    Partner.APPMETRICA: "1019409635088005254",
    Partner.BRANCH: "example.app.link/abc",
    Partner.SINGULAR: "example.sng.link/Dab1c/2d3e",
    Partner.KOCHAVA: "koexample123",
    Partner.TENJIN: "tk123",
    Partner.MYTRACKER: "abcdef",
    Partner.AIRBRIDGE: "examplegame",
}


@contextmanager
def received_at(at: datetime | None) -> Iterator[None]:
    """Send what follows as if it were `at`: the pipeline records it under that receipt time, which is the
    touch's time for attribution."""
    if at is None:
        yield
        return
    with shifted_clock(at - datetime.now(UTC)):
        yield


@dataclass
class Scenario:
    api: Api
    settings: Settings
    admin: Actor
    advertiser: Actor
    campaign: dict[str, Any]
    ad_group: dict[str, Any]
    app: dict[str, Any]

    @property
    def account_id(self) -> int:
        assert self.advertiser.account_id is not None
        return self.advertiser.account_id

    def integration(self, partner: Partner | str | None = None) -> dict[str, Any]:
        name = str(partner or self.app["partner"])
        return expect(
            self.api.client.get(f"/api/v1/apps/{self.app['id']}/integrations/{name}", headers=self.advertiser.headers),
            200,
        )

    def serve(
        self,
        gaid: str | None,
        *,
        bid_type: str | None = None,
        price_micros: int = 0,
        issued_at: datetime | None = None,
        **exchange: Any,
    ) -> TrackingUrls:
        """The tracking URLs of an ad served now; `exchange` as `build_tracking_urls` takes an exchange's bid."""
        return build_tracking_urls(
            base_url="http://testserver",
            secret=self.settings.resolved_secret_key,
            impression_id=f"imp_{uuid.uuid4().hex}",
            account_id=self.account_id,
            campaign_id=self.campaign["id"],
            ad_group_id=self.ad_group["id"],
            creative_id=1,
            ad_space_id=2,
            publisher_id=3,
            bid_type=bid_type or self.ad_group["bid_type"],
            price_micros=price_micros,
            issued_at=issued_at or utcnow(),
            gaid=gaid,
            country="ID",
            placement_type="banner",
            **exchange,
        )

    def click(self, gaid: str | None, *, at: datetime | None = None, **serve: Any) -> str:
        """Serve an ad and click it (at `at`, default now); returns our click id as it reached the partner's
        tracking link."""
        urls = self.serve(gaid, issued_at=at, **serve)
        with received_at(at):
            response = self.api.client.get(urls.click_url, follow_redirects=False)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        spec = self.integration()
        link = urlsplit(location)
        assert location.startswith(spec["tracking_link_template"].split("?")[0].split("{")[0])
        click_id = parse_qs(link.query)[spec["click_id_parameter"]][0]
        assert click_id == urls.click_id
        return click_id

    def impression(self, gaid: str | None, *, at: datetime | None = None, **serve: Any) -> TrackingUrls:
        urls = self.serve(gaid, issued_at=at, **serve)
        with received_at(at):
            expect(self.api.client.get(urls.impression_url), 204)
        return urls

    def postback(self, **fields: Any) -> None:
        """A postback to the app's signed URL (its fixed `partner`, `app` and `sig`) with the partner's `fields`."""
        template: str = self.integration()["postback_url_template"]
        path, _, query = template.partition("?")
        fixed = "&".join(query.split("&")[:3])
        expect(self.api.client.get(f"{urlsplit(path).path}?{fixed}&{urlencode(fields)}"), 200)

    def process(self) -> int:
        """Attribute what is stored now rather than wait for the background worker."""
        self.api.settle()
        return int(
            expect(self.api.client.post("/api/v1/postbacks/process", headers=self.admin.headers), 200)["processed"]
        )

    def postbacks(self) -> list[dict[str, Any]]:
        """The app's stored postbacks, once the pipeline has stored what it acknowledged."""
        self.api.settle()
        out: list[dict[str, Any]] = expect(
            self.api.client.get(
                f"/api/v1/apps/{self.app['id']}/postbacks", headers=self.advertiser.headers, params={"limit": 500}
            ),
            200,
        )
        return out

    def conversions(self, **query: Any) -> list[dict[str, Any]]:
        self.process()
        out: list[dict[str, Any]] = expect(
            self.api.client.get(
                "/api/v1/conversions",
                headers=self.advertiser.headers,
                params={"app_id": self.app["id"], "limit": 500, **query},
            ),
            200,
        )
        return out

    def balance_micros(self) -> int:
        self.api.settle()
        body = expect(
            self.api.client.get(f"/api/v1/finance/accounts/{self.account_id}/balance", headers=self.advertiser.headers),
            200,
        )
        return int(body["balance_micros"])


def scenario(
    api: Api,
    settings: Settings,
    *,
    partner: Partner = Partner.APPSFLYER,
    bid_type: str = "cpa",
    conversion_event: str | None = "INSTALL",
    bid_micros: int = 2_000_000,
    currency: str = "USD",
    **app_settings: Any,
) -> Scenario:
    admin = api.admin()
    country = {"USD": "ID", "INR": "IN", "CNY": "CN"}[currency]
    entity = {"USD": "Xiaomi Singapore", "INR": "Xiaomi India", "CNY": "Xiaomi Singapore"}[currency]
    advertiser = api.approved_account(admin, currency=currency, country=country, settlement_entity=entity)
    expect(
        api.client.post(
            "/api/v1/finance/top-ups",
            headers=admin.headers,
            json={"account_id": advertiser.account_id, "amount_micros": 1_000_000_000},
        ),
        201,
    )
    campaign = expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=advertiser.headers,
            json={
                "objective": "performance",
                "name": f"Installs {next(_names)}",
                "promotion_type": "app_download",
                "package_name": PACKAGE,
            },
        ),
        201,
    )
    group: dict[str, Any] = {
        "campaign_id": campaign["id"],
        "name": f"Ad group {next(_names)}",
        "placement_type": "banner",
        "bid_type": bid_type,
        "bid_micros": bid_micros,
    }
    if conversion_event and bid_type == "cpa":
        group["conversion_event"] = conversion_event
    ad_group = expect(api.client.post("/api/v1/ad-groups", headers=advertiser.headers, json=group), 201)
    app_settings.setdefault("partner_link_id", LINK_IDS.get(partner, ""))
    app = expect(
        api.client.post(
            "/api/v1/apps",
            headers=advertiser.headers,
            json={"package_name": PACKAGE, "name": "Puzzle Quest", "partner": partner.value, **app_settings},
        ),
        201,
    )
    return Scenario(api, settings, admin, advertiser, campaign, ad_group, app)


def new_gaid() -> str:
    return str(uuid.uuid4())
