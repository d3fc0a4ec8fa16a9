"""Tenants for the isolation tests, built over the public HTTP API with one object of every kind the API
creates, and the route table: which object each path parameter names, and the body each mutation needs
so that a request gets as far as the tenancy check."""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from httpx import Response

from adstack.connectors.adjust import BindingSettings, PulledRow
from adstack.core.ids import MAX_ID
from tests.audiences.helpers import gaids, id_file
from tests.e2e.media_files import png
from tests.support import Actor, Api, expect

API = "/api/v1"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

# Path parameters that name a tenant's own objects, each mapped to the kind of object in Tenant.ids.
TENANT_PARAMS = frozenset(
    {
        "account_id",
        "key_id",
        "media_id",
        "app_id",
        "audience_id",
        "campaign_id",
        "ad_group_id",
        "creative_id",
        "request_id",
        "line_id",
        "job_id",
        "connection_id",
        "binding_id",
        "object_id",
        "session_id",
        "user_id",
        "invitation_id",
        "document_id",
        "endpoint_id",
        "notification_id",
    }
)
# Path parameters that name platform-owned catalogue rows or vocabularies: readable, never writable by tenants.
CATALOGUE_PARAMS = frozenset(
    {
        "rule_id",
        "publisher_id",
        "ad_space_id",
        "country",
        "region_id",
        "row_id",
        "currency",
        "code",
        "partner",
        "object_type",
    }
)
# The account each of a tenant's documents (`document_id`, in the same order) belongs to.
DOCUMENT_ACCOUNT = "document_account_id"
# /review/history/{object_type}/{object_id}: the reviewable kinds and the id each names.
REVIEWED_KINDS = {"account": "account_id", "ad_group": "ad_group_id", "creative": "creative_id"}
MUTATING = frozenset({"post", "put", "patch", "delete"})
_unique = itertools.count(1)


def is_success(response: Response) -> bool:
    return 200 <= response.status_code < 300


def body_of(response: Response) -> Any:
    """JSON when the response is JSON, else the raw bytes: what a snapshot compares."""
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.content


# ---------- a partner that answers without a network ----------


class RecordingConnector:
    """Stands in for Adjust's report API (a third party): answers with no rows and remembers each pull."""

    partner: ClassVar[str] = "adjust"
    pulls: ClassVar[list[str]] = []

    def fetch(self, *, token: str, binding: BindingSettings, date_from: date, date_to: date) -> list[PulledRow]:
        self.pulls.append(binding.app_token)
        return []


def recording_connector_factory(partner: str) -> RecordingConnector:
    return RecordingConnector()


# ---------- tenants ----------


@dataclass
class Tenant:
    """An account with one object of every kind. `label` is written into every name, remark and file name,
    so a response that leaks any of them is caught by a text search."""

    label: str
    actor: Actor  # who acts for the account: its own user, or the agency for a sub-account
    account_id: int
    ids: dict[str, list[int]] = field(default_factory=dict)
    media_urls: list[str] = field(default_factory=list)

    def id(self, kind: str) -> int:
        return self.ids[kind][0]

    def ghost(self) -> Tenant:
        """The same tenant with every id replaced by one nobody has: what a foreign id must answer like."""
        return Tenant(
            label=self.label,
            actor=self.actor,
            account_id=MAX_ID,
            ids={kind: [MAX_ID] * len(ids) for kind, ids in self.ids.items()},
        )

    def shows_in(self, response: Response) -> bool:
        return self.label.lower().encode() in response.content.lower()


def build_tenant(api: Api, admin: Actor, actor: Actor, account_id: int, label: str) -> Tenant:
    """Everything an advertiser does, through the API: documents, an API key, media, an app with event
    mappings, an uploaded and a label audience, a campaign with an approved ad group, an approved and a
    rejected creative, money (top-up, top-up request with proof, credit line), a report job, and a partner
    connection with an app binding and a pull."""
    client = api.client
    tenant = Tenant(label=label, actor=actor, account_id=account_id)
    headers = actor.headers
    # A direct advertiser works in its own account; an agency names the sub-account.
    scope: dict[str, Any] = {} if actor.account_id == account_id else {"account_id": account_id}
    slug = label.lower()
    seed = int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)
    today = datetime.now(UTC).date()

    def post(path: str, status: int = 201, **kwargs: Any) -> Any:
        return expect(client.post(f"{API}{path}", headers=headers, **kwargs), status)

    def keep(kind: str, *values: int) -> None:
        tenant.ids.setdefault(kind, []).extend(values)

    keep("account_id", account_id)
    keep(
        "document_id",
        post(
            f"/accounts/{account_id}/documents",
            data={"kind": "business_license"},
            files={"file": (f"licence-{label}.pdf", io.BytesIO(PDF), "application/pdf")},
        )["id"],
    )
    keep(DOCUMENT_ACCOUNT, account_id)
    keep("key_id", post("/auth/api-keys", json={"name": f"{label} reporting key"})["id"])
    # The acting user and its sign-in (an agency's for a sub-account, which has no users of its own).
    keep("user_id", actor.user_id)
    keep(
        "session_id",
        next(s["id"] for s in expect(client.get(f"{API}/auth/sessions", headers=headers), 200) if s["current"]),
    )
    keep("invitation_id", post("/invitations", json={**scope, "email": f"colleague-{slug}@example.com"})["id"])

    form = {k: str(v) for k, v in scope.items()}
    image = post("/media", data=form, files={"file": (f"hero-{label}.png", png(1200, 628), "image/png")})
    icon = post("/media", data=form, files={"file": (f"icon-{label}.png", png(84, 84), "image/png")})
    keep("media_id", image["id"], icon["id"])
    tenant.media_urls += [image["url"], icon["url"]]

    package = f"com.{slug}.game"
    app = post("/apps", json={**scope, "package_name": package, "name": f"{label} Game", "partner": "adjust"})
    keep("app_id", app["id"])
    expect(
        client.put(
            f"{API}/apps/{app['id']}/event-mappings",
            headers=headers,
            json={"mappings": [{"source_name": f"{slug}_purchase", "event": "PURCHASE"}]},
        ),
        200,
    )

    uploaded = post(
        "/audiences/upload",
        content=id_file(gaids(1000, seed=seed)),
        params={**scope, "name": f"{label} payers", "region_code": "SG", "id_type": "gaid", "filename": f"{label}.txt"},
    )
    label_audience = post(
        "/audiences/labels",
        json={
            **scope,
            "name": f"{label} gamers",
            "region_code": "IN",
            "rule": {"conditions": [{"kind": "installed_apps", "packages": [package]}]},
        },
    )
    keep("audience_id", uploaded["audience"]["id"], label_audience["id"])

    campaign = post(
        "/campaigns",
        json={
            **scope,
            "objective": "performance",
            "name": f"{label} launch",
            "promotion_type": "app_download",
            "package_name": package,
        },
    )
    keep("campaign_id", campaign["id"])
    ad_group = post(
        "/ad-groups",
        json={
            "campaign_id": campaign["id"],
            "name": f"{label} interstitial",
            "placement_type": "interstitial",
            "bid_type": "cpc",
            "bid_micros": 150_000,
            "daily_budget_micros": 100_000_000,
            "time_zone": "Asia/Singapore",
            "targeting": {"countries": ["SG"], "include_audience_ids": [uploaded["audience"]["id"]]},
        },
    )
    keep("ad_group_id", ad_group["id"])
    post(f"/ad-groups/{ad_group['id']}/submit", 200)
    expect(
        client.post(f"{API}/ad-groups/{ad_group['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )

    creative_body = {
        "ad_group_id": ad_group["id"],
        "format": "interstitial_image",
        "materials": {
            "titles": [f"{label} moon base"],
            "descriptions": ["Free to play strategy"],
            "button_texts": ["Install"],
            "images": [image["id"]],
            "icon": icon["id"],
        },
        "click_url": f"https://play.google.com/store/apps/details?id={package}",
    }
    for name, decision in (
        (f"{label} hero", {"decision": "approve"}),
        (f"{label} blurry", {"decision": "reject", "reasons": [f"{label} logo is blurry"]}),
    ):
        creative = post("/creatives", json={**creative_body, "name": name})
        keep("creative_id", creative["id"])
        post(f"/creatives/{creative['id']}/submit", 200)
        expect(client.post(f"{API}/creatives/{creative['id']}/review", headers=admin.headers, json=decision), 200)

    expect(
        client.post(
            f"{API}/finance/top-ups",
            headers=admin.headers,
            json={"account_id": account_id, "amount_micros": 500_000_000, "remarks": f"{label} opening wire"},
        ),
        201,
    )
    request = post(
        "/finance/top-up-requests",
        data={"account_id": str(account_id), "amount_micros": "250000000", "remarks": f"{label} wire 7781"},
        files={"file": (f"receipt-{label}.png", png(40, 40), "image/png")},
    )
    keep("request_id", request["id"])
    keep("line_id", grant_credit_line(api, admin, account_id, f"{label} postpay contract"))

    job_scope = {"account_ids": [account_id]} if scope else {}
    job = post(
        "/reports/jobs",
        202,
        json={
            **job_scope,
            "start_date": (today - timedelta(days=7)).isoformat(),
            "end_date": today.isoformat(),
            "dimensions": ["campaign"],
        },
    )
    assert expect(client.get(f"{API}/reports/jobs/{job['id']}", headers=headers), 200)["status"] == "done"
    keep("job_id", job["id"])

    connection = post("/connectors", json={**scope, "name": f"{label} Adjust", "api_token": f"token-{slug}-0001"})
    keep("connection_id", connection["id"])
    binding = post(
        f"/connectors/{connection['id']}/apps",
        json={
            "app_token": f"{slug[:20]}app",
            "app_name": f"{label} Game",
            "package_name": package,
            "utc_offset": "+08:00",
        },
    )
    keep("binding_id", binding["id"])
    post(f"/connectors/{connection['id']}/pull", 200, json={})

    keep(
        "endpoint_id",
        post("/webhooks", json={**scope, "url": f"https://hooks.example.com/{slug}", "description": f"{label} hooks"})[
            "id"
        ],
    )
    # The review decisions above reached the acting user (an agency hears of its sub-accounts).
    told = expect(client.get(f"{API}/notifications", headers=headers, params={"limit": 500}), 200)
    keep("notification_id", next(n["id"] for n in told if n["account_id"] == account_id))
    return tenant


def grant_credit_line(api: Api, admin: Actor, account_id: int, remarks: str) -> int:
    today = datetime.now(UTC).date()
    line = expect(
        api.client.post(
            f"{API}/finance/credit-lines",
            headers=admin.headers,
            json={
                "account_id": account_id,
                "limit_micros": 1_000_000_000,
                "starts_on": (today - timedelta(days=10)).isoformat(),
                "ends_on": (today + timedelta(days=20)).isoformat(),
                "remarks": remarks,
            },
        ),
        201,
    )
    return int(line["id"])


# ---------- the platform catalogue an operator keeps ----------


def build_catalogue(api: Api, admin: Actor) -> dict[str, Any]:
    """One row of every operator-kept list, made by an admin; the values catalogue path parameters take."""
    client, headers = api.client, admin.headers
    n = next(_unique)
    rule = expect(
        client.post(
            f"{API}/settlement-rules",
            headers=headers,
            json={
                "country": "FJ",
                "entity": "Xiaomi Singapore",
                "currency": "USD",
                "contract_version": "Xiaomi Singapore universal version",
            },
        ),
        201,
    )
    publisher = expect(
        client.post(
            f"{API}/publishers",
            headers=headers,
            json={"name": f"Catalogue publisher {n}", "app_package": f"com.catalogue.pub{n}", "country": "SG"},
        ),
        201,
    )
    ad_space = expect(
        client.post(
            f"{API}/ad-spaces",
            headers=headers,
            json={
                "publisher_id": publisher["id"],
                "name": f"Catalogue slot {n}",
                "placement_type": "interstitial",
                "accepted_formats": ["interstitial_image"],
            },
        ),
        201,
    )
    expect(client.put(f"{API}/device-populations/FJ", headers=headers, json={"daily_active_devices": 250_000}), 200)
    region = expect(
        client.post(f"{API}/audiences/regions", headers=headers, json={"code": f"FJ{n}", "name": f"Fiji cluster {n}"}),
        201,
    )
    category = expect(
        client.put(
            f"{API}/audiences/package-categories",
            headers=headers,
            json={"package": f"com.catalogue.pub{n}", "category": "games"},
        ),
        200,
    )
    expect(client.put(f"{API}/fx-rates/INR", headers=headers, json={"units_per_usd": "83.25"}), 200)
    return {
        "rule_id": rule["id"],
        "publisher_id": publisher["id"],
        "ad_space_id": ad_space["id"],
        "country": "FJ",
        "region_id": region["id"],
        "row_id": category["id"],
        "currency": "INR",
        "code": "interstitial_image",
        "partner": "adjust",
    }


def catalogue_reads(catalogue: dict[str, Any]) -> list[str]:
    """What an admin reads to tell whether the catalogue changed."""
    return [
        f"{API}/settlement-rules",
        f"{API}/publishers/{catalogue['publisher_id']}",
        f"{API}/ad-spaces/{catalogue['ad_space_id']}",
        f"{API}/device-populations/{catalogue['country']}",
        f"{API}/audiences/regions",
        f"{API}/audiences/package-categories?q=com.catalogue",
        f"{API}/fx-rates",
    ]


# ---------- the route table ----------


@dataclass(frozen=True)
class Operation:
    method: str  # lower case, as in the OpenAPI document
    template: str
    params: tuple[str, ...]
    has_body: bool

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.template}"

    @property
    def mutates(self) -> bool:
        return self.method in MUTATING

    @property
    def tenant_owned(self) -> bool:
        return bool(TENANT_PARAMS & set(self.params))

    @property
    def catalogue_owned(self) -> bool:
        return bool(self.params) and not self.tenant_owned


def operations(openapi: dict[str, Any]) -> list[Operation]:
    """Every /api/v1 operation of the OpenAPI document. The public ad, tracking, postback and media-file
    endpoints live outside /api/v1: signatures and unguessable keys protect them, not tenancy."""
    found = []
    for template, item in openapi["paths"].items():
        if not template.startswith(f"{API}/"):
            continue
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                params = tuple(p["name"] for p in operation.get("parameters", []) if p["in"] == "path")
                found.append(Operation(method, template, params, "requestBody" in operation))
    return found


def unmapped(operation: Operation) -> set[str]:
    return set(operation.params) - TENANT_PARAMS - CATALOGUE_PARAMS


def paths_for(operation: Operation, ids: dict[str, list[int]], catalogue: dict[str, Any]) -> Iterator[str]:
    """Concrete paths: the template filled with every combination of the objects its parameters name."""
    if "object_type" in operation.params:
        for kind, id_param in REVIEWED_KINDS.items():
            for object_id in ids[id_param]:
                yield operation.template.format(object_type=kind, object_id=object_id)
        return
    if set(operation.params) == {"account_id", "document_id"} and DOCUMENT_ACCOUNT in ids:
        # A document is named under its own account: each with its account, not every account with every document.
        for account_id, document_id in zip(ids[DOCUMENT_ACCOUNT], ids["document_id"], strict=True):
            yield operation.template.format(account_id=account_id, document_id=document_id)
        return
    choices = [ids[p] if p in TENANT_PARAMS else [catalogue[p]] for p in operation.params]
    for values in itertools.product(*choices):
        yield operation.template.format(**dict(zip(operation.params, values, strict=True)))


def missing_path(operation: Operation, catalogue: dict[str, Any]) -> str:
    """The template with every tenant object replaced by an id nobody has: the answer to compare with."""
    ids = {p: [MAX_ID] for p in TENANT_PARAMS}
    return next(paths_for(operation, ids, catalogue))


# ---------- request bodies ----------

RequestArgs = dict[str, Any]
BodyFor = Callable[["Tenant"], RequestArgs]


def _gaid_file(home: Tenant) -> RequestArgs:
    return {
        "content": id_file(gaids(1000, seed=7_000 + home.account_id)),
        "params": {"mode": "append"},
        "headers": {"content-type": "text/plain"},
    }


# A body the handler accepts, so a request stops at the tenancy check and nowhere before it. The argument is
# the caller's own tenant, for bodies that point at the caller's objects (e.g. copy into my campaign).
BODIES: dict[str, BodyFor] = {
    "PATCH /api/v1/accounts/{account_id}": lambda home: {"json": {"contact_name": "Intruder"}},
    "POST /api/v1/accounts/{account_id}/review": lambda home: {"json": {"decision": "approve"}},
    "POST /api/v1/accounts/{account_id}/documents": lambda home: {
        "data": {"kind": "other"},
        "files": {"file": ("planted.pdf", io.BytesIO(PDF), "application/pdf")},
    },
    "PUT /api/v1/accounts/{account_id}/documents/{document_id}": lambda home: {
        "data": {"kind": "other"},
        "files": {"file": ("swapped.pdf", io.BytesIO(PDF), "application/pdf")},
    },
    "PUT /api/v1/users/{user_id}/account-role": lambda home: {"json": {"account_role": "viewer"}},
    "PATCH /api/v1/campaigns/{campaign_id}": lambda home: {"json": {"name": "Hijacked campaign"}},
    "POST /api/v1/campaigns/{campaign_id}/copy": lambda home: {"json": {"name": "Stolen campaign", "deep": True}},
    "PATCH /api/v1/ad-groups/{ad_group_id}": lambda home: {
        "json": {"name": "Hijacked ad group", "bid_micros": 1_000_000}
    },
    "POST /api/v1/ad-groups/{ad_group_id}/review": lambda home: {"json": {"decision": "approve"}},
    "POST /api/v1/ad-groups/{ad_group_id}/copy": lambda home: {
        "json": {"campaign_id": home.id("campaign_id"), "name": "Stolen ad group", "deep": True}
    },
    "PATCH /api/v1/creatives/{creative_id}": lambda home: {"json": {"name": "Hijacked creative"}},
    "POST /api/v1/creatives/{creative_id}/status": lambda home: {"json": {"status": "paused"}},
    "POST /api/v1/creatives/{creative_id}/review": lambda home: {"json": {"decision": "approve"}},
    "PATCH /api/v1/apps/{app_id}": lambda home: {"json": {"name": "Hijacked app", "click_lookback_days": 1}},
    "PUT /api/v1/apps/{app_id}/event-mappings": lambda home: {
        "json": {"mappings": [{"source_name": "planted", "event": "PURCHASE"}]}
    },
    "PATCH /api/v1/audiences/{audience_id}": lambda home: {"json": {"name": "Hijacked audience"}},
    "POST /api/v1/audiences/{audience_id}/upload": _gaid_file,
    # Port 9 refuses at once; only a handler that skipped the tenancy check would try it.
    "POST /api/v1/audiences/{audience_id}/import": lambda home: {
        "json": {"url": "http://127.0.0.1:9/ids.txt", "mode": "reduce"}
    },
    "POST /api/v1/finance/top-up-requests/{request_id}/reject": lambda home: {"json": {"reason": "forged"}},
    "POST /api/v1/finance/credit-lines/{line_id}/renew": lambda home: {
        "json": {"ends_on": (datetime.now(UTC).date() + timedelta(days=120)).isoformat()}
    },
    "PATCH /api/v1/connectors/{connection_id}": lambda home: {"json": {"name": "Hijacked", "status": "disabled"}},
    "POST /api/v1/connectors/{connection_id}/apps": lambda home: {"json": {"app_token": "planted1"}},
    "PATCH /api/v1/connectors/apps/{binding_id}": lambda home: {"json": {"enabled": False}},
    "POST /api/v1/connectors/{connection_id}/pull": lambda home: {"json": {}},
    # Catalogue rows: the same edits an operator would make.
    "PATCH /api/v1/publishers/{publisher_id}": lambda home: {"json": {"name": "Renamed by a tenant"}},
    "PATCH /api/v1/ad-spaces/{ad_space_id}": lambda home: {"json": {"reserve_price_micros": 1}},
    "PUT /api/v1/device-populations/{country}": lambda home: {"json": {"daily_active_devices": 1}},
    "PUT /api/v1/fx-rates/{currency}": lambda home: {"json": {"units_per_usd": "1"}},
}


def request_args(operation: Operation, home: Tenant) -> RequestArgs:
    body = BODIES.get(operation.name)
    if body is not None:
        return body(home)
    return {"json": {}} if operation.has_body else {}
