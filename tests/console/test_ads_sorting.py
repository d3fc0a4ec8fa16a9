"""The ad list's headers sort on the server (ascending, then descending) and keep the page's filters, columns and
date range; agencies and staff see each row's account."""

from __future__ import annotations

import html as htmllib
import re
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.campaigns.helpers import ad_group, approved_ad_group, campaign, creative
from tests.console.support import sign_in
from tests.support import Api


def _names(page: str, level: str) -> list[str]:
    return re.findall(rf'id="row-{level}-\d+"[\s\S]*?data-name>([^<]*)</a>', page)


def _header(page: str, key: str) -> str:
    match = re.search(rf'<th[^>]*data-sort="{key}"[^>]*>[\s\S]*?</th>', page)
    assert match, f"no sortable {key} header"
    return match.group(0)


def _link(header: str) -> str:
    match = re.search(r'href="([^"]*)"', header)
    assert match
    return htmllib.unescape(match.group(1))


def test_headers_sort_both_ways_and_keep_the_query(client: TestClient, api: Api) -> None:
    adv = api.approved_account(email="sorting@example.com")
    camp = campaign(api, adv)
    for name, bid in (("Bravo", 300_000), ("Alpha", 100_000), ("Charlie", 200_000)):
        ad_group(api, adv, camp["id"], name=name, bid_micros=bid)
    sign_in(client, "sorting@example.com", "correct horse battery")
    first = client.get("/console/ads/ad-groups", params=[("cols", "clicks"), ("range", "30d"), ("q", "a")])
    assert first.status_code == 200
    name_header = _header(first.text, "name")
    assert "aria-sort" not in name_header
    url = _link(name_header)
    assert "cols=clicks" in url and "range=30d" in url and "q=a" in url
    ascending = client.get(url)
    assert _names(ascending.text, "ad-groups") == ["Alpha", "Bravo", "Charlie"]
    assert 'aria-sort="ascending"' in _header(ascending.text, "name")
    assert 'data-column="clicks"' in ascending.text
    descending = client.get(_link(_header(ascending.text, "name")))
    assert _names(descending.text, "ad-groups") == ["Charlie", "Bravo", "Alpha"]
    assert 'aria-sort="descending"' in _header(descending.text, "name")
    by_bid = client.get(_link(_header(descending.text, "bid")))
    assert _names(by_bid.text, "ad-groups") == ["Alpha", "Charlie", "Bravo"]
    assert "aria-sort" not in _header(by_bid.text, "name")
    # Only one header is marked sorted at a time.
    assert by_bid.text.count("aria-sort=") == 1
    # Advertisers see only their own account: no account column.
    assert 'data-column="account"' not in by_bid.text


def test_agencies_see_each_rows_account(client: TestClient, api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency", email="agency-list@example.com")
    first = api.sub_account(agency, admin, company_name="First Sub Ltd.")
    second = api.sub_account(agency, admin, company_name="Second Sub Ltd.")
    made = {
        campaign(api, agency, account_id=first, name="Of first")["id"]: "First Sub Ltd.",
        campaign(api, agency, account_id=second, name="Of second")["id"]: "Second Sub Ltd.",
    }
    sign_in(client, "agency-list@example.com", "correct horse battery")
    page = client.get("/console/ads/campaigns")
    assert page.status_code == 200
    assert re.search(r'<th data-column="account">Account</th>', page.text)
    for campaign_id, company in made.items():
        row = page.text.split(f'id="row-campaigns-{campaign_id}"', 1)[1].split("</tr>", 1)[0]
        assert f'data-column="account">{company}</td>' in row


def test_metric_headers_sort_by_the_figures_of_the_chosen_range(
    client: TestClient, api: Api, settings: Settings
) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="metric-sort@example.com")
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"])
    made = {name: creative(api, adv, group["id"], name=name)["id"] for name in ("Few", "Many", "Old")}
    now = utcnow()
    events: list[Event] = []
    # Within 7 days: Many 5 clicks, Few 2, Old 1; 20 days ago Old gets 9 more.
    for name, count, days_ago in (("Many", 5, 0), ("Few", 2, 0), ("Old", 1, 0), ("Old", 9, 20)):
        for _ in range(count):
            events.append(
                Event(
                    event_id=uuid.uuid4().hex,
                    event_type=EventType.CLICK,
                    occurred_at=now - timedelta(days=days_ago, minutes=5),
                    account_id=adv.account_id or 0,
                    campaign_id=camp["id"],
                    ad_group_id=group["id"],
                    creative_id=made[name],
                    placement_type="banner",
                    country="ID",
                )
            )
    store = get_event_store(settings)
    store.append(events)
    store.flush()
    sign_in(client, "metric-sort@example.com", "correct horse battery")
    page = client.get("/console/ads/creatives", params=[("cols", "clicks"), ("range", "7d")])
    header = _header(page.text, "clicks")
    week = client.get(_link(header))
    assert 'aria-sort="ascending"' in _header(week.text, "clicks")
    assert _names(week.text, "creatives") == ["Old", "Few", "Many"]
    week_desc = client.get(_link(_header(week.text, "clicks")))
    assert _names(week_desc.text, "creatives") == ["Many", "Few", "Old"]
    # The same sort over 30 days counts Old's earlier clicks.
    month = client.get(_link(_header(week_desc.text, "clicks")).replace("range=7d", "range=30d"))
    assert _names(month.text, "creatives") == ["Few", "Many", "Old"]
    month_desc = client.get(_link(_header(month.text, "clicks")))
    assert _names(month_desc.text, "creatives") == ["Old", "Many", "Few"]
    # Pages slice the ranked list.
    second = client.get(_link(_header(month.text, "clicks")) + "&size=20&page=2")
    assert _names(second.text, "creatives") == []


def test_agencies_filter_the_list_by_account(client: TestClient, api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency", email="agency-filter@example.com")
    first = api.sub_account(agency, admin, company_name="Filter One Ltd.")
    second = api.sub_account(agency, admin, company_name="Filter Two Ltd.")
    mine = campaign(api, agency, account_id=first, name="Of first")["id"]
    other = campaign(api, agency, account_id=second, name="Of second")["id"]
    outsider = api.approved_account(admin, email="outsider@example.com")
    campaign(api, outsider, name="Not theirs")
    sign_in(client, "agency-filter@example.com", "correct horse battery")
    page = client.get("/console/ads/campaigns")
    select = page.text.split('<select id="account_id"', 1)[1].split("</select>", 1)[0]
    assert f'value="{first}"' in select and f'value="{second}"' in select
    assert f'value="{outsider.account_id}"' not in select
    only = client.get("/console/ads/campaigns", params={"account_id": str(first)})
    assert f'id="row-campaigns-{mine}"' in only.text and f'id="row-campaigns-{other}"' not in only.text
    assert f'<option value="{first}" selected>' in only.text
    # Someone else's account is refused, not shown and not an error page of the server.
    refused = client.get("/console/ads/campaigns", params={"account_id": str(outsider.account_id)})
    assert 400 <= refused.status_code < 500 and "Not theirs" not in refused.text
