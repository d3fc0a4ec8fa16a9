"""Time zones read in the visitor's language: the guide's "UTC+8" offsets everywhere, named zones by CLDR's
location form on Chinese pages (中国（上海）时间) and by their IANA name on English ones."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from adstack.console.pages import choices
from adstack.console.vocabulary import time_zone_name
from tests.campaigns.helpers import campaign
from tests.console.support import sign_in
from tests.support import Api

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _option(html: str, select_id: str, value: str) -> str:
    select = html.split(f'id="{select_id}"', 1)[1].split("</select>", 1)[0]
    match = re.search(rf'<option value="{re.escape(value)}"[^>]*>([^<]*)</option>', select)
    assert match, f"no option {value} in #{select_id}"
    return match.group(1)


def test_every_named_zone_has_a_chinese_label_and_labels_stay_apart() -> None:
    chinese, english = choices.time_zones("zh"), choices.time_zones("en")
    assert [value for value, _ in chinese] == [value for value, _ in english]
    named = [(value, label) for value, label in chinese if "/" in value and not value.startswith("Etc/")]
    assert named and all(CHINESE.search(label) for _, label in named), [
        v for v, lab in named if not CHINESE.search(lab)
    ][:5]
    assert len({label for _, label in chinese}) == len(chinese)  # no two options read alike
    assert dict(chinese)["Asia/Shanghai"] == "(UTC+08:00) 中国（上海）时间"
    assert dict(english)["Asia/Shanghai"] == "(UTC+08:00) Asia/Shanghai"
    assert dict(chinese)["Etc/GMT-8"] == dict(english)["Etc/GMT-8"] == "UTC+8"
    assert time_zone_name("Etc/GMT+5", "zh") == "UTC-5" and time_zone_name("UTC", "zh") == "UTC+0"
    assert time_zone_name("Asia/Singapore", "zh") == "新加坡时间"
    assert time_zone_name("Asia/Singapore", "en") == "Asia/Singapore"


def test_chinese_pages_name_time_zones_in_chinese(client: TestClient, api: Api) -> None:
    adv = api.approved_account(email="zones@example.com")  # registered in Asia/Singapore
    camp = campaign(api, adv)
    client.cookies.set("adstack_lang", "zh", path="/console")
    register = client.get("/console/register")
    assert _option(register.text, "time_zone", "Asia/Shanghai") == "(UTC+08:00) 中国（上海）时间"
    assert _option(register.text, "time_zone", "Etc/GMT-8") == "UTC+8"
    sign_in(client, "zones@example.com", "correct horse battery")
    form = client.get(f"/console/ads/campaigns/{camp['id']}/ad-groups/new")
    assert _option(form.text, "time_zone", "Asia/Singapore") == "(UTC+08:00) 新加坡时间"
    account = client.get(f"/console/accounts/{adv.account_id}")
    assert re.search(r"<dd>新加坡时间</dd>", account.text)
    listing = client.get("/console/ads/campaigns")
    assert "新加坡时间" in listing.text.split('id="metric-period"', 1)[1].split("</p>", 1)[0]
    # The same pages in English keep the IANA names.
    client.cookies.set("adstack_lang", "en", path="/console")
    english = client.get(f"/console/accounts/{adv.account_id}")
    assert "<dd>Asia/Singapore</dd>" in english.text
