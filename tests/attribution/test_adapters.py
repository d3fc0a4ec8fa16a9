"""Partner adapters as pure functions: missing values, device ids, times, revenue and dedupe keys."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adstack.attribution.adapters import ADAPTERS, parse_postback
from adstack.attribution.postback_fields import PartnerVerdict, PostbackError, parse_revenue
from adstack.core.vocabulary import Partner
from adstack.tracking.devices import GaidForm, normalise_gaid

GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def test_singulars_own_event_names_are_not_mistaken_for_macros() -> None:
    purchase = parse_postback(Partner.SINGULAR, {"evtname": "__iap__", "amount": "1.99", "currency": "USD"})
    assert (purchase.is_install, purchase.event_name) == (False, "__iap__")
    ad_revenue = parse_postback(Partner.SINGULAR, {"evtname": "__ADMON_USER_LEVEL_REVENUE__"})
    assert (ad_revenue.is_install, ad_revenue.event_name) == (False, "__ADMON_USER_LEVEL_REVENUE__")
    assert parse_postback(Partner.SINGULAR, {"evtname": "__START__"}).is_install
    # Another partner's __X__ is still an unreplaced macro.
    assert parse_postback(Partner.KOCHAVA, {"event_name": "__iap__"}).is_install


def test_gaid_forms() -> None:
    upper = normalise_gaid(GAID.upper())
    assert upper is not None and (upper.form, upper.value) == (GaidForm.RAW, GAID)
    md5 = hashlib.md5(GAID.encode()).hexdigest()
    sha1 = hashlib.sha1(GAID.encode()).hexdigest()
    from_md5, from_sha1 = normalise_gaid(md5.upper()), normalise_gaid(sha1)
    assert from_md5 is not None and from_md5.form is GaidForm.MD5 and from_md5.md5 == upper.md5
    assert from_sha1 is not None and from_sha1.form is GaidForm.SHA1 and from_sha1.sha1 == upper.sha1
    assert from_md5.device_hash == upper.device_hash
    for nothing in ("00000000-0000-0000-0000-000000000000", "not-an-id", "{gps_adid}", None):
        assert normalise_gaid(nothing) is None


@pytest.mark.parametrize(
    "text",
    [
        "1735732800",
        "1735732800000",
        "1735732800.5",
        "2025-01-01 12:00:00",
        "2025-01-01T12:00:00Z",
        "2025-01-01 15:00:00+03:00",
        "2025-01-01 12:00:00.000",
    ],
)
def test_times_in_seconds_milliseconds_or_text(text: str) -> None:
    parsed = parse_postback(Partner.ADJUST, {"activity_kind": "install", "created_at": text})
    assert parsed.occurred_at is not None
    assert parsed.occurred_at.replace(microsecond=0) == datetime(2025, 1, 1, 12, tzinfo=UTC)


def test_an_unreadable_field_is_flagged_and_the_rest_kept() -> None:
    lots = parse_postback(
        Partner.APPSFLYER, {"event_name": "af_purchase", "event_revenue": "lots", "advertising_id": GAID}
    )
    assert lots.revenue is None and lots.unreadable == {"event_revenue": "decimal"}
    assert lots.event_name == "af_purchase" and lots.gaid is not None
    comma = parse_postback(Partner.APPSFLYER, {"event_name": "af_purchase", "event_revenue": "1,99"})
    assert comma.revenue == Decimal("1.99") and comma.notes == ("event_revenue:decimal_comma",)
    dollars = parse_postback(
        Partner.APPSFLYER, {"event_name": "x", "event_revenue": "1", "event_revenue_currency": "US Dollar"}
    )
    assert dollars.revenue == Decimal(1) and dollars.currency == ""
    assert dollars.unreadable == {"event_revenue_currency": "currency"}
    when = parse_postback(Partner.BRANCH, {"name": "purchase", "event_timestamp": "yesterday"})
    assert when.occurred_at is None and when.unreadable == {"event_timestamp": "timestamp"}
    with pytest.raises(PostbackError):  # the strict readers still name the field and rule
        parse_revenue("1,999", "event_revenue")


def test_revenue_is_decimal_with_bounded_precision() -> None:
    parsed = parse_postback(Partner.APPSFLYER, {"event_name": "af_purchase", "event_revenue": "0.1e-999999"})
    assert parsed.revenue == Decimal(0) and parsed.currency == "USD"
    exact = parse_postback(Partner.APPMETRICA, {"event_name": "purchase", "revenue": "19.990", "currency": "eur"})
    assert exact.revenue == Decimal("19.99") and exact.currency == "EUR"


def test_revenue_past_a_billion_units_is_out_of_range() -> None:
    """Ten purchases of 999,999,999,999 USD wrapped the reports' 64-bit revenue sum to a negative number."""
    assert parse_revenue("999999999.99", "revenue") == Decimal("999999999.99")
    assert parse_revenue("-999999999", "revenue") == Decimal(-999999999)  # a refund
    for text in ("1000000000", "999999999999", "-1e9"):
        with pytest.raises(PostbackError) as refused:
            parse_revenue(text, "revenue")
        assert refused.value.rule == "decimal_range"
    parsed = parse_postback(Partner.APPMETRICA, {"event_name": "purchase", "price": "999999999999", "currency": "USD"})
    assert parsed.revenue is None and parsed.unreadable == {"price": "decimal_range"}
    int64 = 2**63 - 1
    assert 9_000 * int(parse_revenue("999999999.99", "revenue") * 1_000_000) < int64


@pytest.mark.parametrize("text", ["1e-400", "0001-01-01T00:00:00-05:00", "1999-12-31T23:59:59Z", "0", "4102444800",
                                  "2100-01-01T00:00:00Z", "946684799"])
def test_a_partner_time_outside_2000_to_2099_is_unreadable(text: str) -> None:
    """Such times were stored (1970, year 1) and fell out of every report, which starts in 2000."""
    parsed = parse_postback(Partner.BRANCH, {"name": "install", "event_timestamp": text})
    assert parsed.occurred_at is None and parsed.unreadable == {"event_timestamp": "timestamp_range"}


def test_dedupe_keys() -> None:
    fields = {"event_name": "af_purchase", "clickid": "x", "advertising_id": GAID, "event_time": "1735732800"}
    assert (
        parse_postback(Partner.APPSFLYER, fields).dedupe_key
        == parse_postback(Partner.APPSFLYER, dict(fields)).dedupe_key
    )
    other = parse_postback(Partner.APPSFLYER, {**fields, "event_time": "1735732801"})
    assert other.dedupe_key != parse_postback(Partner.APPSFLYER, fields).dedupe_key
    assert parse_postback(Partner.APPMETRICA, {"transaction_id": "77"}).dedupe_key == "appmetrica:id:77"
    assert parse_postback(Partner.BRANCH, {"id": "b-9", "name": "install"}).dedupe_key == "branch:id:b-9"


def test_revenue_as_sent_tells_two_events_of_one_second_apart() -> None:
    """Adjust's `created_at` and MyTracker's `mt_event_ts` are whole seconds: two ad-revenue events or purchases of
    one device in one second had one key, and the second one's revenue was lost."""
    fields = {"activity_kind": "ad_revenue", "gps_adid": GAID, "label": "x", "created_at": "1735732800",
              "currency": "USD"}
    key = parse_postback(Partner.ADJUST, {**fields, "revenue_float": "0.0150"}).dedupe_key
    assert parse_postback(Partner.ADJUST, {**fields, "revenue_float": "0.0420"}).dedupe_key != key
    assert parse_postback(Partner.ADJUST, {**fields, "revenue_float": "0.0150", "currency": "EUR"}).dedupe_key != key
    # The partner's retry resends the same amount, however it spells it.
    for same in ("0.0150", "0.015", "1.5E-2", "0.01500000"):
        assert parse_postback(Partner.ADJUST, {**fields, "revenue_float": same}).dedupe_key == key, same
    purchase = {"event": "purchase", "gaid": GAID, "clickid": "x", "event-time": "1735732800", "currency": "USD"}
    assert parse_postback(Partner.MYTRACKER, {**purchase, "revenue": "4.990"}).dedupe_key == parse_postback(
        Partner.MYTRACKER, {**purchase, "revenue": "4.99"}).dedupe_key != parse_postback(
        Partner.MYTRACKER, {**purchase, "revenue": "19.99"}).dedupe_key


def test_a_postback_without_revenue_keeps_the_key_stored_before_revenue_counted() -> None:
    """Keys of postbacks received before revenue was part of the key: their retries must still be found."""
    session = {"activity_kind": "session", "gps_adid": GAID, "label": "x", "created_at": "1735732800"}
    assert parse_postback(Partner.ADJUST, session).dedupe_key == "adjust:h:dd9bb1446ee1a9b5238a9c52f2f7b3cc5387c176"
    assert parse_postback(Partner.ADJUST, {**session, "revenue_float": "0", "currency": "USD"}).dedupe_key == \
        "adjust:h:dd9bb1446ee1a9b5238a9c52f2f7b3cc5387c176"
    level = {"event": "level_up", "gaid": GAID, "clickid": "x", "event-time": "1735732800"}
    assert parse_postback(Partner.MYTRACKER, level).dedupe_key == "mytracker:h:0214bbf08eebcd442b995b7626219d6591046ffd"


@pytest.mark.parametrize("partner", list(Partner))
def test_a_name_read_as_a_reinstall_is_a_reattribution_for_every_partner(partner: Partner) -> None:
    """Singular read `reinstall` as an install but took its re-attribution from {IS_RE_ENG} alone: charged as a new
    install where Kochava's was a reinstall."""
    adapter = ADAPTERS[partner]
    for name in sorted(adapter.reinstall_names):
        fields = {field: name for field in (*adapter.event_fields, "event", "event_name")}
        parsed = parse_postback(partner, fields)
        if parsed.is_install:
            assert parsed.reattribution, (partner, name)


def test_partner_install_and_reinstall_signals() -> None:
    assert parse_postback(Partner.ADJUST, {"activity_kind": "reattribution"}).reattribution
    assert parse_postback(Partner.KOCHAVA, {"event_name": "_install"}).is_install
    assert not parse_postback(Partner.KOCHAVA, {"event_name": "purchase"}).is_install
    session = parse_postback(Partner.ADJUST, {"activity_kind": "session"})
    assert not session.is_install and session.event_name == "session"
    assert parse_postback(Partner.BRANCH, {"name": "reinstall", "attributed": "1"}).partner_attributed is True


def test_adjust_revenue_in_cents_or_units_and_rejections() -> None:
    cents = parse_postback(Partner.ADJUST, {"activity_kind": "event", "event": "abc123", "revenue": "345"})
    assert cents.revenue == Decimal("3.45")
    units = parse_postback(
        Partner.ADJUST, {"activity_kind": "event", "event": "abc123", "revenue": "345", "revenue_float": "3.45"}
    )
    assert units.revenue == Decimal("3.45")
    rejected = parse_postback(
        Partner.ADJUST, {"activity_kind": "rejected_install", "rejection_reason": "engagement_injection"}
    )
    assert rejected.is_install and rejected.verdict is not None and rejected.verdict.value == "rejected"
    other = parse_postback(
        Partner.ADJUST, {"activity_kind": "install", "network_name": "Other Network"}, frozenset({"adstack"})
    )
    assert other.verdict is not None and other.verdict.value == "other_network"
    # {tracker_name} is the link's name in Campaign Lab, its first level the network.
    for name, expected in (("adstack::Spring::Feed::Banner_320x50", "attributed"), ("Organic", "organic"),
                           ("Facebook Installs::x::y", "other_network"), ("adstack", "attributed")):
        parsed = parse_postback(Partner.ADJUST, {"activity_kind": "install", "tracker_name": name},
                                frozenset({"adstack"}))
        assert parsed.verdict is not None and parsed.verdict.value == expected, name


def test_partner_verdicts_from_their_own_fields() -> None:
    def verdict(partner: Partner, fields: dict[str, str]) -> str | None:
        parsed = parse_postback(partner, fields, frozenset({"adstack", "adstack_int"}))
        return parsed.verdict.value if parsed.verdict else None

    assert verdict(Partner.APPMETRICA, {"ext": "", "touch_type": ""}) == "organic"
    assert verdict(Partner.APPMETRICA, {"ext": "x", "touch_type": "impression"}) == "attributed"
    assert verdict(Partner.APPMETRICA, {"ext": "x"}) is None  # the guide's URL carries no verdict
    assert verdict(Partner.SINGULAR, {"is_ours": "0", "network": "Organic"}) == "organic"
    assert verdict(Partner.SINGULAR, {"is_ours": "0", "network": "Other"}) == "other_network"
    assert (
        verdict(Partner.APPSFLYER, {"media_source": "adstack_int", "is_primary_attribution": "false"})
        == "other_network"
    )
    assert verdict(Partner.APPSFLYER, {"reject_reason": "ctit_anomalies"}) == "rejected"
    assert verdict(Partner.APPSFLYER, {"rejected_reason": "site_blacklist", "rejected_reason_value": "1123456"}) \
        == "rejected"
    assert verdict(Partner.BRANCH, {"attributed": "0"}) == "organic"
    assert verdict(Partner.TENJIN, {}) is None


def test_dedupe_key_hashes_identifying_fields_only() -> None:
    fields = {
        "event_name": "af_purchase",
        "clickid": "x",
        "advertising_id": GAID,
        "event_time": "1735732800",
        "event_revenue": "9.20",
        "event_value": '{"sku": "a", "qty": "1"}',
    }
    key = parse_postback(Partner.APPSFLYER, fields).dedupe_key
    # A retry with an extra field, its fields in another order, its JSON reordered, its revenue spelt otherwise.
    retry = {
        "retry": "1",
        **dict(reversed(list(fields.items()))),
        "event_value": '{"qty": "1", "sku": "a"}',
        "event_revenue": "9.2",
        "media_source": "adstack_int",
    }
    assert parse_postback(Partner.APPSFLYER, retry).dedupe_key == key
    # Another device, click, event, time or event parameter is another event.
    for name, value in (
        ("advertising_id", "38400000-8cf0-11bd-b23e-10b96e40000e"),
        ("clickid", "y"),
        ("event_name", "af_login"),
        ("event_time", "1735732801"),
        ("event_value", '{"sku": "b", "qty": "1"}'),
    ):
        assert parse_postback(Partner.APPSFLYER, {**fields, name: value}).dedupe_key != key, name


@pytest.mark.parametrize(
    ("partner", "fields"),
    [
        (Partner.APPMETRICA, {"ext": "c1", "gaid": GAID, "touch_type": "click", "rejection_reason": "bots"}),
        (Partner.SINGULAR, {"cl": "c1", "aifa": GAID, "is_ours": "1", "reject_reason": "ctit_anomalies"}),
        (Partner.BRANCH, {"click_id": "c1", "aaid": GAID, "attributed": "1", "is_rejected": "1"}),
        (
            Partner.APPSFLYER,
            {"clickid": "c1", "advertising_id": GAID, "media_source": "adstack_int", "blocked_reason": "bots"},
        ),
    ],
)
def test_a_rejection_wins_over_an_attributed_verdict(partner: Partner, fields: dict[str, str]) -> None:
    parsed = parse_postback(partner, fields, frozenset({"adstack_int"}))
    assert parsed.verdict is PartnerVerdict.REJECTED and parsed.partner_attributed is False, parsed.verdict_reason


def test_appmetrica_unattributed_names_the_other_network() -> None:
    other = parse_postback(Partner.APPMETRICA, {"gaid": GAID, "attributed_touch_type": "", "network_name": "x"})
    assert other.verdict is PartnerVerdict.OTHER_NETWORK
    assert (
        parse_postback(Partner.APPMETRICA, {"gaid": GAID, "attributed_touch_type": ""}).verdict
        is PartnerVerdict.ORGANIC
    )


def test_kochava_reads_its_numeric_network_id_against_the_apps_id() -> None:
    """An app set up with Kochava's numeric network id: the id decides, and a name Kochava labels it with, which
    adstack is never told, decides nothing; an app set up with a name is judged by the name as before."""
    by_id = frozenset({"48213", "adstack", "kochava"})
    label = "Xiaomi Global - Android"
    cases = (
        ({"network_id": "48213", "network_name": label}, by_id, PartnerVerdict.ATTRIBUTED),
        ({"network_id": "0048213"}, by_id, PartnerVerdict.ATTRIBUTED),
        ({"network_id": "51007", "network_name": "Other Ads"}, by_id, PartnerVerdict.OTHER_NETWORK),
        ({"network_id": "51007", "network_name": "Organic"}, by_id, PartnerVerdict.ORGANIC),
        ({"network_id": "{network_id}", "network_name": label}, by_id, None),
        ({"network_name": label}, by_id, None),
        ({"network_name": "adstack"}, by_id, PartnerVerdict.ATTRIBUTED),
        ({"network_name": "Organic"}, by_id, PartnerVerdict.ORGANIC),
        ({"network_id": "48213", "network_name": "Other Ads"}, frozenset({"adstack", "kochava"}),
         PartnerVerdict.OTHER_NETWORK),
        ({"network_id": "48213"}, frozenset({"adstack", "kochava"}), None),
    )
    for fields, networks, expected in cases:
        parsed = parse_postback(Partner.KOCHAVA, {"event_name": "_install", **fields}, networks)
        assert parsed.verdict is expected, fields
