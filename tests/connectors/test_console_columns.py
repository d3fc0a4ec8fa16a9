"""The console's report builder offers the partners' columns ("Columns > Adjust", "Columns > AppsFlyer") and
shows a chosen one with its difference from adstack's own figure."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.console.support import register


def test_the_report_builder_offers_each_partners_columns(client: TestClient) -> None:
    register(client, 190)
    html = client.get("/console/reports").text
    for partner, key in (("Adjust", "adjust_installs"), ("AppsFlyer", "appsflyer_installs")):
        group = html.split(f'data-partner-columns="{partner}"')[1].split("</details>")[0]
        assert f"Columns > {partner}" in group and f'value="{key}"' in group and "checked" not in group
    assert 'value="adjust_ltv_d7_micros"' in html and 'value="appsflyer_roi"' in html

    chosen = client.get(
        "/console/reports",
        params={
            "dimensions": "campaign",
            "metrics": "installs",
            "extra_columns": ["adjust_installs", "adjust_roi", "nonsense"],
        },
    )
    assert chosen.status_code == 200
    head = chosen.text.split("<thead>")[1].split("</thead>")[0]
    for key in ("installs", "adjust_installs", "adjust_installs_diff", "adjust_roi"):
        assert f'data-column="{key}"' in head
    assert "Adjust installs - ours" in head and "nonsense" not in head
    group = chosen.text.split('data-partner-columns="Adjust"')[1].split("</details>")[0]
    assert group.startswith(" open") and 'value="adjust_installs" checked' in group

    client.cookies.set("adstack_lang", "zh")
    assert "自定义列 > Adjust" in client.get("/console/reports").text
