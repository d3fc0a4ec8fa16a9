"""The ad list and the campaign, ad group and creative pages offer their write buttons (new, edit, pause, copy,
delete, submit, batch) only to the roles whose presses the console's routes accept: each role reads the three list
levels and the three pages of one advertiser's ads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from adstack.accounts.models import Role
from adstack.app import create_app
from adstack.core.bootstrap import seed
from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from tests.campaigns.helpers import ad_group, campaign, creative
from tests.conftest import empty_all_tables
from tests.console.support import csrf_from, sign_in
from tests.support import Api, expect

CONSOLE = "/console"
LEVELS = ("campaigns", "ad-groups", "creatives")
# Who may edit an advertiser's ads (accounts/permissions.py, OPERATE): written out here, not read from there.
WRITERS = {"admin", "on-behalf operator", "owner", "operator"}
READERS = {"reviewer", "account manager", "viewer"}


@dataclass
class Pages:
    html: dict[tuple[str, str], str]  # (role, level) -> the list page
    detail: dict[tuple[str, str], str]  # (role, level) -> the object's own page
    ids: dict[str, int]  # level -> the one object of that level
    clients: dict[str, TestClient]


@pytest.fixture(scope="module")
def pages(engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    seed(engine)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("list-buttons"),
        database_url=database_url,
        secret_key="test-secret-key",
        environment="test",
        public_base_url="http://testserver",
    )
    try:
        with (
            TestClient(create_app(settings), raise_server_exceptions=False) as client,
            make_session_factory(engine)() as session,
        ):
            api = Api(client, session)
            admin = api.admin()
            on_behalf = api.admin(Role.REVIEWER)
            expect(
                client.put(
                    f"/api/v1/users/{on_behalf.user_id}/on-behalf", headers=admin.headers, json={"granted": True}
                ),
                200,
            )
            owner = api.approved_account(admin)
            actors = {
                "admin": admin,
                "reviewer": api.admin(Role.REVIEWER),
                "account manager": api.admin(Role.ACCOUNT_MANAGER),
                "on-behalf operator": on_behalf,
                "owner": owner,
                "operator": api.member(owner, "operator"),
                "viewer": api.member(owner, "viewer"),
            }
            made = campaign(api, owner)
            group = ad_group(api, owner, made["id"])
            ids = {
                "campaigns": made["id"],
                "ad-groups": group["id"],
                "creatives": creative(api, owner, group["id"])["id"],
            }
            clients: dict[str, TestClient] = {}
            html: dict[tuple[str, str], str] = {}
            detail: dict[tuple[str, str], str] = {}
            for role, actor in actors.items():
                role_client = TestClient(client.app, raise_server_exceptions=False)
                password = (
                    "admin-password"
                    if actor.account_id is None
                    else ("correct horse battery" if role == "owner" else "colleague password 1")
                )
                assert sign_in(role_client, actor.email, password).status_code == 303, role
                clients[role] = role_client
                for level in LEVELS:
                    page = role_client.get(f"{CONSOLE}/ads/{level}")
                    assert page.status_code == 200, (role, level, page.text[-500:])
                    assert f'id="row-{level}-{ids[level]}"' in page.text, (role, level)  # every role reads it
                    html[role, level] = page.text
                    own = role_client.get(f"{CONSOLE}/ads/{level}/{ids[level]}")
                    assert own.status_code == 200, (role, level, own.text[-500:])
                    detail[role, level] = own.text
            yield Pages(html, detail, ids, clients)
    finally:
        empty_all_tables(engine)


def _buttons(html: str, level: str, object_id: int) -> set[str]:
    """The write controls a list page shows, by name."""
    row = re.search(rf'<tr id="row-{level}-{object_id}".*?</tr>', html, re.S)
    assert row is not None
    cells = row.group(0)
    found = {
        "new campaign": 'id="new-campaign"' in html,
        "batch": 'id="batch-form"' in html or "data-check-all" in html,
        "select": 'name="ids"' in cells,
        "edit": "data-quick-edit" in cells,
        "pause": 'value="pause"' in cells or 'value="enable"' in cells,
        "copy": "data-quick-copy" in cells,
        "delete": 'value="delete"' in cells,
    }
    return {name for name, shown in found.items() if shown}


ALL = {"new campaign", "batch", "select", "edit", "pause", "copy", "delete"}


@pytest.mark.parametrize("role", sorted(WRITERS | READERS))
@pytest.mark.parametrize("level", LEVELS)
def test_write_buttons_are_shown_exactly_to_who_may_press_them(pages: Pages, role: str, level: str) -> None:
    shown = _buttons(pages.html[role, level], level, pages.ids[level])
    assert shown == (ALL if role in WRITERS else set()), f"{role} on {level}: {sorted(shown)}"


@pytest.mark.parametrize("role", sorted(READERS))
def test_what_is_hidden_would_be_refused(pages: Pages, role: str) -> None:
    """The hidden buttons are hidden because their routes refuse the role, not by a rule of the page's own."""
    client = pages.clients[role]
    token = csrf_from(client.get(f"{CONSOLE}/notifications").text)
    group_id = pages.ids["ad-groups"]
    for url in (f"{CONSOLE}/ads/ad-groups/{group_id}/copy", f"{CONSOLE}/ads/ad-groups/batch"):
        refused = client.post(
            url, data={"csrf_token": token, "ids": str(group_id), "action": "pause"}, follow_redirects=False
        )
        assert refused.status_code == 403, (role, url, refused.status_code)
    assert client.get(f"{CONSOLE}/ads/ad-groups/{group_id}/quick-edit").status_code == 403


# The write controls of each object's page, by the address they lead or post to.
PAGE_CONTROLS = {
    "campaigns": {
        "edit": '/edit"',
        "new ad group": 'id="new-ad-group"',
        "copy": "data-quick-copy",
        "deep copy": "data-deep-copy",
    },
    "ad-groups": {
        "edit": '/edit"',
        "new creative": 'id="new-creative"',
        "copy": "data-quick-copy",
        "deep copy": "data-deep-copy",
        "submit": 'id="submit-for-review"',
        "pause": 'value="pause"',
        "delete": 'value="delete"',
    },
    "creatives": {"edit": '/edit"', "copy": "data-quick-copy", "submit": '/submit"', "delete": 'value="delete"'},
}


@pytest.mark.parametrize("role", sorted(WRITERS | READERS))
@pytest.mark.parametrize("level", LEVELS)
def test_object_pages_show_their_write_buttons_exactly_to_who_may_press_them(
    pages: Pages, role: str, level: str
) -> None:
    page = pages.detail[role, level]
    shown = {name for name, marker in PAGE_CONTROLS[level].items() if marker in page}
    assert shown == (set(PAGE_CONTROLS[level]) if role in WRITERS else set()), f"{role} on {level}: {sorted(shown)}"


@pytest.mark.parametrize(
    ("scopes", "may_write"),
    [(None, True), (frozenset({"read"}), False), (frozenset({"finance"}), False), (frozenset({"write"}), True)],
)
def test_a_read_only_key_would_see_no_write_button(scopes: frozenset[str] | None, may_write: bool) -> None:
    """The console signs in with passwords only, but the check a page asks is the route's own, key scopes
    included: an owner acting through a read-only key is offered no write."""
    from adstack.accounts.models import Principal
    from adstack.console.web import Visitor

    owner = Principal(
        user_id=1,
        email="o@example.com",
        role="advertiser",
        account_id=1,
        client="console",
        account_role="owner",
        scopes=scopes,
    )
    visitor = Visitor(
        request=None,
        session=None,
        settings=None,
        language="en",
        csrf_token="",  # type: ignore[arg-type]
        principal=owner,
    )
    for method, path in (
        ("POST", "/ads/ad-groups/5/copy"),
        ("POST", "/ads/campaigns/batch"),
        ("GET", "/ads/creatives/5/quick-edit"),
        ("GET", "/ads/new"),
    ):
        assert visitor.may(method, path) is may_write, (method, path, scopes)
    assert visitor.may("GET", "/ads/campaigns") is True  # reading is every scope's
