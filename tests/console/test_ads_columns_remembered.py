"""The ad list's metric columns are remembered per user: a column set (basic, in-app, video) or ticked boxes come
back on the next visit without any query, for that user only."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from adstack.console.pages.reports import LIST_METRICS
from tests.campaigns.helpers import campaign
from tests.console.support import sign_in
from tests.support import Api

# The console's own table of each user's columns, the chosen columns in JSON: on PostgreSQL too.
pytestmark = pytest.mark.postgresql


def _columns(page: str) -> list[str]:
    head = page.split('id="ad-list"', 1)[1].split("</thead>", 1)[0]
    return re.findall(r'<th class="num" data-column="([^"]+)"', head)


def test_a_column_choice_comes_back_next_visit_for_that_user_only(client: TestClient, api: Api) -> None:
    admin = api.admin()
    first = api.approved_account(admin, email="cols-first@example.com")
    api.approved_account(admin, email="cols-second@example.com")
    campaign(api, first)
    sign_in(client, "cols-first@example.com", "correct horse battery")
    fresh = _columns(client.get("/console/ads/campaigns").text)
    assert fresh == ["impressions", "clicks", "ctr", "cost"]

    video = client.get("/console/ads/campaigns", params={"colset": "video"})
    chosen = _columns(video.text)
    assert chosen and all(c.startswith("video_") for c in chosen) and "video_completes" in chosen
    assert 'data-column-set="video"' in video.text
    # Another level, no query: the same set.
    assert _columns(client.get("/console/ads/creatives").text) == chosen

    in_app = _columns(client.get("/console/ads/ad-groups", params={"colset": "in_app"}).text)
    assert len([c for c in in_app if c.startswith("event_")]) == 22
    assert _columns(client.get("/console/ads/ad-groups").text) == in_app

    custom = [("cols", ""), ("cols", "roas"), ("cols", "installs")]
    assert _columns(client.get("/console/ads/campaigns", params=custom).text) == ["roas", "installs"]
    again = client.get("/console/ads/campaigns")
    assert _columns(again.text) == ["roas", "installs"]
    assert re.search(r"<summary>[^<]*Custom columns</summary>", again.text)

    # Every box unticked: no metric column, and that too is remembered.
    assert _columns(client.get("/console/ads/campaigns", params=[("cols", "")]).text) == []
    assert _columns(client.get("/console/ads/campaigns").text) == []

    client.cookies.clear()
    sign_in(client, "cols-second@example.com", "correct horse battery")
    assert _columns(client.get("/console/ads/campaigns").text) == ["impressions", "clicks", "ctr", "cost"]
    basic = _columns(client.get("/console/ads/campaigns", params={"colset": "basic"}).text)
    assert set(basic) <= set(LIST_METRICS) and {"impressions", "cost", "roas"} <= set(basic)
    assert _columns(client.get("/console/ads/campaigns").text) == basic


def test_page_size_and_batch_return_keep_every_column(client: TestClient, api: Api) -> None:
    adv = api.approved_account(email="cols-links@example.com")
    campaign(api, adv)
    sign_in(client, "cols-links@example.com", "correct horse battery")
    chosen = [("cols", ""), ("cols", "clicks"), ("cols", "cost"), ("cols", "roas")]
    page = client.get("/console/ads/campaigns", params=chosen)
    assert _columns(page.text) == ["clicks", "cost", "roas"]
    size_form = page.text.split('id="page-size"', 1)[1].split("</form>", 1)[0]
    fields = [
        (html.unescape(k), html.unescape(v))
        for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', size_form)
    ]
    assert _columns(client.get("/console/ads/campaigns", params=[*fields, ("size", "20")]).text) == [
        "clicks",
        "cost",
        "roas",
    ]
    back = re.search(r'<input type="hidden" name="back" value="([^"]+)"', page.text)
    assert back
    assert _columns(client.get(html.unescape(back.group(1))).text) == ["clicks", "cost", "roas"]
    assert _columns(client.get("/console/ads/campaigns").text) == ["clicks", "cost", "roas"]
