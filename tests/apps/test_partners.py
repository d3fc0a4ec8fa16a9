"""Each partner's postback template asks only for macros the partner's own pages name. A macro no page read of
the partner names stays in the template only when its spec marks it unverified, which the integration shows the
operator and docs/partners.md lists under the partner."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adstack.apps.partners import SPECS
from adstack.core.vocabulary import Partner
from tests.support import Api, expect

# The macros each partner's pages name, for the default network name (Singular's {cl?..} and {NETWORK=..} carry it).
DOCUMENTED: dict[Partner, frozenset[str]] = {
    # Source: https://support.appsflyer.com/hc/en-us/articles/207273946-Postback-macros-for-ad-networks
    # ((advertiserId), (app-id), (install-unix-ts), (click-ts)); https://support.appsflyer.com/hc/en-us/articles/
    # 360016751637-Postback-macros-for-analytics-partners (event_name, event_revenue, event_revenue_currency,
    # event_time, event_value); https://support.appsflyer.com/hc/en-us/articles/115004744123 (reject_reason,
    # is_rejected).
    Partner.APPSFLYER: frozenset({
        "(advertiserId)", "(app-id)", "(install-unix-ts)", "(click-ts)", "(event_name)", "(event_revenue)",
        "(event_revenue_currency)", "(event_time)", "(event_value)", "(reject_reason)", "(is_rejected)",
    }),
    # Source: https://help.adjust.com/en/article/install-callbacks ({installed_at}; "other recommended
    # placeholders" {gps_adid}, {adid}, {tracker}, {tracker_name}, {activity_kind}, {created_at});
    # https://help.adjust.com/en/article/event-callbacks ({event}, {event_name});
    # https://help.adjust.com/en/article/ad-revenue-callbacks ({revenue_float}, {currency});
    # https://help.adjust.com/en/article/rejected-install-reattribution-callbacks-partner ({rejection_reason});
    # https://help.adjust.com/en/partner/placeholders ({label}).
    Partner.ADJUST: frozenset({
        "{activity_kind}", "{label}", "{gps_adid}", "{adid}", "{event}", "{event_name}", "{revenue_float}",
        "{currency}", "{created_at}", "{installed_at}", "{tracker_name}", "{rejection_reason}", "{tracker}",
    }),
    # Source: https://appmetrica.yandex.com/docs/en/mobile-tracking/postback-specification, "List of postback
    # macros" (read in its source, diplodoc-platform/docs ru/mobile-tracking/postback-specification.md).
    Partner.APPMETRICA: frozenset({
        "{click_id}", "{google_aid}", "{transaction_id}", "{attributed_touch_type}", "{match_type}",
        "{conversion_event_name}", "{conversion_event_json}", "{conversion_timestamp}", "{install_timestamp}",
        "{click_timestamp}", "{price}", "{currency}", "{app_package_name}",
    }),
    # Source: https://help.branch.io/using-branch/docs/postback-macros-functions ("Postback Data").
    Partner.BRANCH: frozenset({"${(id)!}", "${(name)!}", "${(event_timestamp)!}", "<#if attributed>1<#else>0</#if>"}),
    # Source: https://support.singular.net/hc/en-us/articles/115004063323 (campaign and device macros; {AMOUNT},
    # {EVTNAME}, {UTCM} in its example postback; {NETWORK} in its earlier copy on singular.zendesk.com).
    Partner.SINGULAR: frozenset({
        "{cl?adstack}", "{NETWORK=adstack}", "{NETWORK}", "{IS_VIEWTHROUGH}", "{IS_RE_ENG}", "{EVENT_IP}",
        "{EVTNAME}", "{AMOUNT}", "{UTCM}",
    }),
    # Source: https://support.kochava.com/campaign-management/create-a-custom-postback describes its macros, but the
    # readable copies lost their names: none is documented.
    Partner.KOCHAVA: frozenset(),
    # Source: https://docs.tenjin.com/v1/docs/en/callbacks ("macros such as {{advertising_id}}, {{ip_address}} or
    # {{bundle_id}}").
    Partner.TENJIN: frozenset({"{{advertising_id}}", "{{ip_address}}", "{{bundle_id}}"}),
    # Source: https://docs.tracker.my.com/tracking/postbacks/macros?lang=en ({mt_gaid}, {mt_event_ts},
    # {mt_payment_sum_src}); https://docs.tracker.my.com/en/tracking/postbacks/parameters (SubID mt_sub1).
    Partner.MYTRACKER: frozenset({"{mt_sub1}", "{mt_gaid}", "{mt_event_ts}", "{mt_payment_sum_src}"}),
    # Source: https://developers.airbridge.io/v1.1-en/docs/postback-integration: the readable copies stop before its
    # postback macros, so none is documented.
    Partner.AIRBRIDGE: frozenset(),
}


def _template_macros(partner: Partner) -> list[str]:
    spec = SPECS[partner]
    return [macro for _, macro in spec.postback_fields(spec.default_network_name)]


def _docs_section(partner: Partner) -> str:
    text = (Path(__file__).parents[2] / "docs" / "partners.md").read_text()
    match = re.search(rf"^## {re.escape(SPECS[partner].display_name)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, partner
    return match.group(1)


@pytest.mark.parametrize("partner", list(Partner))
def test_the_postback_template_asks_only_for_documented_macros(partner: Partner) -> None:
    """Every macro of the template is on the partner's page, or is marked unverified (and is not on it)."""
    spec = SPECS[partner]
    macros = _template_macros(partner)
    unverified = set(spec.unverified_macros)
    assert sorted(set(macros) - DOCUMENTED[partner] - unverified) == []
    assert sorted(unverified & DOCUMENTED[partner]) == []  # a documented macro is not called unverified
    assert sorted(unverified - set(macros)) == []  # nor is one the template does not use
    section = _docs_section(partner)
    assert "unverified" in section or not unverified
    assert [m for m in spec.unverified_macros if m not in section] == []


def test_the_integration_names_the_unverified_macros_to_the_operator(api: Api) -> None:
    adv = api.approved_account()
    app = expect(
        api.client.post(
            "/api/v1/apps",
            headers=adv.headers,
            json={"package_name": "com.example.runner", "name": "Runner", "partner": "kochava"},
        ),
        201,
    )
    integrations = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations", headers=adv.headers), 200)
    for item in integrations:
        spec = SPECS[Partner(item["partner"])]
        assert item["unverified_macros"] == list(spec.unverified_macros)
        notes = [step for step in item["steps"] if "confirm these macros" in step]
        if not spec.unverified_macros:
            assert notes == []
            continue
        (note,) = notes
        assert all(macro in note for macro in spec.unverified_macros)
        # right after the step handing over the postback URL
        assert item["postback_url_template"] in item["steps"][item["steps"].index(note) - 1]
