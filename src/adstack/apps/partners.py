"""What each measurement partner needs from us: the click tracking link, the postback URL and the set-up steps.

Pure functions. Our own placeholders in a tracking-link template ({click_id}, {gaid}, {campaign_id},
{ad_group_id}, {creative_id}, {ad_space_id}, {publisher_id}, {timestamp}) are filled per click by
`tracking.urls.expand_macros`; the partner's macros in a postback template are filled by the partner.
The postback carries the partner's values under the partner's own field names, which
`attribution.adapters` reads back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from adstack.core.vocabulary import ConversionEvent, Partner

POSTBACK_PATH = "/track/m3rd/v1.0"


@dataclass(frozen=True)
class AppContext:
    app_id: int
    package_name: str
    name: str
    partner_link_id: str
    click_lookback_days: int
    view_through_enabled: bool
    view_through_hours: int
    reattribution_window_days: int
    network_name: str = ""  # the app's override of the spec's default


@dataclass(frozen=True)
class PartnerSpec:
    partner: Partner
    display_name: str
    macro_syntax: str
    click_id_parameter: str  # where our click id travels in the partner's tracking link
    gaid_parameter: str
    link: Callable[[AppContext, str], str]  # (app, network name) → click link with our placeholders
    view_link: Callable[[AppContext, str], str]  # (app, network name) → impression (view-through) link
    postback_fields: Callable[[str], tuple[tuple[str, str], ...]]  # network name → (our field, partner macro)
    steps: Callable[[AppContext, str, str], list[str]]  # (app, tracking link, postback URL) → steps
    link_id_label: str = ""  # what partner_link_id holds; "" when the link needs none
    default_network_name: str = "adstack"
    requires_registration: bool = False  # postbacks only reach networks registered with the partner
    documentation: tuple[str, ...] = ()
    # Macros of the postback template that no page of the partner's, as read, was found
    # to name (docs/partners.md): the integration asks the operator to confirm them with the partner.
    unverified_macros: tuple[str, ...] = ()
    # The link parameter the partner documents for "after the click, send the user to this URL"; "" when the
    # partner documents none (its tracker's own destination setting decides), see docs/partners.md.
    redirect_parameter: str = ""
    redirect_documentation: str = ""
    # The postback carries no attribution verdict adstack reads (docs/partners.md): our click id coming back is
    # then the only sign that the partner credited an install to us.
    sends_verdict: bool = True

    def network(self, app: AppContext) -> str:
        return app.network_name or self.default_network_name


def _view_through_step(app: AppContext, partner_name: str) -> str:
    if app.view_through_enabled:
        return (f"In {partner_name}, turn on install view-through attribution with a {app.view_through_hours} h "
                f"lookback, so installs after an impression without a click are measured.")
    return f"In {partner_name}, leave view-through attribution off: this app attributes clicks only."


def _link_step(partner_name: str, link: str, wraps: bool) -> str:
    if wraps:
        return (f"Nothing to paste for clicks: adstack sends each click through this {partner_name} link, which "
                f"records it and then redirects to the creative's click URL; adstack fills the click id and GAID "
                f"on each click:\n{link}")
    return (f"{partner_name} documents no parameter that sends a click on to another URL, so adstack sends clicks "
            f"straight to the creative's click URL. For {partner_name} to see the click, use this link (with "
            f"the landing page set in {partner_name}'s tracker) as the creative's click URL; adstack fills the "
            f"click id and GAID on each click:\n{link}")


def _common_steps(app: AppContext, partner_name: str, link: str, postback: str, wraps: bool) -> list[str]:
    return [
        f"Set the click-through lookback window in {partner_name} to {app.click_lookback_days} days, the same "
        f"as this app's setting, and the re-attribution window to {app.reattribution_window_days} days.",
        _view_through_step(app, partner_name),
        f"Paste this postback URL into {partner_name} for installs and for in-app events, and send all media "
        f"sources, including organic: adstack follows {partner_name}'s verdict and bills only what it "
        f"attributes to adstack:\n{postback}",
        "Send at least the mandatory events: AD_REVENUE, PURCHASE, FIRST_PURCHASE, APP_OPEN, REGISTRATION, "
        "LOGIN, FIRST_TRADE, FIRST_DEPOSIT. Map each partner event name to one of the 22 events under "
        "Event mapping if its name is not a standard one.",
        _link_step(partner_name, link, wraps),
        "Verify: click a test ad, install the app, and check that the install appears under Conversions with "
        "attribution type click.",
    ]


def _steps(partner_name: str, *first: str, wraps: bool = False) -> Callable[[AppContext, str, str], list[str]]:
    """`wraps`: the partner documents a redirect parameter, so its link is put in front of the click URL."""
    def steps(app: AppContext, link: str, postback: str) -> list[str]:
        return [line.format(app=app) for line in first] + _common_steps(app, partner_name, link, postback, wraps)

    return steps


def _af_link(host: str, extra: str) -> Callable[[AppContext, str], str]:
    # Source: https://support.appsflyer.com/hc/en-us/articles/207273946 (click/impression link parameters)
    def link(a: AppContext, network: str) -> str:
        return (f"https://{host}/{a.package_name}?pid={network}&c={{campaign_id}}&af_c_id={{campaign_id}}"
                "&af_adset_id={ad_group_id}&af_ad_id={creative_id}&af_siteid={publisher_id}"
                f"&af_sub_siteid={{ad_space_id}}&clickid={{click_id}}&advertising_id={{gaid}}{extra}")
    return link


def _appsflyer_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: https://support.appsflyer.com/hc/en-us/articles/207273946 (postback macros for ad networks):
    # (advertiserId), (app-id), (install-unix-ts), (click-ts), hyphenated; .../360016751637 (event_name,
    # event_revenue, event_revenue_currency, event_time, event_value); .../115004744123 (reject_reason, is_rejected).
    # The others are in _APPSFLYER_UNVERIFIED.
    return (("clickid", "(clickid)"), ("advertising_id", "(advertiserId)"), ("event_name", "(event_name)"),
            ("event_revenue", "(event_revenue)"), ("event_revenue_currency", "(event_revenue_currency)"),
            ("event_time", "(event_time)"), ("install_unix_ts", "(install-unix-ts)"), ("click_ts", "(click-ts)"),
            ("event_value", "(event_value)"), ("app_id", "(app-id)"), ("media_source", "(media_source)"),
            ("is_attributed", "(is_attributed)"), ("is_primary_attribution", "(is_primary_attribution)"),
            ("attributed_touch_type", "(attributed_touch_type)"), ("blocked_reason", "(blocked_reason)"),
            ("reject_reason", "(reject_reason)"), ("is_rejected", "(is_rejected)"))


# No AppsFlyer page read spells these as postback macros: [A] says attribution-link parameters (our clickid) can
# be returned, without the macro's spelling; [B] lists a "Block reason" without one.
_APPSFLYER_UNVERIFIED = ("(clickid)", "(media_source)", "(is_attributed)", "(is_primary_attribution)",
                         "(attributed_touch_type)", "(blocked_reason)")


def _adjust_link(host: str) -> Callable[[AppContext, str], str]:
    # Source: https://help.adjust.com/en/article/install-callbacks (placeholders); link host unverified
    def link(a: AppContext, network: str) -> str:
        return (f"https://{host}/{a.partner_link_id}?campaign={network}%20({{campaign_id}})"
                "&adgroup={ad_group_id}&creative={creative_id}&label={click_id}&gps_adid={gaid}")
    return link


def _adjust_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: help.adjust.com/en/article/install-callbacks ({activity_kind}, {gps_adid}, {adid}, {tracker},
    # {created_at}), /install-callbacks-partner ({installed_at}), /event-callbacks ({event}, {event_name}),
    # /ad-revenue-callbacks ({revenue_float}, {currency}), /rejected-install-reattribution-callbacks-partner
    # ({rejection_reason}), /partner/placeholders ({label}), /self-attributing-network-callbacks ({tracker_name}:
    # "Current link name as defined in Campaign Lab", whose first level names the network).
    return (("activity_kind", "{activity_kind}"), ("label", "{label}"), ("gps_adid", "{gps_adid}"),
            ("adid", "{adid}"), ("event", "{event}"), ("event_name", "{event_name}"),
            ("revenue_float", "{revenue_float}"), ("currency", "{currency}"), ("created_at", "{created_at}"),
            ("installed_at", "{installed_at}"), ("tracker_name", "{tracker_name}"),
            ("rejection_reason", "{rejection_reason}"), ("tracker", "{tracker}"))


def _appmetrica_link(host: str) -> Callable[[AppContext, str], str]:
    # Source: https://appmetrica.yandex.ru/docs/en/mobile-tracking/tracking-specification (redirect and
    # impression domains, click_id, google_aid); any other parameter comes back in the postback as {name}.
    def link(a: AppContext, network: str) -> str:
        return (f"https://{host}.appmetrica.yandex.com/serve/{a.partner_link_id}?click_id={{click_id}}"
                "&google_aid={gaid}&c={campaign_id}&adgroup={ad_group_id}&creative={creative_id}"
                "&site_id={publisher_id}")
    return link


def _appmetrica_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: https://appmetrica.yandex.com/docs/en/mobile-tracking/postback-specification, "List of postback
    # macros" (every macro below; {click_id} is empty on unattributed postbacks).
    return (("ext", "{click_id}"), ("gaid", "{google_aid}"), ("transaction_id", "{transaction_id}"),
            ("touch_type", "{attributed_touch_type}"), ("match_type", "{match_type}"),
            ("event_name", "{conversion_event_name}"), ("event_json", "{conversion_event_json}"),
            ("conversion_timestamp", "{conversion_timestamp}"), ("install_timestamp", "{install_timestamp}"),
            ("click_timestamp", "{click_timestamp}"), ("price", "{price}"), ("currency", "{currency}"),
            ("package", "{app_package_name}"))


def _branch_link(view: bool) -> Callable[[AppContext, str], str]:
    def link(a: AppContext, network: str) -> str:
        suffix = "&%24impression=true" if view else ""
        return (f"https://{a.partner_link_id}?%243p={network}&~click_id={{click_id}}&%24aaid={{gaid}}"
                "&~campaign_id={campaign_id}&~ad_set_id={ad_group_id}&~ad_id={creative_id}"
                f"&~secondary_publisher={{publisher_id}}{suffix}")
    return link


def _branch_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: https://help.branch.io/using-branch/docs/postback-macros-functions ("Postback Data": ${(name)!},
    # ${(event_timestamp)!}, ${(id)!}, <#if attributed>1<#else>0</#if>); the others are in _BRANCH_UNVERIFIED.
    return (("id", "${(id)!}"), ("name", "${(name)!}"), ("event_timestamp", "${(event_timestamp)!}"),
            ("click_id", "${(last_attributed_touch_data.~click_id)!}"), ("aaid", "${(user_data.aaid)!}"),
            ("revenue", "${(event_data.revenue)!}"), ("currency", "${(event_data.currency)!}"),
            ("attributed", "<#if attributed>1<#else>0</#if>"),
            ("touch_type", "${(last_attributed_touch_type)!}"))


# Not in the part of Branch's macro page that could be read.
_BRANCH_UNVERIFIED = ("${(last_attributed_touch_data.~click_id)!}", "${(user_data.aaid)!}", "${(event_data.revenue)!}",
                      "${(event_data.currency)!}", "${(last_attributed_touch_type)!}")


def _singular_link(view: bool) -> Callable[[AppContext, str], str]:
    def link(a: AppContext, network: str) -> str:
        kind = "&_impression=1" if view else ""
        return (f"https://{a.partner_link_id}?cl={{click_id}}&aifa={{gaid}}&pcid={{campaign_id}}&pcrid={{creative_id}}"
                f"&psid={{publisher_id}}&pshid={{ad_space_id}}{kind}")
    return link


def _singular_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: https://support.singular.net/hc/en-us/articles/115004063323 ({cl?Network Name}, {NETWORK=Network
    # Name}, {NETWORK}, {IS_VIEWTHROUGH}, {IS_RE_ENG}, {EVENT_IP}; {AMOUNT}, {EVTNAME}, {UTCM} in its example).
    # {AIFA} and {CURRENCY}: the readable part of the page stops before its device and revenue macros.
    return (("cl", f"{{cl?{network}}}"), ("aifa", "{AIFA}"), ("evtname", "{EVTNAME}"), ("amount", "{AMOUNT}"),
            ("currency", "{CURRENCY}"), ("utcm", "{UTCM}"), ("is_ours", f"{{NETWORK={network}}}"),
            ("network", "{NETWORK}"), ("is_viewthrough", "{IS_VIEWTHROUGH}"), ("is_re_eng", "{IS_RE_ENG}"),
            ("ip", "{EVENT_IP}"))


def _kochava_link(view: bool) -> Callable[[AppContext, str], str]:
    def link(a: AppContext, network: str) -> str:
        if view:
            return (f"https://imp.control.kochava.com/track/impression?campaign_id={a.partner_link_id}"
                    f"&network_id={network}&device_id={{gaid}}&device_id_type=adid&impression_id={{click_id}}"
                    "&site_id={publisher_id}&creative_id={creative_id}")
        return (f"https://control.kochava.com/v1/cpi/click?campaign_id={a.partner_link_id}"
                f"&network_id={network}&device_id={{gaid}}&device_id_type=adid&click_id={{click_id}}"
                "&site_id={publisher_id}&creative_id={creative_id}")
    return link


# Kochava's custom postback page describes its macros (event name, "_install" for installs; event data; datetime;
# device IP; ADID; the network responsible) but the readable copies of it lack the macro names themselves, so every
# name below is unverified. network_id is the click link's numeric network id, returned so that an app set up with
# that id (its partner_network_name) can tell its own installs from another network's.
_KOCHAVA_FIELDS = (("click_id", "{click_id}"), ("adid", "{adid}"), ("event_name", "{event_name}"),
                   ("event_value", "{event_value}"), ("revenue", "{revenue}"), ("currency", "{currency}"),
                   ("event_time", "{event_time}"), ("install_time", "{install_time}"),
                   ("network_name", "{network_name}"), ("network_id", "{network_id}"), ("ip", "{device_ip}"))


def _kochava_postback(network: str) -> tuple[tuple[str, str], ...]:
    return _KOCHAVA_FIELDS


def _tenjin_link(view: bool) -> Callable[[AppContext, str], str]:
    def link(a: AppContext, network: str) -> str:
        kind = "impression" if view else "click"
        return (f"https://track.tenjin.com/v0/{kind}/{a.partner_link_id}?advertising_id={{gaid}}"
                "&click_id={click_id}&remote_campaign_id={campaign_id}&site_id={publisher_id}")
    return link


def _tenjin_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: https://docs.tenjin.com/v1/docs/en/callbacks ("macros such as {{advertising_id}}, {{ip_address}} or
    # {{bundle_id}}"); the readable part of its "Callback macros" page stops before the list: see _TENJIN_UNVERIFIED.
    return (("click_id", "{{click_id}}"), ("advertising_id", "{{advertising_id}}"), ("event", "{{event}}"),
            ("revenue", "{{revenue}}"), ("currency", "{{currency}}"), ("created_at", "{{created_at}}"),
            ("bundle_id", "{{bundle_id}}"), ("ip", "{{ip_address}}"))


_TENJIN_UNVERIFIED = ("{{click_id}}", "{{event}}", "{{revenue}}", "{{currency}}", "{{created_at}}")


def _mytracker_link(view: bool) -> Callable[[AppContext, str], str]:
    # Source: https://tracker.my.com/docs/tracking/links/click-url/ (/c/ click, /i/ impression)
    def link(a: AppContext, network: str) -> str:
        kind = "i" if view else "c"
        return (f"https://trk.mail.ru/{kind}/{a.partner_link_id}?mt_gaid={{gaid}}&mt_sub1={{click_id}}"
                "&mt_sub2={campaign_id}&mt_sub3={ad_group_id}&mt_sub4={creative_id}&mt_sub5={publisher_id}")
    return link


def _mytracker_postback(network: str) -> tuple[tuple[str, str], ...]:
    # Source: https://docs.tracker.my.com/tracking/postbacks/macros?lang=en ({mt_gaid}, {mt_event_ts},
    # {mt_payment_sum_src}); https://docs.tracker.my.com/en/tracking/postbacks/parameters (SubID parameters such as
    # mt_sub1 can be passed in postbacks). The others are in _MYTRACKER_UNVERIFIED.
    return (("clickid", "{mt_sub1}"), ("gaid", "{mt_gaid}"), ("event", "{mt_event}"),
            ("event-time", "{mt_event_ts}"), ("revenue", "{mt_payment_sum_src}"),
            ("currency", "{mt_payment_currency_src}"), ("level", "{mt_event_param_level}"))


_MYTRACKER_UNVERIFIED = ("{mt_event}", "{mt_payment_currency_src}", "{mt_event_param_level}")


def _airbridge_link(view: bool) -> Callable[[AppContext, str], str]:
    # Source: https://help.airbridge.io/en/guides/tracking-link-structure-and-parameters: ad_id is the device's
    # advertising id; campaign_id, ad_group_id, ad_creative_id name the ad; sub_id and sub_id_1..3 the publisher.
    def link(a: AppContext, network: str) -> str:
        kind = "view" if view else "click"
        return (f"https://abr.ge/@{a.partner_link_id}/{network}?click_id={{click_id}}&gaid_raw={{gaid}}"
                "&ad_id={gaid}&campaign_id={campaign_id}&ad_group_id={ad_group_id}&ad_creative_id={creative_id}"
                f"&sub_id={{publisher_id}}&sub_id_1={{ad_space_id}}&ad_type={kind}")
    return link


# The Airbridge pages read stop before their postback macros, so every name below is unverified; Airbridge's
# integration team sets the final template at registration (docs/partners.md).
_AIRBRIDGE_FIELDS = (("click_id", "{@postback.clickID}"), ("gaid", "{@postback.gaidRaw}"),
                     ("event", "{@postback.eventName}"), ("event_uuid", "{@postback.eventUUID}"),
                     ("revenue", "{@postback.revenue}"), ("currency", "{@postback.currency}"),
                     ("event_ts", "{@postback.eventTimestamp}"))


def _airbridge_postback(network: str) -> tuple[tuple[str, str], ...]:
    return _AIRBRIDGE_FIELDS


_REGISTER = ("adstack must be registered with {partner} as an integrated ad network under the name "
             "'{network}': the operator submits the postback template below to {partner}'s partner team once; "
             "{partner} then fills it for every advertiser that activates the integration.")


SPECS: dict[Partner, PartnerSpec] = {
    Partner.APPSFLYER: PartnerSpec(
        Partner.APPSFLYER, "AppsFlyer", "(macro)", "clickid", "advertising_id",
        _af_link("app.appsflyer.com", "&af_click_lookback={lookback}d"),
        _af_link("impression.appsflyer.com", "&af_viewthrough_lookback={view_hours}h"),
        _appsflyer_postback,
        _steps("AppsFlyer", "In AppsFlyer, open {app.name} → Active integrations, find the adstack integration "
                            "and activate it; turn on install view-through attribution.",
               "Under Default postbacks choose 'All media sources, including organic' for each event.", wraps=True),
        default_network_name="adstack_int", requires_registration=True,
        documentation=("https://support.appsflyer.com/hc/en-us/articles/207273946-Postback-macros-for-ad-networks",
                       "https://support.appsflyer.com/hc/en-us/articles/360016751637-Postback-macros-for-analytics-"
                       "partners",
                       "https://support.appsflyer.com/hc/en-us/articles/115004744123"),
        unverified_macros=_APPSFLYER_UNVERIFIED,
        # Source: AppsFlyer, "CTV, PC, and console platform direct attribution links": "The redirection
        # destination is the value of the af_r parameter included in the link."
        redirect_parameter="af_r",
        redirect_documentation="https://support.appsflyer.com/hc/en-us/articles/15199908310801",
    ),
    Partner.ADJUST: PartnerSpec(
        Partner.ADJUST, "Adjust", "{macro}", "label", "gps_adid",
        _adjust_link("app.adjust.com"), _adjust_link("view.adjust.com/impression"), _adjust_postback,
        _steps("Adjust", "In Adjust, create a link for {app.name} under Campaign Lab → Partners → adstack and "
                         "enter its link token as this app's partner link id.",
               "Adjust sends events by token: add each event token under Event mapping and choose its event.",
               wraps=True),
        link_id_label="Adjust link (tracker) token", requires_registration=True,
        documentation=("https://help.adjust.com/en/article/install-callbacks",
                       "https://help.adjust.com/en/article/event-callbacks",
                       "https://help.adjust.com/en/article/ad-revenue-callbacks",
                       "https://help.adjust.com/en/article/rejected-install-reattribution-callbacks-partner",
                       "https://help.adjust.com/en/partner/placeholders"),
        # Source: Adjust, "Link parameters": "Links with the redirect parameter send users to a specific URL."
        redirect_parameter="redirect", redirect_documentation="https://help.adjust.com/en/article/link-parameters",
    ),
    Partner.APPMETRICA: PartnerSpec(
        Partner.APPMETRICA, "AppMetrica", "{macro}", "click_id", "google_aid",
        _appmetrica_link("redirect"), _appmetrica_link("impression"), _appmetrica_postback,
        _steps("AppMetrica", "In AppMetrica, open {app.name} → Tracking → New tracker, choose Xiaomi Global (or "
                             "a custom partner) and enter the tracker id as this app's partner link id."),
        link_id_label="AppMetrica tracker id",
        documentation=("https://appmetrica.yandex.com/docs/en/mobile-tracking/postback-specification",
                       "https://appmetrica.yandex.ru/docs/en/mobile-tracking/tracking-specification"),
    ),
    Partner.BRANCH: PartnerSpec(
        Partner.BRANCH, "Branch", "${(macro)!}", "~click_id", "$aaid",
        _branch_link(False), _branch_link(True), _branch_postback,
        _steps("Branch", "In Branch, open Ads → Partner management, enable the adstack partner for {app.name}, "
                         "and create an ad link; enter its domain and path as this app's partner link id.",
               wraps=True),
        link_id_label="Branch ad link (domain/path)", default_network_name="a_adstack", requires_registration=True,
        documentation=("https://help.branch.io/using-branch/docs/postback-macros-functions",),
        unverified_macros=_BRANCH_UNVERIFIED,
        # Source: Branch, "Deep Link Reference" (long links): link data such as $fallback_url is added to the
        # link as a URI-encoded query parameter.
        redirect_parameter="$fallback_url",
        redirect_documentation="https://help.branch.io/v1/docs/deep-link-reference",
    ),
    Partner.SINGULAR: PartnerSpec(
        Partner.SINGULAR, "Singular", "{MACRO}", "cl", "aifa",
        _singular_link(False), _singular_link(True), _singular_postback,
        _steps("Singular", "In Singular, open Attribution → Partner configuration, add adstack for {app.name} "
                           "and create a tracking link; enter its host and path as this app's partner link id."),
        link_id_label="Singular tracking link (host/path)", requires_registration=True,
        documentation=("https://support.singular.net/hc/en-us/articles/115004063323",),
        unverified_macros=("{AIFA}", "{CURRENCY}"),
    ),
    Partner.KOCHAVA: PartnerSpec(
        Partner.KOCHAVA, "Kochava", "{macro}", "click_id", "device_id",
        _kochava_link(False), _kochava_link(True), _kochava_postback,
        _steps("Kochava", "In Kochava, open {app.name} → Campaign manager, create a tracker for the adstack "
                          "network and enter its campaign id as this app's partner link id; under Partner "
                          "configuration add a custom postback for install (_install) and for each event."),
        link_id_label="Kochava campaign (tracker) id",
        documentation=("https://support.kochava.com/campaign-management/create-a-custom-postback",),
        unverified_macros=tuple(macro for _, macro in _KOCHAVA_FIELDS),
    ),
    Partner.TENJIN: PartnerSpec(
        Partner.TENJIN, "Tenjin", "{{macro}}", "click_id", "advertising_id",
        _tenjin_link(False), _tenjin_link(True), _tenjin_postback,
        _steps("Tenjin", "In Tenjin, open Configure → Channels, add adstack as a custom channel for {app.name}, "
                         "create a campaign and enter its tracking key as this app's partner link id; then add "
                         "S2S callbacks under Apps → Callbacks with 'all users'."),
        link_id_label="Tenjin campaign tracking key", sends_verdict=False,
        documentation=("https://docs.tenjin.com/en/tracking/macros.html", "https://docs.tenjin.com/v1/docs/en/callbacks"),
        unverified_macros=_TENJIN_UNVERIFIED,
    ),
    Partner.MYTRACKER: PartnerSpec(
        Partner.MYTRACKER, "MyTracker", "{mt_macro}", "mt_sub1", "mt_gaid",
        _mytracker_link(False), _mytracker_link(True), _mytracker_postback,
        _steps("MyTracker", "In MyTracker, open {app.name} → Partners, add adstack with the postback below; use "
                            "event-parameter conditions (e.g. send LEVEL_ACHIEVED only when level = 10) where an "
                            "event should count only for some values."),
        link_id_label="MyTracker link id (the part after /c/)", sends_verdict=False,
        documentation=("https://docs.tracker.my.com/tracking/postbacks/macros?lang=en",
                       "https://docs.tracker.my.com/en/tracking/postbacks/parameters",
                       "https://tracker.my.com/docs/tracking/links/click-url/"),
        unverified_macros=_MYTRACKER_UNVERIFIED,
    ),
    Partner.AIRBRIDGE: PartnerSpec(
        Partner.AIRBRIDGE, "Airbridge", "{@postback.macro}", "click_id", "gaid_raw",
        _airbridge_link(False), _airbridge_link(True), _airbridge_postback,
        _steps("Airbridge", "In Airbridge, open {app.name} → Integrations → Ad channel integration, choose "
                            "adstack and enter the Airbridge app name as this app's partner link id."),
        link_id_label="Airbridge app name", requires_registration=True, sends_verdict=False,
        documentation=("https://help.airbridge.io/en/guides/tracking-link-structure-and-parameters",
                       "https://developers.airbridge.io/v1.1-en/docs/postback-integration"),
        unverified_macros=tuple(macro for _, macro in _AIRBRIDGE_FIELDS),
    ),
}

assert set(SPECS) == set(Partner)


def registration_note(spec: PartnerSpec, network: str) -> str:
    return _REGISTER.format(partner=spec.display_name, network=network)


def unverified_note(spec: PartnerSpec) -> str | None:
    """The step that names the template's macros no page of the partner's confirms, or None when there are none."""
    if not spec.unverified_macros:
        return None
    return (f"Before submitting the postback template, confirm these macros with {spec.display_name}'s integration "
            f"team: no {spec.display_name} page adstack was checked against names them, and one {spec.display_name} "
            f"leaves unreplaced reaches adstack as a missing value: {', '.join(spec.unverified_macros)}")


def missing_settings(spec: PartnerSpec, app: AppContext) -> list[str]:
    """What must be filled in before a partner link can be shown: a link with a placeholder id would send real
    users to a page that does not exist."""
    if spec.link_id_label and not app.partner_link_id:
        return [f"partner_link_id: the {spec.link_id_label}"]
    return []


def postback_url(spec: PartnerSpec, *, base_url: str, app_id: int, signature: str, network: str = "") -> str:
    """The postback URL the partner fills: ours fixed (partner, app, signature), the partner's as macros."""
    fields = "".join(f"&{name}={macro}" for name, macro in spec.postback_fields(network or
                                                                                 spec.default_network_name))
    return f"{base_url.rstrip('/')}{POSTBACK_PATH}?partner={spec.partner.value}&app={app_id}&sig={signature}{fields}"


def wrap_destination(redirect_parameter: str, link: str, destination: str) -> str:
    """The partner's click link (macros filled) sending the user on to `destination` after it records the click,
    through the partner's documented redirect parameter (`PartnerSpec.redirect_parameter`)."""
    separator = "&" if "?" in link else "?"
    return f"{link}{separator}{quote(redirect_parameter, safe='')}={quote(destination, safe='')}"


def tracking_link(spec: PartnerSpec, app: AppContext) -> str | None:
    if missing_settings(spec, app):
        return None
    return spec.link(app, spec.network(app)).replace("{lookback}", str(app.click_lookback_days))


def view_through_link(spec: PartnerSpec, app: AppContext) -> str | None:
    if missing_settings(spec, app) or not app.view_through_enabled:
        return None
    return spec.view_link(app, spec.network(app)).replace("{view_hours}", str(app.view_through_hours))


# ---------- event names ----------

# The partners' standard event names, read case-insensitively. An app's own mapping comes first.
_STANDARD_NAMES: dict[ConversionEvent, tuple[str, ...]] = {
    ConversionEvent.INSTALL: ("install", "_install", "app_install", "airbridge.install", "reinstall",
                              "first_open", "activation"),
    ConversionEvent.AD_REVENUE: ("af_ad_revenue", "__admon_user_level_revenue__", "ad_revenue", "adrevenue",
                                 "ad_impression", "af_ad_view", "airbridge.adimpression", "ad_view"),
    ConversionEvent.PURCHASE: ("af_purchase", "purchase", "__iap__", "revenue", "in_app_purchase",
                               "airbridge.ecommerce.order.completed", "payment"),
    ConversionEvent.FIRST_PURCHASE: ("first_purchase", "af_first_purchase"),
    ConversionEvent.APP_OPEN: ("open", "app_open", "af_app_opened", "session", "airbridge.open"),
    ConversionEvent.REGISTRATION: ("af_complete_registration", "complete_registration", "registration",
                                   "sign_up", "airbridge.user.signup"),
    ConversionEvent.LOGIN: ("af_login", "login", "airbridge.user.signin"),
    ConversionEvent.CUSTOMIZE1: ("customize1",),
    ConversionEvent.CUSTOMIZE2: ("customize2",),
    ConversionEvent.CUSTOMIZE3: ("customize3",),
    ConversionEvent.CREATE_ROLE: ("create_role", "af_create_role", "character_created"),
    ConversionEvent.TUTORIAL_COMPLETION: ("af_tutorial_completion", "complete_tutorial", "tutorial_completion",
                                          "tutorial_complete"),
    ConversionEvent.ACHIEVEMENT_UNLOCKED: ("af_achievement_unlocked", "unlock_achievement",
                                           "achievement_unlocked"),
    ConversionEvent.LEVEL_ACHIEVED: ("af_level_achieved", "achieve_level", "level_achieved", "level_up"),
    ConversionEvent.ADD_TO_CART: ("af_add_to_cart", "add_to_cart", "airbridge.ecommerce.product.addedtocart"),
    ConversionEvent.ADD_TO_WISHLIST: ("af_add_to_wishlist", "add_to_wishlist"),
    ConversionEvent.ADD_PAYMENT_INFO: ("af_add_payment_info", "add_payment_info"),
    ConversionEvent.LOAN_DISBURSAL: ("loan_disbursal",),
    ConversionEvent.FIRST_TRADE: ("first_trade",),
    ConversionEvent.FIRST_DEPOSIT: ("first_deposit",),
    ConversionEvent.LOAN_CREDIT: ("loan_credit",),
    ConversionEvent.LOAN_APPROVAL: ("loan_approval",),
    ConversionEvent.SUBSCRIBE: ("af_subscribe", "subscribe", "start_subscription", "subscription"),
}
STANDARD_EVENT_NAMES: dict[str, ConversionEvent] = {
    name: event for event, names in _STANDARD_NAMES.items() for name in names
}
STANDARD_EVENT_NAMES.update({event.value.lower(): event for event in ConversionEvent})


def standard_event(name: str) -> ConversionEvent | None:
    return STANDARD_EVENT_NAMES.get(name.strip().lower())
