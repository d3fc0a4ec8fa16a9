"""The creative level of the ad list: each row shows its creative's own image, small and lazy-loaded with alt text,
and its format by name in the visitor's language."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.console.i18n import translations
from adstack.console.vocabulary import FORMAT_NAMES
from adstack.media.models import MediaAsset
from tests.campaigns.helpers import ad_group, campaign, creative
from tests.console.support import sign_in
from tests.support import Api


def _row(page: str, row_id: int) -> str:
    return page.split(f'id="row-creatives-{row_id}"', 1)[1].split("</tr>", 1)[0]


def test_creative_rows_show_their_image_and_format_name(client: TestClient, api: Api, session: Session) -> None:
    adv = api.approved_account(email="thumbs@example.com")
    group = ad_group(api, adv, campaign(api, adv)["id"])
    made = [creative(api, adv, group["id"], name=f"Banner {n}") for n in range(2)]
    sign_in(client, "thumbs@example.com", "correct horse battery")
    page = client.get("/console/ads/creatives")
    assert page.status_code == 200
    for item in made:
        row = _row(page.text, item["id"])
        asset = session.get(MediaAsset, item["materials"]["images"][0])
        assert asset is not None
        image = re.search(r"<img [^>]*data-thumbnail[^>]*>", row)
        assert image, row
        tag = image.group(0)
        assert f'src="/media/{asset.public_key}"' in tag
        assert 'loading="lazy"' in tag and f'alt="Image of {item["name"]}"' in tag
        assert client.get(f"/media/{asset.public_key}").headers["content-type"].startswith("image/")
        assert 'data-column="format">Banner 640x100</td>' in row
        assert "image_640x100" not in row
    # Campaign and ad group rows have no image of their own.
    assert "data-thumbnail" not in client.get("/console/ads/ad-groups").text

    chinese = client.get("/console/ads/creatives", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    name = translations("zh").gettext(FORMAT_NAMES["image_640x100"])
    assert name != "Banner 640x100"
    assert f'data-column="format">{name}</td>' in _row(chinese.text, made[0]["id"])
