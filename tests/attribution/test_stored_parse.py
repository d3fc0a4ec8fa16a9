"""The adapters' reading stored with a postback when it is received, and read back by attribution: it must give
what reading the fields again gives, with the app's network names applied, and be ignored when it is stale."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from adstack.attribution.adapters import (
    ADAPTERS,
    PARSE_VERSION,
    Adapter,
    parse_postback,
    read_postback,
    stored_parse,
    stored_parse_text,
)
from adstack.core.settings import Settings
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect

GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"

_NAMES = sorted({name for adapter in ADAPTERS.values() for group in (
    adapter._click_names, adapter._gaid_names, adapter._event_names, adapter._time_names, adapter._revenue_names,
    adapter._currency_names, adapter.install_time_fields, adapter.click_time_fields, adapter.event_id_fields,
    adapter.attributed_fields, adapter.network_fields, adapter.touch_type_fields, adapter.package_fields,
    adapter.json_fields, adapter.event_param_fields) for name in group}
    | {"activity_kind", "adid", "rejection_reason", "reject_reason", "rejected_reason", "is_rejected",
       "is_primary_attribution", "is_ours", "is_viewthrough", "is_re_eng"})
_VALUES = ["", "1", "0", "true", "install", "af_purchase", "purchase", "reattribution", "rejected_install", "event",
           "session", "1735732800", "1735732800000", "2025-01-01 12:00:00", "yesterday", "1.99", "1,99", "lots",
           "USD", "EUR", "US Dollar", GAID, GAID.upper(), "{gps_adid}", "(clickid)", "null", "organic",
           "Organic", "adstack", "AdStack Network", "other network", "click", "impression",
           '{"level":"3","price":"1.5"}', "com.example.game", "__iap__"]
_NETWORKS = [frozenset(), frozenset({"adstack"}), frozenset({"adstack network", "adstack"})]

fields = st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(_VALUES), max_size=12)


@settings(max_examples=400, deadline=None)
@given(partner=st.sampled_from(list(Partner)), values=fields, networks=st.sampled_from(_NETWORKS))
def test_the_stored_reading_is_the_reading_of_the_fields(partner: Partner, values: dict[str, str],
                                                          networks: frozenset[str]) -> None:
    received = parse_postback(partner, values)  # as the receiver reads it: without the app's network names
    assert read_postback(partner, values, networks, stored_parse_text(received)) == \
        parse_postback(partner, values, networks)
    # The log's record carries it as JSON values; the postbacks consumer writes them as text.
    logged = orjson.dumps(orjson.loads(orjson.dumps(stored_parse(received)))).decode()
    assert read_postback(partner, values, networks, logged) == parse_postback(partner, values, networks)


def test_the_network_names_change_the_verdict_of_a_stored_reading() -> None:
    values = {"media_source": "AdStack Network", "advertising_id": GAID}
    stored = stored_parse_text(parse_postback(Partner.APPSFLYER, values))
    assert read_postback(Partner.APPSFLYER, values, frozenset(), stored).verdict == "other_network"
    ours = read_postback(Partner.APPSFLYER, values, frozenset({"adstack network"}), stored)
    assert (ours.verdict, ours.partner_attributed) == ("attributed", True)


def _another_reading() -> dict[str, object]:
    """A stored reading that says something the fields do not: an install with another click id."""
    document = stored_parse(parse_postback(Partner.APPSFLYER, {"clickid": "stored-click"}))
    assert isinstance(document, dict)
    return document


def test_a_reading_of_another_version_or_partner_or_damaged_is_read_again() -> None:
    values = {"clickid": "sent-click", "event_name": "af_purchase"}
    expected = parse_postback(Partner.APPSFLYER, values)
    current = _another_reading()
    assert read_postback(Partner.APPSFLYER, values, frozenset(), orjson.dumps(current)).click_id == "stored-click"
    older = {**current, "version": f"0.{PARSE_VERSION.partition('.')[2]}"}
    for stale in (orjson.dumps(older), orjson.dumps({**current, "version": 1}), b'{"version": "1', b"[]",
                  b'{"version": "1", "parsed": {"partner": "x"}}', None):
        assert read_postback(Partner.APPSFLYER, values, frozenset(), stale) == expected
    # A reading stored for another partner is not this postback's.
    assert read_postback(Partner.ADJUST, {"label": "sent-click"}, frozenset(), orjson.dumps(current)).click_id == \
        "sent-click"


def test_the_version_follows_the_shape_of_the_reading() -> None:
    """A field added to the reading (even with a default, which an older reading would decode to) changes the
    version, so readings stored before it are read again."""
    from dataclasses import make_dataclass

    from adstack.attribution.adapters import reading_version
    from adstack.attribution.postback_fields import ParsedPostback

    assert reading_version(ParsedPostback) == PARSE_VERSION
    grown = make_dataclass("ParsedPostback", [("campaign_hint", str, "")], bases=(ParsedPostback,), frozen=True)
    assert reading_version(grown) != PARSE_VERSION


def test_only_a_named_network_depends_on_the_apps_names() -> None:
    for adapter in ADAPTERS.values():
        assert issubclass(adapter, Adapter)
        assert not adapter.names_network({})
        assert adapter.names_network({adapter.network_fields[0]: "some network"})
        assert not adapter.names_network({adapter.network_fields[0]: "{network}"})


def test_the_receiver_stores_its_reading_with_the_postback(api: Api, settings: Settings) -> None:
    from sqlalchemy import select

    from adstack.attribution.models import Postback

    s = scenario(api, settings, partner=Partner.APPSFLYER)
    api.client.app.state.postback_worker.stop()  # type: ignore[attr-defined]  # attributed below, when asked
    base = s.integration()["postback_url_template"].replace("http://testserver", "").split("?")
    signed = "&".join(base[1].split("&")[:3])  # partner, app, sig
    sent = [{"clickid": "c-get", "advertising_id": new_gaid(), "event_name": "af_purchase",
             "event_revenue": "1.99", "event_revenue_currency": "EUR", "event_time": "1735732800"},
            {"clickid": "c-post", "advertising_id": new_gaid(), "install_unix_ts": "1735732800"}]
    expect(api.client.get(f"{base[0]}?{signed}&{urlencode(sent[0])}"), 200)  # the raw fast path
    expect(api.client.post(f"{base[0]}?{signed}", json=sent[1]), 200)  # the documented route, a JSON body
    api.settle()
    api.session.expire_all()
    rows = {row.fields["clickid"]: row for row in api.session.scalars(
        select(Postback).where(Postback.app_id == s.app["id"]))}
    assert set(rows) == {"c-get", "c-post"}
    for values in sent:
        row = rows[values["clickid"]]
        assert row.parsed is not None
        assert read_postback(Partner.APPSFLYER, row.fields, frozenset(), row.parsed) == \
            parse_postback(Partner.APPSFLYER, row.fields)
        assert orjson.loads(row.parsed)["version"] == PARSE_VERSION
    # Once processed, a postback keeps its fields and drops the reading it no longer needs.
    assert s.process() == 2
    api.session.expire_all()
    for row in api.session.scalars(select(Postback).where(Postback.app_id == s.app["id"])):
        assert (row.status != "pending", row.parsed, row.fields["clickid"] in rows) == (True, None, True)
