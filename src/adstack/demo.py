"""`adstack demo`: build a working platform with realistic data, then simulate days of traffic through the
real path — ad requests → serving → impressions and clicks → partner postbacks → attribution → billing.

Nothing is inserted into tables directly: every step is an HTTP call to the application (in process), the
way SDKs, measurement partners and users would make it. Past days are replayed with a shifted clock, so
schedules, daily budgets and report days behave as they would have on those days.
"""

from __future__ import annotations

import io
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from adstack.accounts import users as account_users
from adstack.accounts.models import Role, User
from adstack.app import create_app
from adstack.apps.partners import SPECS
from adstack.attribution.models import Conversion
from adstack.audiences.service import DEFAULT_PACKAGE_CATEGORIES
from adstack.core.bootstrap import migrate
from adstack.core.db import session_scope
from adstack.core.settings import Settings
from adstack.core.timeutil import advance_clock, shifted_clock, utcnow
from adstack.core.vocabulary import ConversionEvent, Partner
from adstack.events.service import get_event_store
from adstack.finance.models import EntryType, LedgerEntry

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "adstack-demo"
USER_PASSWORD = "adstack-demo"
# A minimal PDF standing in for the qualification documents an account submits before review.
QUALIFICATION_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
                     b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


class DemoError(RuntimeError):
    """A step of the demo was refused by the platform; the message carries the platform's answer."""


class DemoAlreadyBuilt(DemoError):
    """The data dir already holds the demo platform; it is served as it is."""


@dataclass(frozen=True)
class DemoConfig:
    days: int = 3
    requests_per_day: int = 350
    devices: int = 600
    seed: int = 20261122
    click_rate_scale: float = 1.0  # multiplies the per-placement click rates (small test runs raise it)
    install_rate: float = 0.22  # installs per click


@dataclass
class DemoSummary:
    console_url: str
    admin_email: str
    admin_password: str
    user_logins: dict[str, str]
    requests: int = 0
    ads_served: int = 0
    impressions: int = 0
    clicks: int = 0
    postbacks: int = 0
    installs_sent: int = 0
    events_sent: Counter[str] = field(default_factory=Counter)
    ledger_charges_micros: int = 0
    report_cost_micros: int = 0
    report_installs: int = 0
    attributed_installs: int = 0


# ---------- the platform's cast ----------

PUBLISHERS = (
    # name, app package, country, ad spaces: (name, placement, accepted formats)
    ("Mi Browser", "com.mi.globalbrowser", "ID", (
        ("Browser launch interstitial", "interstitial", ["interstitial_image", "interstitial_video"]),
        ("Browser home banner", "banner", ["image_640x100"]),
        ("Browser news feed", "newsfeed", ["large_newsfeed_image", "newsfeed_video"]),
    )),
    ("Mi Video", "com.miui.videoplayer", "IN", (
        ("Video pause interstitial", "interstitial", ["interstitial_image", "interstitial_video"]),
        ("Video list banner", "banner", ["image_640x100"]),
        ("Video discover feed", "newsfeed", ["large_newsfeed_image"]),
    )),
)

CAMPAIGNS: dict[str, list[dict[str, Any]]] = {
    "moonlight": [
        {"campaign": "Moonlight launch", "package": "com.moonlight.game", "partner": "appsflyer",
         "iab_categories": ["IAB9-30"],  # Video & Computer Games: exchanges that block games get no bids
         "ad_groups": [
             {"name": "ID interstitial CPC", "placement": "interstitial", "format": "interstitial_image",
              "countries": ["ID"], "bid_type": "cpc", "bid_micros": 180_000, "daily_budget_micros": 60_000_000},
             {"name": "IN banner CPC", "placement": "banner", "format": "image_640x100",
              "countries": ["IN"], "bid_type": "cpc", "bid_micros": 60_000, "daily_budget_micros": 25_000_000},
             # Exchange inventory (OpenRTB): the IAB medium rectangle, bought on any exchange banner that takes it.
             {"name": "ID exchange IAB banner CPC", "placement": "banner", "format": "iab_banner_300x250",
              "countries": ["ID"], "bid_type": "cpc", "bid_micros": 150_000, "daily_budget_micros": 20_000_000},
         ]},
    ],
    "kopi": [
        {"campaign": "Kopi Wallet installs", "package": "com.kopiwallet.app", "partner": "appmetrica",
         "partner_link_id": "2048901234567890123",  # the AppMetrica tracker id: without it no link is shown
         "ad_groups": [
             {"name": "ID feed CPA install", "placement": "newsfeed", "format": "large_newsfeed_image",
              "countries": ["ID"], "bid_type": "cpa", "bid_micros": 900_000, "conversion_event": "INSTALL",
              "daily_budget_micros": 40_000_000},
         ]},
    ],
    "rangoli": [
        {"campaign": "Rangoli festive brand", "package": "com.rangoli.shop", "partner": "appsflyer",
         "objective": "brand",
         "ad_groups": [
             {"name": "IN interstitial guaranteed CPM", "placement": "interstitial", "format": "interstitial_image",
              "countries": ["IN"], "bid_type": "guaranteed_cpm", "bid_micros": 2_200_000,
              "booked_impressions": 400, "daily_budget_micros": 30_000_000},
         ]},
        {"campaign": "Rangoli festive sale", "package": "com.rangoli.shop", "partner": "appsflyer",
         "ad_groups": [
             {"name": "IN feed CPC", "placement": "newsfeed", "format": "large_newsfeed_image",
              "countries": ["IN", "ID"], "bid_type": "cpc", "bid_micros": 120_000,
              "daily_budget_micros": 30_000_000},
         ]},
    ],
}

# Source: Mi Ads Usage Guide, "Upload ad material information": the image size of each format the demo uses.
IMAGE_SIZES = {"interstitial_image": (1200, 628), "image_640x100": (640, 100), "large_newsfeed_image": (1200, 628),
               "iab_banner_300x250": (300, 250)}  # Source: IAB New Standard Ad Unit Portfolio (creatives/iab_sizes)
CLICK_RATE = {"interstitial": 0.05, "banner": 0.012, "newsfeed": 0.025}
VIEW_THROUGH_INSTALL_RATE = 0.002
ORGANIC_INSTALLS_PER_DAY = 6
IN_APP_EVENTS = (  # partner event name, chance after install, revenue range (USD) or None
    ("af_purchase", 0.12, (0.99, 19.99)),
    ("af_ad_revenue", 0.35, (0.01, 0.20)),
    ("af_complete_registration", 0.45, None),
    ("af_login", 0.50, None),
)
APPMETRICA_EVENTS = (("registration", 0.5, None), ("first_deposit", 0.15, (5.0, 50.0)), ("login", 0.4, None))
LANGUAGES = {"ID": ["id", "en"], "IN": ["hi", "en"]}
MODELS = ["Redmi Note 13", "Redmi 13C", "POCO X6", "Xiaomi 14T", "Redmi A3"]


def _png(width: int, height: int, label: str, rng: random.Random) -> bytes:
    image = Image.new("RGB", (width, height), (rng.randrange(40, 200), rng.randrange(40, 200), rng.randrange(40, 200)))
    ImageDraw.Draw(image).text((8, 8), label, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# Partners' macro syntaxes: Branch ${(x)!}, Tenjin {{x}}, most {x}, Singular {cl?network} and {NETWORK=network},
# AppsFlyer (x), and Branch's attributed flag.
_MACRO = re.compile(r"\$\{\((?P<a>[^)]*)\)!\}|\{\{(?P<b>\w+)\}\}"
                    r"|\{(?P<c>[\w@.~]+)(?:\?(?P<passthrough>[\w.\-]*)|=(?P<network>[\w.\-]*))?\}|\((?P<d>\w+)\)"
                    r"|<#if[^>]*>1<#else>0</#if>")


def fill_postback(template: str, values: dict[str, str]) -> str:
    """Play the measurement partner: replace its macros in our postback template with the conversion's values,
    URL-encoded. Macros we have no value for are left empty, as partners do."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0).startswith("<#if"):
            return values.get("attributed", "0")
        if match.group("network") is not None:  # Singular's {NETWORK=name}: 1 when attributed to that network
            return values.get("attributed", "0")
        name = next(g for g in (match.group("a"), match.group("b"), match.group("c"), match.group("d"))
                    if g is not None)
        return quote(values.get(name.split(".")[-1], ""), safe="")

    return _MACRO.sub(replace, template)


def _conversion_values(partner: str, *, click_id: str, gaid: str, event: str, at: datetime,
                       installed_at: datetime, revenue: float | None, package: str) -> dict[str, str]:
    """What the partner knows about one conversion, under every macro name the partners' templates use. The
    partner attributes to us what came through our click (the demo's devices fire no view-through links)."""
    stamp, install = at.astimezone(UTC), installed_at.astimezone(UTC)
    is_install = event == "install"
    ours = bool(click_id)
    network = SPECS[Partner(partner)].default_network_name
    amount = f"{revenue:.2f}" if revenue else ""
    currency = "USD" if revenue else ""
    seconds, millis = str(int(stamp.timestamp())), str(int(stamp.timestamp() * 1000))
    event_id = uuid.uuid4().hex
    values = {
        # our click id, as each partner echoes it
        "clickid": click_id, "click_id": click_id, "label": click_id, "~click_id": click_id, "cl": click_id,
        "mt_sub1": click_id, "clickID": click_id,
        # the device
        "advertiserId": gaid, "advertising_id": gaid, "google_aid": gaid, "gps_adid": gaid, "aaid": gaid,
        "AIFA": gaid, "mt_gaid": gaid, "gaidRaw": gaid,
        # the event: an install has the partner's install name, or none
        "event_name": event, "event": event, "name": event, "EVTNAME": event, "mt_event": event,
        "eventName": "airbridge.install" if is_install else event,
        "conversion_event_name": "" if is_install else event,
        "conversion_event_json": "" if is_install else json.dumps(
            {"revenue": amount, "currency": currency} if revenue else {"name": event}),
        "activity_kind": "install" if is_install else "event",
        # times
        "event_time": stamp.strftime("%Y-%m-%d %H:%M:%S.000"), "event_datetime": stamp.strftime("%Y-%m-%d %H:%M:%S"),
        "created_at": seconds, "created_at_milli": millis, "event_timestamp": millis, "eventTimestamp": millis,
        "UTCM": seconds, "mt_event_ts": seconds, "conversion_timestamp": seconds,
        "install_unix_ts": str(int(install.timestamp())), "installed_at": str(int(install.timestamp())),
        "install_timestamp": str(int(install.timestamp())), "install_time": str(int(install.timestamp())),
        "install_datetime": install.strftime("%Y-%m-%d %H:%M:%S"),
        # revenue
        "event_revenue": amount, "revenue": amount, "revenue_float": amount, "price": amount, "AMOUNT": amount,
        "mt_payment_sum_src": amount, "event_revenue_currency": currency, "currency": currency,
        "CURRENCY": currency, "mt_payment_currency_src": currency,
        # the partner's event ids
        "transaction_id": event_id, "id": event_id, "eventUUID": event_id,
        # the partner's verdict
        "attributed": "1" if ours else "0", "is_attributed": "true" if ours else "false",
        "is_primary_attribution": "true", "media_source": network if ours else "organic",
        "network_name": network if ours else "Organic", "NETWORK": network if ours else "",
        "attributed_touch_type": "click" if ours else "", "last_attributed_touch_type": "click" if ours else "",
        "touch_type": "click" if ours else "", "match_type": "referrer" if ours else "",
        "IS_VIEWTHROUGH": "0", "IS_RE_ENG": "0",
        # the app
        "app_id": package, "app_package_name": package, "bundle_id": package,
    }
    if partner == "adjust":  # Adjust's {adid} is its own device id, which with created_at_milli names the event
        values["adid"] = uuid.uuid5(uuid.NAMESPACE_OID, gaid).hex
    else:  # Kochava's {adid} is the advertising id
        values["adid"] = gaid
    return values


class Platform:
    """The application, driven over HTTP."""

    def __init__(self, client: TestClient):
        self.client = client

    def call(self, method: str, path: str, token: str | None = None, *, expect: int = 200, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.request(method, path, headers=headers, **kwargs)
        if response.status_code != expect:
            raise DemoError(f"{method} {path} answered {response.status_code}: {response.text[:400]}")
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def login(self, email: str, password: str) -> str:
        return str(self.call("POST", "/api/v1/auth/login", json={"email": email, "password": password})["access_token"])


@dataclass
class Device:
    gaid: str
    country: str
    language: str
    model: str
    installed: set[str] = field(default_factory=set)
    address: str = "127.0.0.1"  # the phone's address as the server sees it (a loopback label: nothing is sent)


# What a phone's webview sends; tracking's invalid-traffic rules refuse empty and crawler user agents.
PHONE_USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; 23090RA98G Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36")


def _ensure_admin(settings: Settings, factory: Any) -> None:
    with session_scope(factory) as session:
        if session.scalar(select(User.id).where(User.email == ADMIN_EMAIL)) is None:
            account_users.create_admin(session, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, role=Role.ADMIN)


def upload_documents(platform: Platform, token: str, account_id: int, *, agency: bool = False) -> None:
    kinds = ["business_license", *(["getapps_shop_screenshot"] if agency else [])]
    for kind in kinds:
        platform.call("POST", f"/api/v1/accounts/{account_id}/documents", token, expect=201, data={"kind": kind},
                      files={"file": (f"{kind}.pdf", QUALIFICATION_PDF, "application/pdf")})


def _register(platform: Platform, admin: str, *, email: str, company: str, kind: str, country: str,
              time_zone: str) -> tuple[str, int]:
    existing = platform.client.post("/api/v1/auth/login", json={"email": email, "password": USER_PASSWORD})
    if existing.status_code == 200:
        raise DemoAlreadyBuilt(f"the demo platform is already in this data dir ({email} exists)")
    platform.call("POST", "/api/v1/auth/register", expect=202, json={
        "email": email, "password": USER_PASSWORD, "type": kind, "company_name": company,
        "contact_name": "Demo Contact", "contact_email": email, "country": country,
        "settlement_entity": "Xiaomi Singapore", "currency": "USD", "time_zone": time_zone, "accept_agreement": True})
    body = platform.call("POST", "/api/v1/auth/login", json={"email": email, "password": USER_PASSWORD})
    token, account_id = body["access_token"], body["account_id"]
    # The demo's addresses receive no mail: the admin confirms them, as an operator would out of band.
    platform.call("POST", f"/api/v1/users/{body['user_id']}/verify-email", admin)
    upload_documents(platform, token, account_id, agency=kind == "agency")
    platform.call("POST", f"/api/v1/accounts/{account_id}/submit", token)
    platform.call("POST", f"/api/v1/accounts/{account_id}/review", admin, json={"decision": "approve"})
    return token, account_id


def build_platform(platform: Platform, admin: str, rng: random.Random) -> dict[str, Any]:
    """Accounts, inventory, money, apps, campaigns, ad groups and creatives, all approved."""
    # Singapore has no settlement entity until an operator sets its rule (the guide's "Except Singapore").
    platform.call("POST", "/api/v1/settlement-rules", admin, expect=201, json={
        "country": "SG", "entity": "Xiaomi Singapore", "currency": "USD",
        "contract_version": "Xiaomi Singapore universal version"})
    moonlight_token, moonlight_id = _register(
        platform, admin, email="moonlight@example.com", company="Moonlight Games Pte. Ltd.", kind="advertiser",
        country="SG", time_zone="Asia/Singapore")
    agency_token, agency_id = _register(
        platform, admin, email="agency@example.com", company="Blue Ocean Media (HK) Limited", kind="agency",
        country="HK", time_zone="Asia/Hong_Kong")
    sub_accounts: dict[str, int] = {}
    for key, company, country, zone in (("kopi", "PT Kopi Wallet Indonesia", "MY", "Asia/Jakarta"),
                                        ("rangoli", "Rangoli Commerce（India）Pvt. Ltd.", "AE", "Asia/Kolkata")):
        account = platform.call("POST", "/api/v1/accounts", agency_token, expect=201, json={
            "company_name": company, "contact_name": "Demo Contact", "contact_email": f"{key}@example.com",
            "country": country, "settlement_entity": "Xiaomi Singapore", "currency": "USD", "time_zone": zone})
        upload_documents(platform, agency_token, int(account["id"]))
        platform.call("POST", f"/api/v1/accounts/{account['id']}/submit", agency_token)
        platform.call("POST", f"/api/v1/accounts/{account['id']}/review", admin, json={"decision": "approve"})
        sub_accounts[key] = int(account["id"])

    spaces: list[dict[str, Any]] = []
    for name, package, country, space_specs in PUBLISHERS:
        publisher = platform.call("POST", "/api/v1/publishers", admin, expect=201,
                                  json={"name": name, "app_package": package, "country": country})
        for space_name, placement, formats in space_specs:
            space = platform.call("POST", "/api/v1/ad-spaces", admin, expect=201, json={
                "publisher_id": publisher["id"], "name": space_name, "placement_type": placement,
                "accepted_formats": formats, "reserve_price_micros": 300_000})
            spaces.append({**space, "package": package, "country": country})

    # Money: the account manager tops up the advertiser and the agency; the agency funds its sub-accounts.
    platform.call("POST", "/api/v1/finance/top-ups", admin, expect=201,
                  json={"account_id": moonlight_id, "amount_micros": 2_000_000_000, "remarks": "Demo top-up"})
    platform.call("POST", "/api/v1/finance/top-ups", admin, expect=201,
                  json={"account_id": agency_id, "amount_micros": 5_000_000_000, "remarks": "Demo prepay"})
    for sub_id in sub_accounts.values():
        platform.call("POST", "/api/v1/finance/transfers", agency_token, expect=201, json={
            "kind": "transfer", "sub_account_id": sub_id, "amount_micros": 1_500_000_000, "remarks": "Demo budget"})

    owners = {"moonlight": (moonlight_token, moonlight_id), "kopi": (agency_token, sub_accounts["kopi"]),
              "rangoli": (agency_token, sub_accounts["rangoli"])}
    apps: dict[str, dict[str, Any]] = {}
    for owner, campaigns in CAMPAIGNS.items():
        token, account_id = owners[owner]
        for spec in campaigns:
            if spec["package"] not in apps:
                app = platform.call("POST", "/api/v1/apps", token, expect=201, json={
                    "account_id": account_id, "package_name": spec["package"], "name": spec["campaign"].split()[0],
                    "partner": spec["partner"], "partner_link_id": spec.get("partner_link_id", "")})
                integration = platform.call("GET", f"/api/v1/apps/{app['id']}/integrations/{spec['partner']}",
                                            token)
                apps[spec["package"]] = {"id": app["id"], "partner": spec["partner"], "token": token,
                                         "postback": integration["postback_url_template"],
                                         "click_id_parameter": integration["click_id_parameter"]}
            campaign = platform.call("POST", "/api/v1/campaigns", token, expect=201, json={
                "account_id": account_id, "objective": spec.get("objective", "performance"), "name": spec["campaign"],
                "promotion_type": "app_download", "package_name": spec["package"],
                "iab_categories": spec.get("iab_categories", [])})
            for group in spec["ad_groups"]:
                body = {"campaign_id": campaign["id"], "name": group["name"], "placement_type": group["placement"],
                        "bid_type": group["bid_type"], "bid_micros": group["bid_micros"],
                        "daily_budget_micros": group["daily_budget_micros"],
                        "start_at": (utcnow() - timedelta(days=30)).isoformat(),
                        "targeting": {"countries": group["countries"]}}
                for optional in ("conversion_event", "booked_impressions"):
                    if group.get(optional):
                        body[optional] = group[optional]
                ad_group = platform.call("POST", "/api/v1/ad-groups", token, expect=201, json=body)
                creative = _creative(platform, token, account_id, ad_group["id"], group, spec, rng)
                platform.call("POST", f"/api/v1/ad-groups/{ad_group['id']}/submit", token)
                platform.call("POST", f"/api/v1/creatives/{creative['id']}/submit", token)
                platform.call("POST", f"/api/v1/ad-groups/{ad_group['id']}/review", admin,
                              json={"decision": "approve"})
                platform.call("POST", f"/api/v1/creatives/{creative['id']}/review", admin,
                              json={"decision": "approve"})
    return {"spaces": spaces, "apps": apps, "accounts": [moonlight_id, agency_id, *sub_accounts.values()]}


def _upload(platform: Platform, token: str, account_id: int, name: str, content: bytes) -> int:
    body = platform.call("POST", "/api/v1/media", token, expect=201, files={"file": (name, content, "image/png")},
                         data={"account_id": str(account_id)})
    return int(body["id"])


def _creative(platform: Platform, token: str, account_id: int, ad_group_id: int, group: dict[str, Any],
              spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    width, height = IMAGE_SIZES[group["format"]]
    images = [_upload(platform, token, account_id, f"{group['format']}-{n}.png",
                      _png(width, height, spec["campaign"], rng))
              for n in range(1 if group["format"].startswith("iab_") else 2)]
    icon = _upload(platform, token, account_id, "icon.png", _png(84, 84, "icon", rng))
    materials: dict[str, Any] = {"images": images}
    if group["format"].startswith("iab_"):  # an IAB size: one image and its title (creatives/iab_sizes)
        materials.update(titles=[spec["campaign"][:30]])
    if group["format"] in ("interstitial_image", "large_newsfeed_image"):  # the guide's card formats: one title
        materials.update(titles=[spec["campaign"][:30]], icon=icon, button_texts=["Install", "Play now"],
                         descriptions=["Fast, free and made for your phone", "Install now and play"])
    return dict(platform.call("POST", "/api/v1/creatives", token, expect=201, json={
        "ad_group_id": ad_group_id, "name": f"{group['name']} creative", "format": group["format"],
        "materials": materials,
        "click_url": f"https://play.google.com/store/apps/details?id={spec['package']}"}))


# ---------- traffic ----------


def _postback(platform: Platform, app: dict[str, Any], values: dict[str, str], summary: DemoSummary, *,
              at: datetime) -> None:
    """The partner sends the postback when the conversion happens: received at `at`, so its time is believed."""
    url = fill_postback(app["postback"], values)
    parts = urlsplit(url)
    with shifted_clock(at - datetime.now(UTC)):
        platform.call("GET", f"{parts.path}?{parts.query}")
    summary.postbacks += 1


# Everyday apps a phone already has, from the audience package categories, so installed-app, behaviour and
# usage labels have data on demo devices.
EVERYDAY_APPS: tuple[str, ...] = tuple(package for package, _ in DEFAULT_PACKAGE_CATEGORIES)


def _usage_since_last_request(device: Device, rng: random.Random) -> dict[str, int]:
    """Seconds of use of one to three of the device's everyday apps since its last ad request."""
    everyday = sorted(p for p in device.installed if p in EVERYDAY_APPS)
    if not everyday:
        return {}
    return {package: rng.randrange(30, 1800) for package in rng.sample(everyday, min(len(everyday),
                                                                                       rng.randint(1, 3)))}


def simulate_day(platform: Platform, cast: dict[str, Any], devices: list[Device], *, config: DemoConfig,
                 rng: random.Random, summary: DemoSummary, advance: Callable[[int], None],
                 span: timedelta = timedelta(hours=22)) -> None:
    spaces = cast["spaces"]
    apps = cast["apps"]
    # Requests are spread over the simulated day; a person clicks seconds after seeing an ad, from their phone.
    step = span / max(1, config.requests_per_day)
    for _ in range(config.requests_per_day):
        advance_clock(step)
        device = rng.choice(devices)
        phone = TestClient(platform.client.app, base_url=str(platform.client.base_url),
                           client=(device.address, 40_000), headers={"User-Agent": PHONE_USER_AGENT})
        space = rng.choice([s for s in spaces if s["country"] == device.country] or spaces)
        answer = platform.call("POST", "/v1/ads", json={
            "ad_space_id": space["id"], "count": 1,
            "device": {"gaid": device.gaid, "country": device.country, "language": device.language,
                       "model": device.model, "os_version": "14", "network": rng.choice(["wifi", "4g"])},
            "app": {"package": space["package"], "installed_packages": sorted(device.installed),
                    "usage_seconds": _usage_since_last_request(device, rng)}})
        summary.requests += 1
        advance(1)
        for ad in answer["ads"]:
            summary.ads_served += 1
            for url in ad["tracking"]["impression"]:
                if "/t/imp" in url:
                    phone.get(url)
                    summary.impressions += 1
            package = _package_of(ad, apps)
            app = apps.get(package) if package else None
            clicked = rng.random() < CLICK_RATE.get(space["placement_type"], 0.02) * config.click_rate_scale
            click_id = ""
            if clicked:
                advance_clock(timedelta(seconds=rng.uniform(2, 30)))
                response = phone.get(ad["click_url"], follow_redirects=False)
                summary.clicks += 1
                location = response.headers.get("location", "")
                if app is not None:
                    click_id = parse_qs(urlsplit(location).query).get(app["click_id_parameter"], [""])[0]
            converts = (clicked and rng.random() < config.install_rate) or (
                not clicked and rng.random() < VIEW_THROUGH_INSTALL_RATE)
            if app is not None and package is not None and converts and package not in device.installed:
                _install_and_events(platform, app, device, package, click_id, rng, summary)
    for _ in range(ORGANIC_INSTALLS_PER_DAY):
        device = rng.choice(devices)
        package, app = rng.choice(list(apps.items()))
        if package not in device.installed:
            _install_and_events(platform, app, device, package, "", rng, summary)


def _package_of(ad: dict[str, Any], apps: dict[str, Any]) -> str | None:
    landing = ad.get("landing_url") or ad.get("click_url", "")
    for package in apps:
        if package in landing:
            return package
    return None


def _install_and_events(platform: Platform, app: dict[str, Any], device: Device, package: str, click_id: str,
                        rng: random.Random, summary: DemoSummary) -> None:
    # Nothing is dated after the real now: a report that ends today must see every event the demo sent.
    latest = datetime.now(UTC) - timedelta(seconds=1)
    installed_at = min(latest, utcnow() + timedelta(seconds=rng.randrange(40, 900)))
    device.installed.add(package)
    _postback(platform, app, _conversion_values(app["partner"], click_id=click_id, gaid=device.gaid,
                                                event="install", at=installed_at, installed_at=installed_at,
                                                revenue=None, package=package), summary, at=installed_at)
    summary.installs_sent += 1
    events = APPMETRICA_EVENTS if app["partner"] == "appmetrica" else IN_APP_EVENTS
    for name, chance, revenue_range in events:
        if rng.random() < chance:
            revenue = round(rng.uniform(*revenue_range), 2) if revenue_range else None
            at = min(latest, installed_at + timedelta(minutes=rng.randrange(1, 600)))
            _postback(platform, app, _conversion_values(app["partner"], click_id=click_id, gaid=device.gaid,
                                                        event=name, at=at, installed_at=installed_at,
                                                        revenue=revenue, package=package), summary, at=at)
            summary.events_sent[name] += 1


@contextmanager
def running_app(settings: Settings) -> Iterator[tuple[Platform, Any]]:
    migrate(settings)
    app = create_app(settings)
    with TestClient(app, base_url=settings.public_base_url, raise_server_exceptions=True) as client:
        yield Platform(client), app


def run(settings: Settings, config: DemoConfig | None = None, *,
        progress: Callable[[int, int], None] | None = None) -> DemoSummary:
    """Build the demo platform in settings.data_dir and simulate config.days of traffic ending today."""
    config = config or DemoConfig()
    rng = random.Random(config.seed)
    summary = DemoSummary(console_url=f"{settings.public_base_url}/console", admin_email=ADMIN_EMAIL,
                          admin_password=ADMIN_PASSWORD,
                          user_logins={e: USER_PASSWORD for e in ("moonlight@example.com", "agency@example.com")})
    total = config.days * config.requests_per_day
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    with running_app(settings) as (platform, app):
        _ensure_admin(settings, app.state.session_factory)
        admin = platform.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        # The cast is built a month back, so every ad group's schedule covers the simulated days.
        with shifted_clock(timedelta(days=-config.days - 1)):
            cast = build_platform(platform, admin, rng)
        devices = [Device(gaid=str(uuid.UUID(int=rng.getrandbits(128), version=4)), country=country,
                          language=rng.choice(LANGUAGES[country]), model=rng.choice(MODELS),
                          address=f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255 or 1}",
                          installed=set(rng.sample(EVERYDAY_APPS, rng.randint(2, 6))))
                   for n, country in enumerate(rng.choices(["ID", "IN"], weights=[55, 45], k=config.devices),
                                               start=1)]
        for day in range(config.days, 0, -1):
            start_of_day = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
            offset = start_of_day - timedelta(days=day - 1) - datetime.now(UTC)
            # Today's traffic stops a little before now, so nothing is dated in the future.
            span = max(timedelta(minutes=1), min(timedelta(hours=22), -offset - timedelta(minutes=30))) \
                if day == 1 else timedelta(hours=22)
            with shifted_clock(offset):
                app.state.serving.refresh(force=True)
                simulate_day(platform, cast, devices, config=config, rng=rng, summary=summary, advance=advance,
                             span=span)
                app.state.pipeline.drain()  # the day's events are billed before the next day is served
        app.state.serving.refresh(force=True)
        platform.call("POST", "/api/v1/postbacks/process", admin)
        _reconcile(platform, admin, cast, config, summary, app)
    return summary


def _reconcile(platform: Platform, admin: str, cast: dict[str, Any], config: DemoConfig, summary: DemoSummary,
               app: Any) -> None:
    """Read back what the platform recorded: the ledger's charges, the report's cost and installs, and the
    attributed installs."""
    get_event_store(app.state.settings).flush()
    today = utcnow().date()
    with session_scope(app.state.session_factory) as session:
        charged = session.scalar(select(func.coalesce(func.sum(-LedgerEntry.amount_micros), 0))
                                 .where(LedgerEntry.entry_type == EntryType.CHARGE.value))
        attributed = session.scalar(select(func.count()).select_from(Conversion).where(
            Conversion.conversion_event == ConversionEvent.INSTALL.value,
            Conversion.attribution_type.in_(("click", "view"))))
    summary.ledger_charges_micros = int(charged or 0)
    summary.attributed_installs = int(attributed or 0)
    report = platform.call("GET", "/api/v1/reports", admin, params={
        "start_date": (today - timedelta(days=config.days + 2)).isoformat(), "end_date": today.isoformat(),
        "metrics": ["cost_micros", "installs", "impressions", "clicks"], "time_zone": "UTC"})
    summary.report_cost_micros = int(report["totals"]["cost_micros"])
    summary.report_installs = int(report["totals"]["installs"])
