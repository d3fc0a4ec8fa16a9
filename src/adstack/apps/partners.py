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


@dataclass(frozen=True)
class PartnerSpec:
    partner: Partner
    display_name: str
    macro_syntax: str
    click_id_parameter: str  # where our click id travels in the partner's tracking link
    gaid_parameter: str
    link: Callable[[AppContext], str]  # tracking-link template with our placeholders
    postback_fields: tuple[tuple[str, str], ...]  # (our query field, the partner's macro)
    steps: Callable[[AppContext, str, str], list[str]]  # (app, tracking link, postback URL) → steps


def _link_id(app: AppContext, fallback: str) -> str:
    return app.partner_link_id or fallback


def _view_through_step(app: AppContext, partner_name: str) -> str:
    if app.view_through_enabled:
        return (f"In {partner_name}, turn on install view-through attribution with a {app.view_through_hours} h "
                f"lookback, so installs after an impression without a click are measured.")
    return f"In {partner_name}, leave view-through attribution off: this app attributes clicks only."


def _common_steps(app: AppContext, partner_name: str, link: str, postback: str) -> list[str]:
    return [
        f"Set the click-through lookback window in {partner_name} to {app.click_lookback_days} days, the same "
        f"as this app's setting, and the re-attribution window to {app.reattribution_window_days} days.",
        _view_through_step(app, partner_name),
        f"Paste this postback URL into {partner_name} for installs and for in-app events, and send attributed, "
        f"unattributed and organic conversions alike:\n{postback}",
        "Send at least the mandatory events: AD_REVENUE, PURCHASE, FIRST_PURCHASE, APP_OPEN, REGISTRATION, "
        "LOGIN, FIRST_TRADE, FIRST_DEPOSIT. Map each partner event name to one of the 22 events under "
        "Event mapping if its name is not a standard one.",
        f"Paste the click tracking link into the ad group's tracking link; adstack fills the click id and GAID "
        f"on each click:\n{link}",
        "Verify: click a test ad, install the app, and check that the install appears under Conversions with "
        "attribution type click.",
    ]


def _appsflyer_steps(app: AppContext, link: str, postback: str) -> list[str]:
    return [
        "In AppsFlyer, open Collaborate → Partner marketplace, find the adstack integration (or add a custom "
        f"ad network) and activate it for {app.package_name}.",
        "Under Integration, turn on 'Install postbacks' and 'In-app event postbacks' with 'All media sources, "
        "including organic' so unattributed installs are sent too.",
        *_common_steps(app, "AppsFlyer", link, postback),
    ]


def _adjust_steps(app: AppContext, link: str, postback: str) -> list[str]:
    return [
        f"In Adjust, create a tracker for {app.name} under Campaign Lab → Partners → adstack (or a custom "
        "link) and enter its token as this app's partner link id.",
        "Adjust sends events by token: add each event token under Event mapping and choose its event.",
        *_common_steps(app, "Adjust", link, postback),
    ]


def _generic_steps(partner_name: str, first: str) -> Callable[[AppContext, str, str], list[str]]:
    def steps(app: AppContext, link: str, postback: str) -> list[str]:
        return [first.format(app=app), *_common_steps(app, partner_name, link, postback)]

    return steps


SPECS: dict[Partner, PartnerSpec] = {
    Partner.APPSFLYER: PartnerSpec(
        Partner.APPSFLYER, "AppsFlyer", "(macro)", "clickid", "advertising_id",
        lambda a: (f"https://app.appsflyer.com/{_link_id(a, a.package_name)}?pid=adstack_int&c={{campaign_id}}"
                   "&af_c_id={campaign_id}&af_adset_id={ad_group_id}&af_ad_id={creative_id}"
                   "&af_siteid={publisher_id}&af_sub_siteid={ad_space_id}&clickid={click_id}"
                   f"&advertising_id={{gaid}}&af_click_lookback={a.click_lookback_days}d"),
        (("clickid", "(clickid)"), ("advertising_id", "(advertising_id)"), ("event_name", "(event_name)"),
         ("event_revenue", "(event_revenue)"), ("event_revenue_currency", "(event_revenue_currency)"),
         ("event_revenue_usd", "(event_revenue_usd)"), ("event_time", "(event_time)"),
         ("install_unix_ts", "(install_unix_ts)"), ("click_ts", "(click_ts)"), ("event_value", "(event_value)"),
         ("app_id", "(app_id)"), ("ip", "(ip)")),
        _appsflyer_steps,
    ),
    Partner.ADJUST: PartnerSpec(
        Partner.ADJUST, "Adjust", "{macro}", "label", "gps_adid",
        lambda a: (f"https://app.adjust.com/{_link_id(a, 'TRACKER')}?campaign={{campaign_id}}"
                   "&adgroup={ad_group_id}&creative={creative_id}&label={click_id}&gps_adid={gaid}"),
        (("activity_kind", "{activity_kind}"), ("label", "{label}"), ("gps_adid", "{gps_adid}"),
         ("adid", "{adid}"), ("event", "{event}"), ("event_name", "{event_name}"), ("revenue", "{revenue}"),
         ("currency", "{currency}"), ("created_at", "{created_at}"), ("installed_at", "{installed_at}"),
         ("click_time", "{click_time}"), ("tracker", "{tracker}")),
        _adjust_steps,
    ),
    Partner.APPMETRICA: PartnerSpec(
        Partner.APPMETRICA, "AppMetrica", "{macro}", "click_id", "google_aid",
        lambda a: (f"https://redirect.appmetrica.yandex.com/serve/{_link_id(a, 'TRACKING_ID')}"
                   "?click_id={click_id}&google_aid={gaid}&c={campaign_id}&adgroup={ad_group_id}"
                   "&creative={creative_id}&site_id={publisher_id}"),
        (("ext", "{click_id}"), ("gaid", "{google_aid}"), ("event_name", "{event_name}"),
         ("transaction_id", "{transaction_id}"), ("match_type", "{match_type}"),
         ("touch_type", "{attributed_touch_type}"), ("event_datetime", "{event_datetime}"),
         ("install_datetime", "{install_datetime}"), ("click_datetime", "{click_datetime}"),
         ("revenue", "{revenue}"), ("currency", "{currency}")),
        _generic_steps("AppMetrica", "In AppMetrica, open {app.name} → Tracking → New tracker, choose the "
                                     "adstack partner (or a custom partner) and enter the tracker id as this "
                                     "app's partner link id."),
    ),
    Partner.BRANCH: PartnerSpec(
        Partner.BRANCH, "Branch", "${(macro)!}", "~click_id", "$aaid",
        lambda a: (f"https://{_link_id(a, 'example.app.link/LINK')}?%243p=a_adstack&~click_id={{click_id}}"
                   "&%24aaid={gaid}&~campaign_id={campaign_id}&~ad_set_id={ad_group_id}&~ad_id={creative_id}"
                   "&~secondary_publisher={publisher_id}"),
        (("id", "${(id)!}"), ("name", "${(name)!}"), ("event_timestamp", "${(event_timestamp)!}"),
         ("click_id", "${(last_attributed_touch_data.~click_id)!}"), ("aaid", "${(user_data.aaid)!}"),
         ("revenue", "${(event_data.revenue)!}"), ("currency", "${(event_data.currency)!}"),
         ("attributed", "<#if attributed>1<#else>0</#if>")),
        _generic_steps("Branch", "In Branch, open Ads → Partner management, enable the adstack partner for "
                                 "{app.name}, and create an ad link; enter its domain and path as this app's "
                                 "partner link id."),
    ),
    Partner.SINGULAR: PartnerSpec(
        Partner.SINGULAR, "Singular", "{MACRO}", "cl", "aifa",
        lambda a: (f"https://{_link_id(a, 'example.sng.link/LINK')}?cl={{click_id}}&aifa={{gaid}}"
                   "&pcid={campaign_id}&pcrid={creative_id}&psid={publisher_id}&pshid={ad_space_id}"),
        (("cl", "{cl?adstack}"), ("aifa", "{AIFA}"), ("evtname", "{EVTNAME}"), ("amount", "{AMOUNT}"),
         ("currency", "{CURRENCY}"), ("utcm", "{UTCM}"), ("is_viewthrough", "{IS_VIEWTHROUGH}"),
         ("is_re_eng", "{IS_RE_ENG}"), ("ip", "{EVENT_IP}")),
        _generic_steps("Singular", "In Singular, open Attribution → Partner configuration, add adstack for "
                                   "{app.name} and create a tracking link; enter its host and path as this "
                                   "app's partner link id."),
    ),
    Partner.KOCHAVA: PartnerSpec(
        Partner.KOCHAVA, "Kochava", "{macro}", "click_id", "device_id",
        lambda a: (f"https://control.kochava.com/v1/cpi/click?campaign_id={_link_id(a, 'KOCHAVA_CAMPAIGN')}"
                   "&network_id=adstack&device_id={gaid}&device_id_type=adid&click_id={click_id}"
                   "&site_id={publisher_id}&creative_id={creative_id}"),
        (("click_id", "{click_id}"), ("adid", "{adid}"), ("event_name", "{event_name}"),
         ("event_value", "{event_value}"), ("revenue", "{revenue}"), ("currency", "{currency}"),
         ("event_time", "{event_time}"), ("install_time", "{install_time}"), ("ip", "{device_ip}")),
        _generic_steps("Kochava", "In Kochava, open {app.name} → Campaign manager, create a tracker for the "
                                  "adstack network and enter its campaign id as this app's partner link id; "
                                  "under Partner configuration add a custom postback for install (_install) "
                                  "and for each event."),
    ),
    Partner.TENJIN: PartnerSpec(
        Partner.TENJIN, "Tenjin", "{{macro}}", "click_id", "advertising_id",
        lambda a: (f"https://track.tenjin.com/v0/click/{_link_id(a, 'TRACKING_KEY')}?advertising_id={{gaid}}"
                   "&click_id={click_id}&remote_campaign_id={campaign_id}&site_id={publisher_id}"),
        (("click_id", "{{click_id}}"), ("advertising_id", "{{advertising_id}}"), ("event", "{{event}}"),
         ("revenue", "{{revenue}}"), ("currency", "{{currency}}"), ("created_at", "{{created_at}}"),
         ("bundle_id", "{{bundle_id}}"), ("ip", "{{ip_address}}")),
        _generic_steps("Tenjin", "In Tenjin, open Configure → Channels, add adstack as a custom channel for "
                                 "{app.name}, create a campaign and enter its tracking key as this app's "
                                 "partner link id; then add S2S callbacks under Apps → Callbacks."),
    ),
    Partner.MYTRACKER: PartnerSpec(
        Partner.MYTRACKER, "MyTracker", "{mt_macro}", "mt_sub1", "mt_gaid",
        lambda a: (f"https://trk.mail.ru/c/{_link_id(a, 'LINK_ID')}?mt_gaid={{gaid}}&mt_sub1={{click_id}}"
                   "&mt_sub2={campaign_id}&mt_sub3={ad_group_id}&mt_sub4={creative_id}&mt_sub5={publisher_id}"),
        (("clickid", "{mt_sub1}"), ("gaid", "{mt_gaid}"), ("event", "{mt_event}"),
         ("event-time", "{mt_event_ts}"), ("revenue", "{mt_payment_sum_src}"),
         ("currency", "{mt_payment_currency_src}"), ("level", "{mt_event_param_level}")),
        _generic_steps("MyTracker", "In MyTracker, open {app.name} → Partners, add adstack with the postback "
                                    "below; use event-parameter conditions (e.g. send LEVEL_ACHIEVED only when "
                                    "level = 10) where an event should count only for some values."),
    ),
    Partner.AIRBRIDGE: PartnerSpec(
        Partner.AIRBRIDGE, "Airbridge", "{@postback.macro}", "click_id", "gaid_raw",
        lambda a: (f"https://abr.ge/@{_link_id(a, 'appname')}/adstack?click_id={{click_id}}&gaid_raw={{gaid}}"
                   "&sub_id={publisher_id}&sub_id_1={campaign_id}&sub_id_2={ad_group_id}"
                   "&sub_id_3={creative_id}&ad_id={creative_id}"),
        (("click_id", "{@postback.clickID}"), ("gaid", "{@postback.gaidRaw}"),
         ("event", "{@postback.eventName}"), ("event_uuid", "{@postback.eventUUID}"),
         ("revenue", "{@postback.revenue}"), ("currency", "{@postback.currency}"),
         ("event_ts", "{@postback.eventTimestamp}")),
        _generic_steps("Airbridge", "In Airbridge, open {app.name} → Integrations → Ad channel integration, "
                                    "choose adstack and enter the app name as this app's partner link id."),
    ),
}

assert set(SPECS) == set(Partner)


def postback_url(spec: PartnerSpec, *, base_url: str, app_id: int, signature: str) -> str:
    """The postback URL the partner fills: ours fixed (partner, app, signature), the partner's as macros."""
    fields = "".join(f"&{name}={macro}" for name, macro in spec.postback_fields)
    return f"{base_url.rstrip('/')}{POSTBACK_PATH}?partner={spec.partner.value}&app={app_id}&sig={signature}{fields}"


def tracking_link(spec: PartnerSpec, app: AppContext) -> str:
    return spec.link(app)


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
