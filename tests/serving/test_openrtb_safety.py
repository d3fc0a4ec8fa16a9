"""The OpenRTB bidder under privacy signals, brand-safety blocks, price rules, deadlines and hostile requests."""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.serving.engine import ServingState
from adstack.serving.fx import FxRates
from tests.serving.support import creative, group, snapshot
from tests.serving.tcf_strings import tc_string
from tests.support import Api

IFA = "38400000-8cf0-11bd-b23e-10b96e40000d"
AUCTION_PRICE = "${AUCTION_PRICE}"


def serve(client: TestClient, groups: list[Any]) -> TestClient:
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    engine.swap(ServingState.build(snapshot(groups, fx=FxRates({"USD": 1, "EUR": "1.10"}))))
    return client


def banner_group(group_id: int = 1, **overrides: Any) -> Any:
    values: dict[str, Any] = dict(
        placement="banner",
        bid_micros=3_000_000,
        categories=("IAB19-6",),
        creatives=(creative(group_id, format="iab_banner_300x250", width=300, height=250),),
    )
    values.update(overrides)
    return group(group_id, **values)


def bid_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "id": "r1",
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
        "app": {"bundle": "com.example.app"},
        "device": {"ifa": IFA, "os": "android", "geo": {"country": "IND"}},
    }
    request.update(overrides)
    return request


def first_bid(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    bid: dict[str, Any] = response.json()["seatbid"][0]["bid"][0]
    return bid


def _local(url: str) -> str:
    return url.split("testserver", 1)[1]


# ---------- privacy ----------

SIGNALS = {
    "coppa": {"regs": {"coppa": 1}},
    "gdpr_without_consent": {"regs": {"gdpr": 1}, "user": {"consent": "not-a-tcf-string"}},
    "gdpr_2_5_extension": {"regs": {"ext": {"gdpr": 1}}},
    "lmt": {"device": {"ifa": IFA, "lmt": 1, "geo": {"country": "IND"}}},
    "dnt": {"device": {"ifa": IFA, "dnt": 1, "geo": {"country": "IND"}}},
    "us_privacy_opt_out": {"regs": {"us_privacy": "1YYN"}},
    "gpp_us_privacy_section_opt_out": {"regs": {"gpp": "DBABTA~1YYN", "gpp_sid": [6]}},
    "gpp_us_national_section": {"regs": {"gpp": "DBABLA~BVQqAAAAAgA.QA", "gpp_sid": [7]}},
    # Without gpp_sid the sections the GPP header lists apply: here US Privacy (6), and the EU TCF section (2).
    "gpp_us_privacy_opt_out_without_gpp_sid": {"regs": {"gpp": "DBABTA~1YYN"}},
    "gpp_eu_tcf_section_without_gpp_sid": {
        "regs": {"gpp": "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}},
    # GDPR signalled only by the EU TCF section of GPP, whose string gives no consent to us (no vendor id set).
    "gpp_eu_tcf_section": {"regs": {"gpp": "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", "gpp_sid": [2]}},
}


def _ids_in(text: str) -> bool:
    lowered = text.lower()
    return IFA in lowered or IFA.replace("-", "") in lowered


def _stored_text(settings: Settings) -> str:
    """Everything the platform wrote under its data directory (event journal, event store, logs), as text."""
    chunks = []
    for path in Path(settings.data_dir).rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("latin-1"))
    return "".join(chunks)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_a_privacy_signal_means_no_personal_targeting_and_no_device_id_anywhere(
    client: TestClient, settings: Settings, signal: str
) -> None:
    from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
    from adstack.audiences.ids import KeySpace, device_key

    # The audience-targeted ad group bids more; with a frequency cap of one it would also count the device.
    personal = banner_group(1, bid_micros=9_000_000, frequency_cap=1, targeting={"include_audiences": (9,)})
    contextual = banner_group(
        2,
        bid_micros=3_000_000,
        creatives=(
            creative(
                2,
                format="iab_banner_300x250",
                width=300,
                height=250,
                impression_monitor_urls=("https://mmp.example.com/i?id={gaid}",),
            ),
        ),
    )
    serve(client, [personal, contextual])
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    engine.audiences = AudienceIndex([IndexedAudience(9, 1, KeySpace.MD5, frozenset([device_key(IFA)]))])

    assert first_bid(client.post("/openrtb2/bid", json=bid_request()))["price"] == 9.0  # personal without a signal
    for _ in range(2):  # frequency capping by device is off too: the contextual group bids every time
        response = client.post("/openrtb2/bid", json=bid_request(**SIGNALS[signal]))
        bid = first_bid(response)
        assert bid["price"] == 3.0
        assert not _ids_in(response.text)
        assert "id=&" not in bid["adm"] and "mmp.example.com/i?id=" in html.unescape(bid["adm"])
        for url in (bid["burl"], bid["nurl"]):
            assert client.get(_local(url.replace(AUCTION_PRICE, "1.5"))).status_code == 204
        click = re.search(r'<a href="([^"]+)"', bid["adm"])
        assert click is not None
        client.get(_local(html.unescape(click.group(1))), follow_redirects=False)
    client.app.state.serving.flush_events()  # type: ignore[attr-defined]
    client.app.state.pipeline.drain()  # type: ignore[attr-defined]
    assert not _ids_in(_stored_text(settings))


# TCF v2 core strings made with IAB Tech Lab's @iabtcf/core 1.x (TCString.encode, core segment, a vendor list of
# vendors 755 and 1233-1235): purposes 1-4 and 7 with vendors 1234 and 755; the same purposes with only the
# other vendors; and vendor 1234 with purposes 1-3 only.
OUR_VENDOR_ID = 1234
TCF_CONSENTS = "CQumbsAQumbsAAKABAENEsEgAPIAAAAAAAYgJpQAgF5gTSAAAAAA"
TCF_OTHER_VENDORS_ONLY = "CQumbsAQumbsAAKABAENEsEgAPIAAAAAAAYgJpwAwF5gTRAmmAAAAAAA"
TCF_WITHOUT_PURPOSE_4 = "CQumbsAQumbsAAKABAENEsEgAOAAAAAAAAYgJpQAQJpAAAAA"


def _personal_and_contextual(client: TestClient) -> None:
    """A frequency-capped (one a day) audience group bidding 9.00 and a contextual one bidding 3.00."""
    from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
    from adstack.audiences.ids import KeySpace, device_key

    personal = banner_group(1, bid_micros=9_000_000, frequency_cap=1, targeting={"include_audiences": (9,)})
    serve(client, [personal, banner_group(2, bid_micros=3_000_000)])
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    engine.audiences = AudienceIndex([IndexedAudience(9, 1, KeySpace.MD5, frozenset([device_key(IFA)]))])


@pytest.mark.parametrize("where", ["user.consent", "user.ext.consent"])
def test_gdpr_with_our_tcf_consent_uses_the_device_id(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime, "settings", settings.model_copy(update={"openrtb_tcf_vendor_id": OUR_VENDOR_ID}))
    _personal_and_contextual(client)
    user = {"consent": TCF_CONSENTS} if where == "user.consent" else {"ext": {"consent": TCF_CONSENTS}}
    consented = bid_request(regs={"gdpr": 1}, user=user)
    # The audience matched the device, and the frequency cap counted it: the second bid is the contextual one.
    assert first_bid(client.post("/openrtb2/bid", json=consented))["price"] == 9.0
    assert first_bid(client.post("/openrtb2/bid", json=consented))["price"] == 3.0


@pytest.mark.parametrize("consent", [TCF_OTHER_VENDORS_ONLY, TCF_WITHOUT_PURPOSE_4, TCF_CONSENTS])
def test_gdpr_consent_withheld_from_us_or_for_a_purpose_means_no_device_id(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, consent: str
) -> None:
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    # With TCF_CONSENTS the vendor id differs from the one consented to: that consent is someone else's.
    vendor = OUR_VENDOR_ID + 1 if consent == TCF_CONSENTS else OUR_VENDOR_ID
    monkeypatch.setattr(runtime, "settings", settings.model_copy(update={"openrtb_tcf_vendor_id": vendor}))
    _personal_and_contextual(client)
    withheld = bid_request(regs={"gdpr": 1}, user={"consent": consent})
    response = client.post("/openrtb2/bid", json=withheld)
    assert first_bid(response)["price"] == 3.0 and not _ids_in(response.text)
    # Outside GDPR the same device is personal again.
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(regs={"gdpr": 0})))["price"] == 9.0


@pytest.mark.parametrize("consent", [
    tc_string(OUR_VENDOR_ID, consented=False, cut_after_vendor_bits=8),  # ends before our vendor's bit
    tc_string(OUR_VENDOR_ID, version=1),
    tc_string(OUR_VENDOR_ID, version=3),
], ids=["cut_short", "version_1", "version_3"])
def test_a_tcf_string_cut_short_or_not_of_version_2_gives_no_consent(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, consent: str
) -> None:
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime, "settings", settings.model_copy(update={"openrtb_tcf_vendor_id": OUR_VENDOR_ID}))
    _personal_and_contextual(client)
    response = client.post("/openrtb2/bid", json=bid_request(regs={"gdpr": 1}, user={"consent": consent}))
    assert first_bid(response)["price"] == 3.0 and not _ids_in(response.text)
    # The same string written whole, as version 2, consents.
    whole = bid_request(regs={"gdpr": 1}, user={"consent": tc_string(OUR_VENDOR_ID)})
    assert first_bid(client.post("/openrtb2/bid", json=whole))["price"] == 9.0


@pytest.mark.parametrize(("purpose", "kind"), [(1, 0), (4, 0), (4, 2)])
def test_a_publisher_restriction_on_a_purpose_we_need_withdraws_our_consent(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, purpose: int, kind: int
) -> None:
    """TCF v2 publisher restrictions: type 0 (not allowed) or 2 (legitimate interest required) on our vendor id for
    purpose 1 or 4 leaves us no consent; on a purpose we do not use it changes nothing."""
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime, "settings", settings.model_copy(update={"openrtb_tcf_vendor_id": OUR_VENDOR_ID}))
    _personal_and_contextual(client)
    restricted = tc_string(OUR_VENDOR_ID, restrictions=[(purpose, kind)])
    response = client.post("/openrtb2/bid", json=bid_request(regs={"gdpr": 1}, user={"consent": restricted}))
    assert first_bid(response)["price"] == 3.0 and not _ids_in(response.text)
    elsewhere = bid_request(regs={"gdpr": 1}, user={"consent": tc_string(OUR_VENDOR_ID, restrictions=[(2, 0)])})
    assert first_bid(client.post("/openrtb2/bid", json=elsewhere))["price"] == 9.0


def test_gdpr_through_the_gpp_eu_section_reads_its_tcf_string(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime, "settings", settings.model_copy(update={"openrtb_tcf_vendor_id": OUR_VENDOR_ID}))
    _personal_and_contextual(client)
    withheld = bid_request(regs={"gpp": f"DBABMA~{TCF_OTHER_VENDORS_ONLY}", "gpp_sid": [2]})
    response = client.post("/openrtb2/bid", json=withheld)
    assert first_bid(response)["price"] == 3.0 and not _ids_in(response.text)
    consented = bid_request(regs={"gpp": f"DBABMA~{TCF_CONSENTS}", "gpp_sid": [2]})
    assert first_bid(client.post("/openrtb2/bid", json=consented))["price"] == 9.0


def test_a_gpp_string_without_gpp_sid_is_read_by_the_sections_its_header_lists(client: TestClient) -> None:
    from adstack.serving.openrtb.privacy import gpp_header_sections

    # Headers listing US Privacy; EU TCF and US Privacy; US national; and one that cannot be read.
    assert gpp_header_sections("DBABTA~1YYN") == [6]
    assert gpp_header_sections("DBACNYA~x~1YNN") == [2, 6]
    assert gpp_header_sections("DBABLA~BVQqAAAAAgA.QA") == [7]
    assert gpp_header_sections("not a header!~1YYN") == []
    _personal_and_contextual(client)
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(regs={"gpp": "DBABTA~1YNN"})))["price"] == 9.0
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(regs={"gpp": "DBABTA~1YYN"})))["price"] == 3.0


def test_tracking_urls_never_carry_the_raw_device_id(client: TestClient) -> None:
    serve(client, [banner_group()])
    response = client.post("/openrtb2/bid", json=bid_request())
    first_bid(response)
    assert not _ids_in(response.text)


def test_exchange_events_know_the_device_by_the_tokens_hash_and_not_under_a_signal(
    client: TestClient, settings: Settings
) -> None:
    from adstack.events.service import get_event_store
    from adstack.tracking.devices import normalise_gaid

    serve(client, [banner_group()])
    for name, extra in (("open", {}), ("lmt", SIGNALS["lmt"])):
        bid = first_bid(client.post("/openrtb2/bid", json=bid_request(id=f"r-{name}", **extra)))
        assert not _ids_in(json.dumps(bid))
        assert client.get(_local(bid["burl"].replace(AUCTION_PRICE, "1.5"))).status_code == 204
    client.app.state.pipeline.drain()  # type: ignore[attr-defined]
    store = get_event_store(settings)
    store.flush()
    hashes = [
        int(h)
        for (h,) in store.query(
            "SELECT device_hash FROM events WHERE event_type = 'impression' ORDER BY device_hash DESC"
        ).rows
    ]
    device = normalise_gaid(IFA)
    assert device is not None
    assert hashes == [device.device_hash, 0]  # the open request's device, and none under lmt


# ---------- brand safety ----------


def test_bcat_blocks_the_campaign_category_and_its_tier(client: TestClient) -> None:
    serve(client, [banner_group()])
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(bcat=["IAB20"])))["cat"] == ["IAB19-6"]
    for blocked in (["IAB19-6"], ["IAB19"]):
        assert client.post("/openrtb2/bid", json=bid_request(bcat=blocked)).status_code == 204


def test_a_blocked_subcategory_blocks_a_campaign_filed_under_its_tier(client: TestClient) -> None:
    serve(client, [banner_group(categories=("IAB9",))])
    assert client.post("/openrtb2/bid", json=bid_request(bcat=["IAB9-30"])).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(bcat=["IAB19-6", "IAB90-1"])).status_code == 200
    serve(client, [banner_group(categories=("IAB9-5",))])  # a sibling subcategory stays allowed
    assert client.post("/openrtb2/bid", json=bid_request(bcat=["IAB9-30"])).status_code == 200


def test_an_uncategorised_campaign_never_bids_where_categories_are_blocked(client: TestClient) -> None:
    serve(client, [banner_group(categories=())])
    assert client.post("/openrtb2/bid", json=bid_request()).status_code == 200
    assert client.post("/openrtb2/bid", json=bid_request(bcat=["IAB25"])).status_code == 204


def test_acat_allows_only_its_categories_and_other_taxonomies_are_no_bid(client: TestClient) -> None:
    serve(client, [banner_group()])  # IAB19-6
    for allowed in (["IAB19-6"], ["IAB19"]):
        assert client.post("/openrtb2/bid", json=bid_request(acat=allowed)).status_code == 200
    assert client.post("/openrtb2/bid", json=bid_request(acat=["IAB1"])).status_code == 204
    # Content Taxonomy 2.x ids cannot be held against our 1.0 categories.
    assert client.post("/openrtb2/bid", json=bid_request(bcat=["1"], cattax=2)).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(bcat=["IAB25"], cattax=1)).status_code == 200


def test_seat_lists_and_private_auctions_without_a_deal_for_us_are_no_bid(client: TestClient) -> None:
    serve(client, [banner_group()])
    assert client.post("/openrtb2/bid", json=bid_request(bseat=["adstack"])).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(wseat=["someone-else"])).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(wseat=["adstack"])).status_code == 200
    for deals in ([], [{"id": "d1", "bidfloor": 1e9}], [{"id": "d1", "bidfloorcur": "XXX"}],
                  [{"id": "d1", "wseat": ["someone-else"]}]):
        imp = {"id": "1", "banner": {"w": 300, "h": 250}, "pmp": {"private_auction": 1, "deals": deals}}
        assert client.post("/openrtb2/bid", json=bid_request(imp=[imp])).status_code == 204, deals
    open_auction = {"id": "1", "banner": {"w": 300, "h": 250}, "pmp": {"private_auction": 0, "deals": []}}
    assert client.post("/openrtb2/bid", json=bid_request(imp=[open_auction])).status_code == 200


def test_a_banners_format_list_is_the_sizes_permitted(client: TestClient) -> None:
    serve(client, [banner_group()])  # 300x250
    listed = {"id": "1", "banner": {"w": 300, "h": 250, "format": [{"w": 728, "h": 90}]}}
    assert client.post("/openrtb2/bid", json=bid_request(imp=[listed])).status_code == 204
    both = {"id": "1", "banner": {"w": 728, "h": 90, "format": [{"w": 728, "h": 90}, {"w": 300, "h": 250}]}}
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(imp=[both])))["w"] == 300


def test_badv_and_bapp_block_the_advertiser_and_the_promoted_app(client: TestClient) -> None:
    game = banner_group(targeting={"promoted_package": "com.example.game"})
    serve(client, [game])
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request()))
    assert bid["bundle"] == "com.example.game" and bid["adomain"] == ["advertiser.example.com"]
    assert client.post("/openrtb2/bid", json=bid_request(bapp=["com.example.game"])).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(badv=["advertiser.example.com"])).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(bapp=["com.other"], badv=["other.com"])).status_code == 200


def test_a_blocked_advertiser_domain_blocks_its_subdomains(client: TestClient) -> None:
    serve(client, [banner_group(advertiser_domains=("shop.nike.com",))])
    for blocked in (["nike.com"], ["NIKE.com"], ["shop.nike.com"], ["other.org", "nike.com."]):
        assert client.post("/openrtb2/bid", json=bid_request(badv=blocked)).status_code == 204, blocked
    for other in (["ike.com"], ["other.nike.com"], ["shop.nike.com.evil.org"]):
        assert client.post("/openrtb2/bid", json=bid_request(badv=other)).status_code == 200, other


def test_every_entry_of_a_long_block_or_allow_list_counts(client: TestClient) -> None:
    serve(client, [banner_group(targeting={"promoted_package": "com.example.game"})])  # IAB19-6
    others = 2_000  # the 256 KB body cap is what bounds these lists
    long_lists = {
        "badv": [*(f"blocked{n}.example.org" for n in range(others)), "advertiser.example.com"],
        "bapp": [*(f"com.other.app{n}" for n in range(others)), "com.example.game"],
        "bcat": [*(f"IAB{n}" for n in range(100, 100 + others)), "IAB19-6"],
    }
    for name, values in long_lists.items():
        assert client.post("/openrtb2/bid", json=bid_request(**{name: values})).status_code == 204, name
        assert client.post("/openrtb2/bid", json=bid_request(**{name: values[:-1]})).status_code == 200, name
    allowed_last = [*(f"IAB{n}" for n in range(100, 100 + others)), "IAB19-6"]
    assert client.post("/openrtb2/bid", json=bid_request(acat=allowed_last)).status_code == 200


def _native_video_request(**native: Any) -> dict[str, Any]:
    spec = {
        "ver": "1.2",
        "assets": [
            {"id": 1, "required": 1, "title": {"len": 90}},
            {
                "id": 2,
                "required": 1,
                "video": {"mimes": ["video/mp4"], "minduration": 5, "maxduration": 30, "protocols": [2, 3, 7]},
            },
        ],
        "eventtrackers": [{"event": 1, "methods": [1]}],
    }
    return bid_request(imp=[{"id": "1", "native": {"request": json.dumps(spec), "ver": "1.2", **native}}])


def test_a_native_icon_is_offered_only_in_a_size_the_request_takes(client: TestClient) -> None:
    """Our newsfeed icons are the guide's 84x84; an icon asked for at 50x50, or at least 1000x1000, is not ours."""
    news = group(3, placement="newsfeed", bid_micros=2_500_000, categories=("IAB1",),
                 creatives=(creative(3, format="large_newsfeed_image", width=1200, height=628),))
    serve(client, [news])

    def ask(icon: dict[str, Any]) -> Any:
        request = {"ver": "1.2", "assets": [{"id": 1, "required": 1, "title": {"len": 30}},
                                            {"id": 2, "required": 1, "img": {"type": 1, **icon}}]}
        imp = {"id": "1", "native": {"request": json.dumps(request)}}
        return client.post("/openrtb2/bid", json=bid_request(imp=[imp]))

    for unfit in ({"w": 50, "h": 50}, {"wmin": 1000, "hmin": 1000}):
        assert ask(unfit).status_code == 204, unfit
    for fits in ({"w": 84, "h": 84}, {"wmin": 50, "hmin": 50}, {}):
        native = json.loads(first_bid(ask(fits))["adm"])
        icon = next(a["img"] for a in native["assets"] if a["id"] == 2)
        assert (icon["w"], icon["h"]) == (84, 84), fits


def test_a_native_icons_size_is_the_uploaded_ones_where_known(client: TestClient) -> None:
    """An operator may edit a format's icon rule: the icon the advertiser uploaded under it is what is offered."""
    import dataclasses

    made = creative(3, format="large_newsfeed_image", width=1200, height=628)
    made = dataclasses.replace(made, combinations=tuple(
        dataclasses.replace(c, icon_width=180, icon_height=180) for c in made.combinations))
    serve(client, [group(3, placement="newsfeed", bid_micros=2_500_000, categories=("IAB1",), creatives=(made,))])
    request = {"ver": "1.2", "assets": [{"id": 2, "required": 1, "img": {"type": 1, "wmin": 150, "hmin": 150}}]}
    native = json.loads(first_bid(client.post("/openrtb2/bid", json=bid_request(
        imp=[{"id": "1", "native": {"request": json.dumps(request)}}])))["adm"])
    assert (native["assets"][0]["img"]["w"], native["assets"][0]["img"]["h"]) == (180, 180)


def test_battr_blocks_what_the_ad_is(client: TestClient) -> None:
    serve(
        client,
        [
            group(
                6,
                placement="newsfeed",
                bid_micros=3_000_000,
                creatives=(creative(6, format="native_video", width=1280, height=720, video=True),),
            )
        ],
    )
    bid = first_bid(client.post("/openrtb2/bid", json=_native_video_request()))
    assert bid["attr"] == [6]  # in-feed video plays on its own
    native = json.loads(bid["adm"])
    assert {"event": 1, "method": 1, "url": bid["burl"]} in native["eventtrackers"]
    assert client.post("/openrtb2/bid", json=_native_video_request(battr=[6])).status_code == 204
    assert client.post("/openrtb2/bid", json=_native_video_request(battr=[1, 2])).status_code == 200


def test_video_protocols_and_linearity_must_take_our_linear_vast_4(client: TestClient) -> None:
    """OpenRTB 2.6 §3.2.7: we send inline VAST 4.0 (protocol 7) of a linear ad."""
    video = group(2, placement="interstitial", bid_micros=4_000_000,
                  creatives=(creative(2, format="interstitial_video", width=640, height=480, video=True),))
    serve(client, [video])

    def ask(**constraints: Any) -> int:
        imp = {"id": "1", "video": {"mimes": ["video/mp4"], **constraints}}
        return int(client.post("/openrtb2/bid", json=bid_request(imp=[imp])).status_code)

    assert ask() == 200 and ask(protocols=[2, 3, 7, 8]) == 200 and ask(linearity=1, protocols=[7]) == 200
    assert ask(protocols=[2, 3, 5, 6]) == 204  # VAST 2 and 3 players only
    assert ask(protocols=[8]) == 204  # a 4.0 wrapper is not what we send
    assert ask(linearity=2) == 204  # an overlay


@pytest.mark.parametrize("unfit", [{"mimes": ["video/webm"]}, {"protocols": [2, 3]}, {"maxduration": 10},
                                   {"minduration": 20, "maxduration": 60}])
def test_a_native_video_asset_takes_our_video_only_by_its_type_protocol_and_duration(
    client: TestClient, unfit: dict[str, Any]
) -> None:
    serve(client, [group(6, placement="newsfeed", bid_micros=3_000_000, creatives=(
        creative(6, format="native_video", width=1280, height=720, video=True),))])  # 15 s, MP4, VAST 4.0
    assert client.post("/openrtb2/bid", json=_native_video_request()).status_code == 200
    spec = {"ver": "1.2", "assets": [{"id": 1, "required": 1, "title": {"len": 90}}, {"id": 2, "required": 1, "video": {
        "mimes": ["video/mp4"], "minduration": 5, "maxduration": 30, "protocols": [7], **unfit}}]}
    imp = {"id": "1", "native": {"request": json.dumps(spec), "ver": "1.2"}}
    assert client.post("/openrtb2/bid", json=bid_request(imp=[imp])).status_code == 204


def test_a_stored_title_with_control_characters_still_makes_well_formed_vast(client: TestClient) -> None:
    """Material validation now refuses such titles; creatives stored before it did are cleaned in the markup."""
    import dataclasses
    import xml.etree.ElementTree as ET

    made = creative(2, format="interstitial_video", width=640, height=480, video=True)
    made = dataclasses.replace(made, name="Name\x01", combinations=tuple(
        dataclasses.replace(c, title="Big\x0bSale\x00") for c in made.combinations))
    serve(client, [group(2, placement="interstitial", bid_micros=4_000_000, creatives=(made,))])
    imp = {"id": "1", "video": {"mimes": ["video/mp4"], "protocols": [7]}}
    vast = ET.fromstring(first_bid(client.post("/openrtb2/bid", json=bid_request(imp=[imp])))["adm"])
    assert vast.findtext("Ad/InLine/AdTitle") == "BigSale"


def test_banner_mimes_and_blocked_banner_types_are_honoured(client: TestClient) -> None:
    """OpenRTB 2.6 3.2.6: `mimes` lists the content types the placement takes (our image's must be among them;
    "image/jpg" as requests write it is JPEG); `btype` 2 blocks XHTML banner ads, which our markup is."""
    import dataclasses

    serve(client, [banner_group()])

    def ask(**banner: Any) -> int:
        request = bid_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250, **banner}}])
        return int(client.post("/openrtb2/bid", json=request).status_code)

    assert ask(mimes=["image/png", "image/gif"]) == 200  # the test creative is a PNG
    assert ask(mimes=["image/jpeg", "text/html"]) == 204
    assert ask(btype=[2]) == 204
    assert ask(btype=[1, 3, 4]) == 200
    jpeg = banner_group().creatives[0]
    jpeg = dataclasses.replace(jpeg, combinations=tuple(
        dataclasses.replace(c, image_mime="image/jpeg") for c in jpeg.combinations))
    serve(client, [banner_group(creatives=(jpeg,))])
    assert ask(mimes=["image/jpg"]) == 200
    # The reservation of a bid withdrawn for its type is given back: the same ad bids again at once.
    assert ask(mimes=["image/png"]) == 204
    assert ask(mimes=["image/jpg"]) == 200


def test_a_native_image_of_a_type_the_request_does_not_list_is_not_offered(client: TestClient) -> None:
    news = group(3, placement="newsfeed", bid_micros=2_500_000, categories=("IAB1",),
                 creatives=(creative(3, format="large_newsfeed_image", width=1200, height=628),))
    serve(client, [news])

    def ask(kind: int, mimes: list[str]) -> int:
        request = {"ver": "1.2", "assets": [{"id": 1, "required": 1, "title": {"len": 30}},
                                            {"id": 2, "required": 1, "img": {"type": kind, "mimes": mimes}}]}
        imp = {"id": "1", "native": {"request": json.dumps(request)}}
        return int(client.post("/openrtb2/bid", json=bid_request(imp=[imp])).status_code)

    for kind in (1, 3):  # icon, main image: both PNG here
        assert ask(kind, ["image/png"]) == 200
        assert ask(kind, ["image/jpeg", "image/gif"]) == 204


@pytest.mark.parametrize(("spec_version", "imp_version", "legacy"), [
    ("1.1", None, True), (None, "1.1", True), ("1.0", None, True), ("1.2", "1.1", False), (None, None, False),
    ("wrapped", None, True), (None, 1.1, True)])
def test_a_native_1_1_request_gets_the_1_1_response_with_our_impression_tracker(
    client: TestClient, spec_version: str | None, imp_version: str | float | None, legacy: bool
) -> None:
    """Before 1.2 a native request wraps itself in `native` (its `ver` optional); `imp.native.ver` is a string,
    which some exchanges send as a number."""
    serve(client, [group(3, placement="newsfeed", bid_micros=2_500_000, categories=("IAB1",),
                         creatives=(creative(3, format="large_newsfeed_image", width=1200, height=628),))])
    request: dict[str, Any] = {"assets": [{"id": 1, "required": 1, "title": {"len": 90}},
                                          {"id": 2, "required": 1, "img": {"type": 3, "wmin": 100, "hmin": 100}}]}
    if spec_version and spec_version != "wrapped":
        request["ver"] = spec_version
    wrapped = spec_version in ("1.1", "wrapped")
    native: dict[str, Any] = {"request": json.dumps({"native": request} if wrapped else request)}
    if imp_version:
        native["ver"] = imp_version
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(imp=[{"id": "1", "native": native}])))
    adm = json.loads(bid["adm"])
    if legacy:  # Native 1.1: the response inside `native`, the trackers a 1.1 renderer fires
        assert sorted(adm) == ["native"] and adm["native"]["ver"] == "1.1"
        trackers = adm["native"]["imptrackers"]
        assert "eventtrackers" not in adm["native"] and {a["id"] for a in adm["native"]["assets"]} == {1, 2}
    else:
        assert adm["ver"] == "1.2" and "native" not in adm
        trackers = [t["url"] for t in adm["eventtrackers"]]
    assert any("/t/imp?" in url for url in trackers)


def test_secure_imps_get_https_only_or_no_bid(client: TestClient) -> None:
    serve(client, [banner_group()])
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    secure = bid_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "secure": 1}])
    assert runtime.base_url.startswith("http://")
    assert client.post("/openrtb2/bid", json=secure).status_code == 204
    runtime.base_url = "https://ads.example.com"
    bid = first_bid(client.post("/openrtb2/bid", json=secure))
    urls = [bid["nurl"], bid["burl"], bid["lurl"], *re.findall(r'(?:src|href)="([^"]+)"', bid["adm"])]
    assert urls and all(u.startswith("https://") for u in urls)


def test_a_secure_native_imp_gets_no_http_cover_image(client: TestClient) -> None:
    def video(cover: str) -> Any:
        return group(3, placement="newsfeed", bid_micros=2_500_000, creatives=(creative(
            3, format="large_newsfeed_video", width=1280, height=720, video=True, cover_image_url=cover,
            cover_width=1280, cover_height=720, cover_image_mime="image/jpeg"),))

    client.app.state.serving.base_url = "https://ads.example.com"  # type: ignore[attr-defined]
    spec = {"ver": "1.2", "assets": [{"id": 1, "required": 1, "title": {"len": 90}},
                                     {"id": 2, "required": 1, "img": {"type": 3, "wmin": 100, "hmin": 100}}]}
    request = bid_request(imp=[{"id": "1", "secure": 1, "native": {"request": json.dumps(spec)}}])
    serve(client, [video("http://cdn.example.com/cover.jpg")])
    assert client.post("/openrtb2/bid", json=request).status_code == 204
    serve(client, [video("https://cdn.example.com/cover.jpg")])
    native = json.loads(first_bid(client.post("/openrtb2/bid", json=request))["adm"])
    assert native["assets"][1]["img"]["url"] == "https://cdn.example.com/cover.jpg"


def test_a_tagid_names_our_ad_space_only_on_its_publishers_app(client: TestClient) -> None:
    from tests.serving.support import PUBLISHER_ID, SPACE_ID

    # This ad group buys only our ad space, the publisher's app com.publisher.app.
    serve(client, [group(7, placement="interstitial", bid_micros=3_000_000,
                         targeting={"ad_space_ids": frozenset({SPACE_ID}), "publisher_ids": frozenset({PUBLISHER_ID})},
                         creatives=(creative(7, format="iab_interstitial_320x480", width=320, height=480),))])
    imp = [{"id": "1", "instl": 1, "tagid": str(SPACE_ID), "banner": {"w": 320, "h": 480}}]
    ours = first_bid(client.post("/openrtb2/bid", json=bid_request(imp=imp, app={"bundle": "com.publisher.app"})))
    assert ours["price"] == 3.0
    for elsewhere in ({"app": {"bundle": "com.unrelated.game"}}, {"app": {"name": "Unrelated"}},
                      {"app": None, "site": {"page": "https://news.example.com/"}}):
        assert client.post("/openrtb2/bid", json=bid_request(imp=imp, **elsewhere)).status_code == 204, elsewhere


def test_interstitial_flag_asks_for_interstitial_ads(client: TestClient) -> None:
    serve(
        client,
        [
            banner_group(),
            group(
                5,
                placement="interstitial",
                bid_micros=2_000_000,
                creatives=(creative(5, format="iab_interstitial_320x480", width=320, height=480),),
            ),
        ],
    )
    banner = first_bid(client.post("/openrtb2/bid", json=bid_request()))
    assert (banner["w"], banner["h"]) == (300, 250)
    full = bid_request(
        imp=[{"id": "1", "instl": 1, "banner": {}}], device={"ifa": IFA, "w": 360, "h": 640, "geo": {"country": "IND"}}
    )
    assert (first_bid(client.post("/openrtb2/bid", json=full))["h"]) == 480
    small = {**full, "device": {"w": 300, "h": 400}}
    assert client.post("/openrtb2/bid", json=small).status_code == 204


# ---------- prices ----------


def test_first_price_bids_the_value_less_the_margin_above_floor_and_minimum(
    client: TestClient, settings: Settings
) -> None:
    serve(client, [banner_group()])
    second = first_bid(client.post("/openrtb2/bid", json=bid_request(at=2)))["price"]
    first = first_bid(client.post("/openrtb2/bid", json=bid_request(at=1)))["price"]
    assert second == 3.0  # the value: a CPM bid of 3.00
    assert first == pytest.approx(3.0 * (100 - settings.openrtb_first_price_margin_percent) / 100)
    floored = [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": first + 0.01}]
    assert client.post("/openrtb2/bid", json=bid_request(at=1, imp=floored)).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(at=2, imp=floored)).status_code == 200


def _deal_imp(*deals: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": "1", "banner": {"w": 300, "h": 250}, "pmp": {"private_auction": 1, "deals": list(deals)}}]


def _deal_buyer(*deal_ids: str, bid_micros: int = 5_000_000) -> Any:
    return banner_group(bid_micros=bid_micros, targeting={"deal_ids": frozenset(deal_ids)})


def test_a_deals_auction_type_overrides_the_requests(client: TestClient, settings: Settings) -> None:
    """OpenRTB 2.6 §3.2.12 `at`: 1 first price, 2 second price, 3 a fixed price, the deal's bidfloor."""
    serve(client, [_deal_buyer("D1")])  # worth 5.00
    less_margin = 5.0 * (100 - settings.openrtb_first_price_margin_percent) / 100

    def price(request_at: int, **deal: Any) -> Any:
        request = bid_request(at=request_at, imp=_deal_imp({"id": "D1", **deal}))
        response = client.post("/openrtb2/bid", json=request)
        return first_bid(response)["price"] if response.status_code == 200 else None

    assert price(2, bidfloor=1.0) == 5.0 and price(1, bidfloor=1.0) == pytest.approx(less_margin)
    assert price(2, bidfloor=1.0, at=1) == pytest.approx(less_margin)
    assert price(1, bidfloor=1.0, at=2) == 5.0
    assert price(2, bidfloor=1.25, at=3) == 1.25 and price(1, bidfloor=1.25, at=3) == 1.25
    assert price(2, bidfloor=5.5, at=3) is None  # a fixed price above our value
    assert price(2, bidfloor=0.05, at=3) is None  # below the platform minimum
    assert price(2, bidfloor=1.0, at=501) is None  # an exchange's own type: we cannot tell what we would pay
    eur = {"id": "D1", "bidfloor": 2.5, "bidfloorcur": "EUR", "at": 3}
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(cur=["EUR"], imp=_deal_imp(eur))))
    assert bid["price"] == 2.5 and bid["dealid"] == "D1"


def test_a_deal_for_other_advertisers_domains_is_not_bid_on(client: TestClient) -> None:
    """OpenRTB 2.6 §3.2.12 `wadomain`: the advertisers allowed to bid on the deal."""
    serve(client, [_deal_buyer("D1", "D2")])  # adomain advertiser.example.com
    others = {"id": "D1", "bidfloor": 1.0, "wadomain": ["someone-else.com"]}
    assert client.post("/openrtb2/bid", json=bid_request(imp=_deal_imp(others))).status_code == 204
    ours = {"id": "D1", "bidfloor": 1.0, "wadomain": ["someone-else.com", "Advertiser.Example.com"]}
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(imp=_deal_imp(ours))))["dealid"] == "D1"
    open_deal = {"id": "D2", "bidfloor": 0.5}
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(imp=_deal_imp(others, open_deal))))[
        "dealid"] == "D2"


def test_of_several_deals_the_bid_goes_to_the_highest_floor_it_reaches(client: TestClient) -> None:
    serve(client, [_deal_buyer("D1", "D2", "D3", "D4", bid_micros=3_000_000)])
    deals = [{"id": "D2", "bidfloor": 4.0}, {"id": "D4", "bidfloor": 2.0}, {"id": "D1", "bidfloor": 1.0},
             {"id": "D3", "bidfloor": 2.0}]
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(imp=_deal_imp(*deals))))
    assert (bid["dealid"], bid["price"]) == ("D3", 3.0)  # 4.00 is out of reach; of the two at 2.00, the first id
    assert client.post("/openrtb2/bid", json=bid_request(imp=_deal_imp(deals[0]))).status_code == 204


def _charged(settings: Settings, bid: dict[str, Any]) -> float:
    """What billing charges the advertiser for the bid's impression: the price its signed token carries, CPM."""
    from urllib.parse import parse_qs, urlsplit

    from adstack.core.timeutil import utcnow
    from adstack.tracking.tokens import decode_token

    token = parse_qs(urlsplit(bid["burl"]).query)["t"][0]
    return decode_token(token, settings.resolved_secret_key, now=utcnow()).price_micros / 1_000_000


@pytest.mark.parametrize(
    ("floor", "pmp", "price", "charged"),
    [
        # A fixed price is what the deal costs, whatever the imp's floor.
        (0.5, {"private_auction": 0, "deals": [{"id": "D1", "bidfloor": 3.0, "at": 3}]}, 3.0, 3.0),
        (4.0, {"private_auction": 0, "deals": [{"id": "D1", "bidfloor": 1.25, "at": 3}]}, 1.25, 1.25),
        # Another advertiser's cheaper deal sets nothing for ours.
        (0.0, {"private_auction": 1, "deals": [{"id": "D1", "bidfloor": 3.0, "at": 3}, {"id": "D9", "bidfloor": 1.0}]},
         3.0, 3.0),
        # A second-price deal: no runner-up, so its floor.
        (0.0, {"private_auction": 1, "deals": [{"id": "D1", "bidfloor": 3.0}, {"id": "D9", "bidfloor": 1.0}]},
         5.0, 3.0),
    ],
)
def test_the_advertiser_is_charged_against_the_deal_bid_on(
    client: TestClient, settings: Settings, floor: float, pmp: dict[str, Any], price: float, charged: float
) -> None:
    """OpenRTB 2.6 §3.2.12: the deal's bidfloor and `at` govern what it clears at, so our charge follows them."""
    serve(client, [_deal_buyer("D1")])  # worth 5.00
    imp = [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": floor, "pmp": pmp}]
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(imp=imp)))
    assert (bid["dealid"], bid["price"]) == ("D1", price)
    assert _charged(settings, bid) == charged


def test_a_fixed_price_deal_is_charged_in_the_advertisers_currency(client: TestClient, settings: Settings) -> None:
    """A EUR 2.50 deal, bid in USD at 1.10 USD per EUR, charges a EUR advertiser 2.50."""
    serve(client, [banner_group(bid_micros=5_000_000, currency="EUR", targeting={"deal_ids": frozenset({"D1"})})])
    eur = {"id": "D1", "bidfloor": 2.5, "bidfloorcur": "EUR", "at": 3}
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(imp=_deal_imp(eur, {"id": "D9", "bidfloor": 1.0}))))
    assert (bid["dealid"], bid["price"]) == ("D1", 2.75) and _charged(settings, bid) == 2.5


def test_a_deal_buyer_reserves_its_budget_at_the_deals_price(client: TestClient, settings: Settings) -> None:
    """A 3.00 CPM daily budget holds one impression at the fixed 3.00 deal, not six at the imp's 0.50 floor."""
    serve(client, [banner_group(bid_micros=5_000_000, targeting={"deal_ids": frozenset({"D1"})},
                                pacing="asap", daily_budget_micros=3_000)])
    imp = [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5,
            "pmp": {"private_auction": 0, "deals": [{"id": "D1", "bidfloor": 3.0, "at": 3}]}}]
    assert _charged(settings, first_bid(client.post("/openrtb2/bid", json=bid_request(imp=imp)))) == 3.0
    assert client.post("/openrtb2/bid", json=bid_request(imp=imp)).status_code == 204


def test_a_deal_out_of_the_buyers_reach_passes_the_open_auction_to_the_next_bidder(
    client: TestClient, settings: Settings
) -> None:
    """The deal buyer (5.00) cannot pay the 6.00 fixed price and bids on nothing else: the open bidder wins at the
    imp's floor."""
    serve(client, [_deal_buyer("D1"), banner_group(2, bid_micros=2_000_000)])
    imp = [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 1.5,
            "pmp": {"private_auction": 0, "deals": [{"id": "D1", "bidfloor": 6.0, "at": 3}]}}]
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(imp=imp)))
    assert "dealid" not in bid and bid["cid"] == "2"
    assert (bid["price"], _charged(settings, bid)) == (2.0, 1.5)


@pytest.mark.parametrize(("test", "currency"), [(0, "USD"), (1, "EUR")])
def test_the_billing_notice_signs_the_bids_price_currency_and_test_mode(
    client: TestClient, settings: Settings, test: int, currency: str
) -> None:
    """What caps the exchange's `${AUCTION_PRICE}` (our bid, in its currency) and keeps a test auction unbilled
    travels signed in the token, not in parameters the exchange could change."""
    from urllib.parse import parse_qs, urlsplit

    from adstack.core.timeutil import utcnow
    from adstack.tracking.tokens import decode_token

    serve(client, [banner_group()])
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(test=test, cur=[currency])))
    token = parse_qs(urlsplit(bid["burl"]).query)["t"][0]
    claims = decode_token(token, settings.resolved_secret_key, now=utcnow())
    assert claims.exchange_currency == currency and claims.test is bool(test)
    assert claims.exchange_bid_micros == round(bid["price"] * 1_000_000)


# ---------- what a won bid charges: never above the price bid ----------


def test_a_first_price_bid_is_charged_its_bid_not_our_second_price(client: TestClient, settings: Settings) -> None:
    """On a first-price auction (OpenRTB 2.6 §3.2.1 `at`=1, or a deal's `at`=1, §3.2.12) the exchange clears at our
    bid, which is the value less the margin: the runner-up's 4.50 would charge the advertiser more than the 4.00
    we bid, so the advertiser pays the bid."""
    serve(client, [banner_group(bid_micros=5_000_000), banner_group(2, bid_micros=4_500_000)])
    bid = first_bid(client.post("/openrtb2/bid", json=bid_request(at=1)))
    margin = settings.openrtb_first_price_margin_percent
    assert bid["cid"] == "1" and bid["price"] == pytest.approx(5.0 * (100 - margin) / 100)
    assert _charged(settings, bid) == bid["price"]
    second = first_bid(client.post("/openrtb2/bid", json=bid_request(at=2)))
    assert (second["price"], _charged(settings, second)) == (5.0, 4.5)  # second price: the runner-up's value

    serve(client, [_deal_buyer("D1"), banner_group(2, bid_micros=4_500_000)])
    pmp = {"private_auction": 0, "deals": [{"id": "D1", "bidfloor": 1.0, "at": 1}]}
    imp = [{"id": "1", "banner": {"w": 300, "h": 250}, "pmp": pmp}]
    dealt = first_bid(client.post("/openrtb2/bid", json=bid_request(at=2, imp=imp)))
    assert dealt["dealid"] == "D1" and _charged(settings, dealt) == dealt["price"] < 4.5


def test_a_first_price_bid_below_the_spaces_reserve_is_not_made(client: TestClient) -> None:
    """Worth 3.50, bid 2.80 on a first price: the 3.00 reserve would charge more than the bid."""
    from adstack.serving.snapshot import AdSpaceSnap
    from tests.serving.support import PUBLISHER_ID, SPACE_ID, snapshot

    reserved = AdSpaceSnap(SPACE_ID, PUBLISHER_ID, "space", "banner", reserve_price_micros=3_000_000)
    client.app.state.serving.engine.swap(  # type: ignore[attr-defined]
        ServingState.build(snapshot([banner_group(bid_micros=3_500_000)], spaces=[reserved])))
    imp = {"id": "1", "tagid": str(SPACE_ID), "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}
    request = bid_request(imp=[imp], app={"bundle": "com.publisher.app"})
    assert client.post("/openrtb2/bid", json={**request, "at": 1}).status_code == 204
    assert first_bid(client.post("/openrtb2/bid", json={**request, "at": 2}))["price"] == 3.5


def _interstitial_cpc(bid_micros: int, **targeting: Any) -> Any:
    """A CPC ad group on interstitials, whose prior pCTR (4%) makes the 0.01 CPC minimum a 0.40 CPM."""
    return group(1, bid_type="cpc", bid_micros=bid_micros, placement="interstitial", categories=("IAB19-6",),
                 creatives=(creative(1, format="iab_interstitial_320x480", width=320, height=480),),
                 targeting={"placement_types": frozenset({"interstitial"}), **targeting})


def _interstitial_request(**overrides: Any) -> dict[str, Any]:
    return bid_request(imp=[{"id": "1", "instl": 1, "banner": {"w": 320, "h": 480}, **overrides}])


def _cpm_of_click_price(bid: dict[str, Any], settings: Settings) -> float:
    """What the token's per-click price costs per 1,000 impressions at the 4% pCTR."""
    return _charged(settings, bid) * 0.04 * 1000


def test_a_fixed_price_deal_below_the_cpc_minimum_is_not_bid_on(client: TestClient, settings: Settings) -> None:
    """OpenRTB 2.6 §3.2.12 `at`=3: the deal's bidfloor is the price. 0.30 CPM is 0.0075 a click at a 4% pCTR, below
    the 0.01 CPC minimum, which would have lifted the charge to 0.40 CPM: no bid. 0.50 CPM is 0.0125 a click."""
    serve(client, [_interstitial_cpc(50_000, deal_ids=frozenset({"D1"}))])  # worth 2.00 CPM
    below = _interstitial_request(pmp={"private_auction": 1, "deals": [{"id": "D1", "bidfloor": 0.30, "at": 3}]})
    assert client.post("/openrtb2/bid", json=below).status_code == 204
    above = _interstitial_request(pmp={"private_auction": 1, "deals": [{"id": "D1", "bidfloor": 0.50, "at": 3}]})
    bid = first_bid(client.post("/openrtb2/bid", json=above))
    assert bid["price"] == 0.5 and _cpm_of_click_price(bid, settings) == pytest.approx(0.5)


def test_a_first_price_cpc_bid_below_the_cpc_minimum_is_not_made(client: TestClient, settings: Settings) -> None:
    """CPC 0.011 at a 4% pCTR is worth 0.44 CPM and bids 0.352 on a first price: 0.0088 a click, below the 0.01
    minimum. On a second price it bids 0.44 and pays at least the minimum, within its bid."""
    serve(client, [_interstitial_cpc(11_000)])
    assert client.post("/openrtb2/bid", json={**_interstitial_request(), "at": 1}).status_code == 204
    second = first_bid(client.post("/openrtb2/bid", json={**_interstitial_request(), "at": 2}))
    assert second["price"] == pytest.approx(0.44) and _cpm_of_click_price(second, settings) <= second["price"]
    serve(client, [_interstitial_cpc(20_000)])  # worth 0.80, bids 0.64: 0.016 a click
    first = first_bid(client.post("/openrtb2/bid", json={**_interstitial_request(), "at": 1}))
    assert _cpm_of_click_price(first, settings) == pytest.approx(first["price"], abs=1e-4)


def test_no_bid_below_the_platform_minimum(client: TestClient) -> None:
    serve(client, [banner_group(bid_micros=50_000)])  # 0.05 CPM, below the 0.10 platform minimum
    assert client.post("/openrtb2/bid", json=bid_request()).status_code == 204


# ---------- deadlines ----------


def test_tmax_below_the_minimum_is_answered_at_once(client: TestClient, settings: Settings) -> None:
    serve(client, [banner_group()])
    assert settings.openrtb_min_tmax_ms > 5
    assert client.post("/openrtb2/bid", json=bid_request(tmax=5)).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request(tmax=settings.openrtb_min_tmax_ms + 470)).status_code == 200
    assert client.post("/openrtb2/bid", json=bid_request(tmax=-2)).status_code == 400


def test_an_answer_ready_after_tmax_is_withdrawn_and_its_reservation_given_back(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    serve(client, [banner_group(pacing="asap", daily_budget_micros=3_000)])  # one 3.00 CPM bid at a time
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    decide = engine.decide
    tmax = settings.openrtb_min_tmax_ms + 20
    floored = [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 3.0}]  # the bid costs the whole budget

    def slow(*args: Any, **kwargs: Any) -> Any:
        decided = decide(*args, **kwargs)
        time.sleep(tmax / 1000 + 0.05)  # the decision is made (and reserved), then the deadline passes
        return decided

    monkeypatch.setattr(engine, "decide", slow)
    assert client.post("/openrtb2/bid", json=bid_request(tmax=tmax, imp=floored)).status_code == 204
    monkeypatch.setattr(engine, "decide", decide)
    # The late bid's reservation went back: the whole budget is there for the next bid, in time.
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(tmax=1_000, imp=floored)))["price"] == 3.0
    assert client.post("/openrtb2/bid", json=bid_request(tmax=1_000, imp=floored)).status_code == 204


# ---------- hostile requests ----------


@pytest.mark.parametrize("floor", [1e308, 1.7976931348623157e308, 10**30, 99_999_999.5])
def test_absurd_floors_are_no_bid_never_an_error(client: TestClient, floor: float) -> None:
    serve(client, [banner_group()])
    imp = {"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": floor}
    assert client.post("/openrtb2/bid", json=bid_request(imp=[imp])).status_code == 204
    assert client.post("/openrtb2/bid", json=bid_request()).status_code == 200  # the connection is still good


def test_the_absurd_floor_cap_is_in_usd_so_an_ordinary_floor_in_a_small_unit_bids(client: TestClient) -> None:
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    engine.swap(ServingState.build(snapshot([banner_group(bid_micros=9_000_000)],
                                            fx=FxRates({"USD": 1, "IDR": "0.000063"}))))
    imp = {"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 100_001, "bidfloorcur": "IDR"}  # about 6.30 USD
    assert first_bid(client.post("/openrtb2/bid", json=bid_request(imp=[imp])))["price"] == 9.0
    imp["bidfloor"] = 10**12  # 63 million USD
    assert client.post("/openrtb2/bid", json=bid_request(imp=[imp])).status_code == 204


@pytest.mark.parametrize(
    "banner",
    [
        {"format": [{}]},
        {"format": [{"w": 30}]},
        {"w": 300},
        {"w": -300, "h": 250},
        {"w": 10**30, "h": 250},
        {"format": []},
    ],
)
def test_unknown_absent_or_absurd_sizes_never_match_any_size(client: TestClient, banner: dict[str, Any]) -> None:
    serve(client, [banner_group(creatives=(creative(1, format="x", width=600, height=500),)), banner_group(2)])
    response = client.post("/openrtb2/bid", json=bid_request(imp=[{"id": "1", "banner": banner}]))
    assert response.status_code in (400, 204)  # refused as Prebid refuses it, or (10^30) simply fits nothing
    if response.status_code == 400:
        assert response.json()["error"]["message"].startswith("imp[0].banner")


def test_huge_well_formed_sizes_are_no_bid(client: TestClient) -> None:
    serve(client, [banner_group()])
    huge = bid_request(imp=[{"id": "1", "banner": {"w": 10**9, "h": 10**9}}])
    assert client.post("/openrtb2/bid", json=huge).status_code == 204


def test_a_non_ascii_country_is_unknown_and_leaks_no_reservation(client: TestClient) -> None:
    serve(client, [banner_group(pacing="asap", daily_budget_micros=3_000)])  # one 3.00 CPM bid at a time
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    # A floor of 3.00 makes the bid cost 3.00 CPM: 3,000 micros, the whole budget.
    odd = bid_request(
        device={"ifa": IFA, "geo": {"country": "ÉÉ"}},
        imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 3.0}],
    )
    bid = first_bid(client.post("/openrtb2/bid", json=odd))
    engine._blocked_until.clear()
    assert client.post("/openrtb2/bid", json=odd).status_code == 204  # the first bid holds the budget
    engine._blocked_until.clear()
    lost = bid["lurl"].replace("${AUCTION_LOSS}", "102").replace(AUCTION_PRICE, "1")
    assert client.get(_local(lost)).status_code == 204
    client.app.state.pipeline.drain()  # type: ignore[attr-defined]  # billing gives it back in the log's order
    assert client.post("/openrtb2/bid", json=odd).status_code == 200


def test_duplicate_imp_ids_and_both_site_and_app_are_refused(client: TestClient) -> None:
    serve(client, [banner_group()])
    imp = {"id": "1", "banner": {"w": 300, "h": 250}}
    response = client.post("/openrtb2/bid", json=bid_request(imp=[imp, imp]))
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("imp[1].id: duplicates imp[0].id")
    both = client.post("/openrtb2/bid", json=bid_request(site={"page": "https://example.com"}))
    assert both.status_code == 400 and "site" in both.json()["error"]["message"]


def test_wrong_types_are_refused_with_the_field(client: TestClient) -> None:
    serve(client, [banner_group()])
    response = client.post("/openrtb2/bid", json=bid_request(regs={"gdpr": "yes"}))
    assert response.status_code == 400 and "regs.gdpr" in response.json()["error"]["message"]
    response = client.post("/openrtb2/bid", json=bid_request(user={"ext": {"consent": 1}}))
    assert response.status_code == 400 and "user.ext.consent" in response.json()["error"]["message"]


def test_gzip_bodies_are_inflated_within_the_size_limit(client: TestClient) -> None:
    serve(client, [banner_group()])
    body = json.dumps(bid_request()).encode()
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    assert client.post("/openrtb2/bid", content=gzip.compress(body), headers=headers).status_code == 200
    padded = json.dumps(bid_request(ext={"pad": " " * 300_000})).encode()  # 300 KB inflated, ~1 KB sent
    assert len(gzip.compress(padded)) < 4_096
    assert client.post("/openrtb2/bid", content=gzip.compress(padded), headers=headers).status_code == 413
    assert client.post("/openrtb2/bid", content=b"\x1f\x8bnot gzip", headers=headers).status_code == 400
    assert client.post("/openrtb2/bid", content=gzip.compress(body)[:-8], headers=headers).status_code == 400
    assert client.post("/openrtb2/bid", content=gzip.compress(body) + b"trailing", headers=headers).status_code == 400
    other = {**headers, "content-encoding": "br"}
    assert client.post("/openrtb2/bid", content=body, headers=other).status_code == 400
    assert client.post("/openrtb2/bid", content=body, headers={"content-type": "application/json"}).status_code == 200


# ---------- stored invalid traffic ----------


@pytest.mark.parametrize(
    ("address", "stored"),
    [("203.0.113.77", "203.0.113.0"), ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::")],
)
def test_invalid_traffic_records_keep_only_the_network_of_the_client(api: Api, address: str, stored: str) -> None:
    serve(api.client, [banner_group()])
    bid = first_bid(api.client.post("/openrtb2/bid", json=bid_request()))
    forged = _local(bid["burl"]).replace("t=", "t=x", 1)
    device = TestClient(api.client.app, client=(address, 40_000))  # the running app, seen from that address
    assert device.get(forged).status_code == 400
    api.settle()
    admin = api.admin()
    body = api.client.get("/api/v1/tracking/invalid", headers=admin.headers).json()
    assert [item["client_ip"] for item in body["items"]] == [stored]


# ---------- over a real keep-alive connection ----------


def test_hostile_requests_never_break_the_exchange_connection(settings: Settings) -> None:
    """uvicorn on loopback: hostile bid requests get their 204/400 and the same connection bids right after."""
    import http.client
    import socket
    import threading
    import time

    import uvicorn

    from adstack.app import create_app

    app = create_app(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        serve_app = app.state.serving
        serve_app.engine.swap(ServingState.build(snapshot([banner_group()], fx=FxRates({"USD": 1}))))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json"}
        hostile: list[tuple[bytes, dict[str, str], int]] = [
            (
                json.dumps(bid_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 1e308}])).encode(),
                headers,
                204,
            ),
            (b'{"id": "x", "imp": [', headers, 400),
            (json.dumps(bid_request(device={"geo": {"country": "ÉÉ"}})).encode(), headers, 200),
            (json.dumps(bid_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}}] * 2)).encode(), headers, 400),
            (b"\x1f\x8b\x08\x00garbage", {**headers, "Content-Encoding": "gzip"}, 400),
            (json.dumps(bid_request(tmax=1)).encode(), headers, 204),
            (json.dumps(bid_request(regs={"gpp": "~" * 5000, "gpp_sid": [7]})).encode(), headers, 200),
            # Nested past the decoder's depth: in the request, and in a native request string.
            (b'{"id": "x", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}], "ext": ' + b"[" * 5000
             + b"]" * 5000 + b"}", headers, 400),
            (json.dumps(bid_request(imp=[{"id": "1", "native": {"request": '{"assets":' + "[" * 5000 + "]" * 5000
                                                                 + "}"}}])).encode(), headers, 400),
        ]
        for body, sent_headers, status in hostile:
            connection.request("POST", "/openrtb2/bid", body=body, headers=sent_headers)
            response = connection.getresponse()
            response.read()
            assert response.status == status, body[:80]
            connection.request("POST", "/openrtb2/bid", body=json.dumps(bid_request()).encode(), headers=headers)
            after = connection.getresponse()
            assert after.status == 200 and json.loads(after.read())["seatbid"]
        connection.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_space_reserve_holds_for_a_bidder_whatever_deals_the_request_carries(client: TestClient) -> None:
    from adstack.serving.snapshot import AdSpaceSnap
    from tests.serving.support import PUBLISHER_ID, SPACE_ID, snapshot

    reserved = AdSpaceSnap(SPACE_ID, PUBLISHER_ID, "space", "banner", reserve_price_micros=3_000_000)  # 3.00 CPM
    # CPC 0.30 on banner and interstitial: its bound (interstitial) is above the reserve, its banner value below.
    cpc = banner_group(2, bid_type="cpc", bid_micros=300_000,
                       targeting={"placement_types": frozenset({"banner", "interstitial"})})
    client.app.state.serving.engine.swap(  # type: ignore[attr-defined]
        ServingState.build(snapshot([cpc], spaces=[reserved])))
    imp = {"id": "1", "tagid": str(SPACE_ID), "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}
    for offered in (imp, {**imp, "pmp": {"private_auction": 0, "deals": [{"id": "OTHER", "bidfloor": 1.0}]}}):
        answer = client.post("/openrtb2/bid", json=bid_request(imp=[offered], app={"bundle": "com.publisher.app"}))
        assert answer.status_code == 204, offered
