"""Deeplinks and click URLs never carry a scheme a web view would run or read locally."""

from __future__ import annotations

import pytest

from tests.creatives.helpers import ad_group, create, interstitial_body
from tests.support import Api, expect


@pytest.mark.parametrize(
    "link",
    [
        "javascript://%0aalert(document.cookie)",
        "JavaScript://x",
        "data://text/html,x",
        "file:///etc/passwd",
        "vbscript://msgbox",
        "  javascript://padded",
    ],
)
def test_dangerous_deeplink_schemes_are_refused_naming_field_and_rule(api: Api, link: str) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv)
    body = interstitial_body(api, adv, group["id"])
    error = expect(api.client.post("/api/v1/creatives", headers=adv.headers, json={**body, "deeplink": link}), 422)[
        "error"
    ]
    assert error["code"] == "validation_error"
    [field] = error["fields"]
    assert (field["field"], field["rule"]) == ("deeplink", "forbidden_scheme")
    assert field["limit"] == ["javascript", "data", "file", "vbscript"]
    # An edit is held to the same rule, and so are click URLs (http and https only).
    created = create(api, adv, body)
    for change, name in (({"deeplink": link}, "deeplink"), ({"click_url": link.strip()}, "click_url")):
        refused = expect(api.client.patch(f"/api/v1/creatives/{created['id']}", headers=adv.headers, json=change), 422)[
            "error"
        ]["fields"][0]
        assert refused["field"] == name


def test_app_schemes_still_pass(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv)
    body = interstitial_body(api, adv, group["id"])
    assert create(api, adv, {**body, "deeplink": "mygame://level/1"})["deeplink"] == "mygame://level/1"
    assert create(api, adv, {**body, "deeplink": "intent://open#Intent;scheme=mygame;end"})["deeplink"]
