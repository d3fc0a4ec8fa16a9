"""Partner data through the console: an Adjust account, a bound app, pulls and the partner's reasons for failing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.connectors.models import SETTINGS_MATCH_NOTICE, PartnerConnection
from adstack.console.pages.connectors import SETTINGS_NOTICE
from tests.connectors.fake_adjust import FakeAdjust, days_back
from tests.console.support import csrf_from, post_form, register

TOKEN = "adj-token-0123456789abcdef"
APP_TOKEN = "abc123xyz"


@pytest.fixture
def fake_adjust(client: TestClient) -> Iterator[FakeAdjust]:
    rows = [
        {
            "day": days_back(1),
            "campaign": "Spring push",
            "country_code": country,
            "installs": installs,
            "network_cost": "10.50",
            "all_revenue": "12.00",
        }
        for country, installs in (("ID", 120), ("IN", 80), ("BR", 7))
    ]
    server = FakeAdjust.single(TOKEN, {APP_TOKEN: rows}).start()
    client.app.state.settings.adjust_api_url = server.url  # type: ignore[attr-defined]
    client.app.state.settings.outbound_allowed_networks = "127.0.0.1/32"  # type: ignore[attr-defined]
    yield server
    server.stop()


def _add_connection(client: TestClient, token: str = TOKEN, name: str = "Adjust main") -> str:
    """Posts the add form and returns the connection page's path."""
    created = post_form(client, "/console/connectors", "/console/connectors", {"name": name, "api_token": token})
    assert created.status_code == 303, created.text[-1500:]
    location = created.headers["location"]
    assert re.fullmatch(r"/console/connectors/\d+\?notice=created", location)
    return location.split("?")[0]


def _bind(client: TestClient, page: str, app_token: str = APP_TOKEN) -> None:
    bound = post_form(
        client,
        page,
        f"{page}/apps",
        {
            "app_token": app_token,
            "app_name": "Example Game",
            "utc_offset": "+08:00",
            "attribution_types": "impression",
            "attribution_source": "first",
            "reattributed": "false",
            "ad_revenue_sources": "applovin_max_sdk",
            "ad_spend_mode": "network",
            "currency": "EUR",
        },
    )
    assert bound.status_code == 303, bound.text[-1500:]


def _pull(client: TestClient, page: str) -> str:
    pulled = post_form(client, page, f"{page}/pull")
    assert pulled.status_code == 303
    shown = client.get(page)
    assert shown.status_code == 200
    return shown.text


def test_added_account_shows_only_the_masked_token(client: TestClient, session: Session) -> None:
    register(client, 71)
    form = client.get("/console/connectors")
    assert 'name="api_token" type="password"' in form.text and 'data-nav="connectors"' in form.text
    page = _add_connection(client)
    stored = session.scalars(select(PartnerConnection)).one()
    assert TOKEN not in stored.token_ciphertext
    for url in ("/console/connectors", page):
        html = client.get(url).text
        assert TOKEN not in html
        assert f'<code class="token-hint">{stored.token_hint}</code>' in html
        assert stored.token_hint.endswith(TOKEN[-4:])


def test_refused_token_is_not_echoed_back(client: TestClient, session: Session) -> None:
    register(client, 72)
    refused = post_form(client, "/console/connectors", "/console/connectors", {"name": "", "api_token": "secret7"})
    assert refused.status_code == 422
    assert 'data-error-for="name"' in refused.text and 'data-error-for="api_token"' in refused.text
    assert "secret7" not in refused.text
    assert session.scalars(select(PartnerConnection)).all() == []


def test_bind_shows_settings_and_notice_then_pull_counts_rows(client: TestClient, fake_adjust: FakeAdjust) -> None:
    register(client, 73)
    page = _add_connection(client)
    before = client.get(page).text
    assert 'id="settings-notice"' in before and SETTINGS_MATCH_NOTICE in before
    _bind(client, page)
    html = client.get(page).text
    row = html.split(f"<td><code>{APP_TOKEN}</code></td>")[1].split("</tr>")[0]
    for shown in (
        "Example Game",
        "+08:00",
        "<td>impression</td>",
        "<td>first</td>",
        "<td>false</td>",
        "applovin_max_sdk",
        "<td>network</td>",
        "<td>EUR</td>",
    ):
        assert shown in row
    assert "No successful pull yet." in before

    html = _pull(client, page)
    run = html.split('id="runs"')[1]
    assert 'data-status="succeeded"' in run
    assert re.search(r'<td class="run-rows">3</td>', run)
    assert 'id="pull-error"' not in html
    params = fake_adjust.requests[-1]["params"]
    assert (params["utc_offset"], params["attribution_types"], params["currency"]) == ("+08:00", "impression", "EUR")
    # The last pull's rows as Adjust sent them: labels, whole country codes, currency, cohort maturity.
    pulled = html.split('id="pulled-rows"')[1].split("</table>")[0]
    assert pulled.count('data-label="Spring push"') == 3 and "<td>ID</td>" in pulled and "<td>EUR</td>" in pulled
    assert "immature" in pulled


def test_bad_token_shows_the_partners_401_reason(client: TestClient, fake_adjust: FakeAdjust) -> None:
    register(client, 74)
    page = _add_connection(client, token="wrong-token-000")
    _bind(client, page)
    html = _pull(client, page)
    box = html.split('id="pull-error"')[1].split("</div>\n</div>")[0]
    assert "401" in box and "API token" in box
    assert 'data-status="failed"' in html


def test_foreign_app_token_shows_the_partners_403_reason(client: TestClient, fake_adjust: FakeAdjust) -> None:
    register(client, 75)
    page = _add_connection(client)
    _bind(client, page)
    _bind(client, page, app_token="notmine99")
    html = _pull(client, page)
    box = html.split('id="pull-error"')[1]
    assert re.search(r'data-error="binding"><code>notmine99</code>: [^<]*403', box)
    assert re.search(r'<td class="run-rows">3</td>', html)  # the owned app still pulled


def test_bind_refusal_names_the_field(client: TestClient) -> None:
    register(client, 76)
    page = _add_connection(client)
    refused = post_form(
        client,
        page,
        f"{page}/apps",
        {
            "app_token": "ab",
            "utc_offset": "+25:00",
            "attribution_types": "click",
            "attribution_source": "first",
            "currency": "euro",
        },
    )
    assert refused.status_code == 422
    for field in ("app_token", "utc_offset", "currency"):
        assert f'data-error-for="{field}"' in refused.text


def test_another_tenants_connection_is_not_found(client: TestClient) -> None:
    register(client, 77)
    page = _add_connection(client)
    stranger = TestClient(client.app)
    register(stranger, 78)
    assert stranger.get(page).status_code == 404
    token = csrf_from(stranger.get("/console/connectors").text)
    for action in ("apps", "pull"):
        refused = stranger.post(
            f"{page}/{action}", data={"csrf_token": token, "app_token": APP_TOKEN}, follow_redirects=False
        )
        assert refused.status_code == 404
    assert page not in stranger.get("/console/connectors").text


def test_posts_without_the_csrf_token_are_refused(client: TestClient, session: Session) -> None:
    register(client, 79)
    refused = client.post("/console/connectors", data={"name": "x", "api_token": TOKEN}, follow_redirects=False)
    assert refused.status_code == 403
    page = _add_connection(client)
    for action in ("apps", "pull"):
        assert client.post(f"{page}/{action}", data={"app_token": APP_TOKEN}, follow_redirects=False).status_code == 403
    assert len(session.scalars(select(PartnerConnection)).all()) == 1


def test_the_settings_notice_is_translated_and_kept_equal_to_the_domains(client: TestClient) -> None:
    assert SETTINGS_NOTICE == SETTINGS_MATCH_NOTICE
    register(client, 80)
    page = _add_connection(client)
    client.cookies.set("adstack_lang", "zh")
    html = client.get(page).text
    notice = html.split('id="settings-notice" role="note">')[1].split("</div>")[0]
    assert "Adjust" in notice and SETTINGS_MATCH_NOTICE not in notice and "归因" in notice
    assert "合作方数据" in html  # the navigation entry


def _binding_id(client: TestClient, page: str, app_token: str = APP_TOKEN) -> int:
    html = client.get(page).text
    found = re.search(rf'<tr data-binding="(\d+)" data-enabled="\w+"><td><code>{app_token}</code>', html)
    assert found, "the bound app is not listed"
    return int(found.group(1))


def _binding_row(client: TestClient, page: str, binding_id: int) -> str:
    return client.get(page).text.split(f'<tr data-binding="{binding_id}"')[1].split("</tr>")[0]


def test_a_binding_is_disabled_and_enabled_again(client: TestClient, fake_adjust: FakeAdjust) -> None:
    register(client, 81)
    page = _add_connection(client)
    _bind(client, page)
    binding = _binding_id(client, page)
    assert 'data-enabled="true"' in _binding_row(client, page, binding)

    disabled = post_form(client, page, f"{page}/apps/{binding}", {"enabled": "false"})
    assert disabled.status_code == 303
    assert disabled.headers["location"] == f"{page}?notice=saved#binding-{binding}"
    row = _binding_row(client, page, binding)
    assert 'data-enabled="false"' in row and "Example Game" in row and "+08:00" in row  # the rest is kept
    _pull(client, page)
    assert fake_adjust.requests == []  # a disabled app is not pulled

    enabled = post_form(client, page, f"{page}/apps/{binding}", {"enabled": "true"})
    assert enabled.status_code == 303
    assert 'data-enabled="true"' in _binding_row(client, page, binding)
    html = _pull(client, page)
    assert re.search(r'<td class="run-rows">3</td>', html)


def test_binding_settings_are_edited_and_refusals_name_the_field(client: TestClient) -> None:
    register(client, 82)
    page = _add_connection(client)
    _bind(client, page)
    binding = _binding_id(client, page)
    edited = post_form(
        client,
        page,
        f"{page}/apps/{binding}",
        {
            "app_name": "Example Game HD",
            "package_name": "com.example.hd",
            "utc_offset": "-05:00",
            "attribution_types_sent": "1",
            "attribution_types": "engaged_ad",
            "attribution_source": "dynamic",
            "reattributed": "true",
            "ad_revenue_sources": "",
            "ad_spend_mode": "",
            "enabled": "true",
        },
    )
    assert edited.status_code == 303
    row = _binding_row(client, page, binding)
    for shown in (
        "Example Game HD",
        "com.example.hd",
        "-05:00",
        "<td>engaged_ad</td>",
        "<td>dynamic</td>",
        "<td>true</td>",
        "<td>—</td>",
    ):
        assert shown in row
    assert "applovin_max_sdk" not in row

    refused = post_form(
        client,
        page,
        f"{page}/apps/{binding}",
        {"utc_offset": "+25:00", "enabled": "maybe", "reattributed": "sometimes"},
    )
    assert refused.status_code == 422
    editor = refused.text.split(f'id="binding-{binding}"')[1].split("</details>")[0]
    assert editor.startswith(" open")
    for field in ("utc_offset", "enabled", "reattributed"):
        assert f'data-error-for="{field}"' in editor
    assert 'value="+25:00"' in editor  # what was typed is kept
    assert "-05:00" in _binding_row(client, page, binding)


def test_another_tenants_binding_is_not_found(client: TestClient) -> None:
    register(client, 83)
    page = _add_connection(client)
    _bind(client, page)
    binding = _binding_id(client, page)
    stranger = TestClient(client.app)
    register(stranger, 84)
    own_page = _add_connection(stranger, name="Adjust other")
    token = csrf_from(stranger.get(own_page).text)
    for action in (f"{page}/apps/{binding}", f"{own_page}/apps/{binding}"):
        refused = stranger.post(action, data={"csrf_token": token, "enabled": "false"}, follow_redirects=False)
        assert refused.status_code == 404
    # Nor under another connection of the same tenant.
    second_page = _add_connection(client, name="Adjust second")
    assert post_form(client, second_page, f"{second_page}/apps/{binding}", {"enabled": "false"}).status_code == 404
    assert 'data-enabled="true"' in _binding_row(client, page, binding)


def test_binding_edits_without_the_csrf_token_are_refused(client: TestClient) -> None:
    register(client, 85)
    page = _add_connection(client)
    _bind(client, page)
    binding = _binding_id(client, page)
    refused = client.post(f"{page}/apps/{binding}", data={"enabled": "false"}, follow_redirects=False)
    assert refused.status_code == 403
    assert 'data-enabled="true"' in _binding_row(client, page, binding)
