"""People's names for the platform's codes (formats, channels, bid types, document kinds, statuses, operations),
so no page shows `interstitial_image` or `GUARANTEED_CPM`. Each name is a catalog message id."""

from __future__ import annotations

import re
from collections.abc import Mapping

from babel import Locale
from babel.dates import get_timezone_location

from adstack.console.i18n import LANGUAGES, N_, translations
from adstack.core.timeutil import standard_offset

# Source: Mi Ads usage guide, 3.1.3 "Upload ad material information" (the format headings). Four of its blocks have
# no heading: push_standard, image_640x100, sms_image and sms_business are adstack's names (creatives/formats.py).
FORMAT_NAMES: Mapping[str, str] = {
    "interstitial_image": N_("Interstitial image"),
    "interstitial_video": N_("Interstitial video"),
    "rewarded_video": N_("Rewarded video"),
    "large_image": N_("Large image"),
    "push_standard": N_("Push standard"),
    "custom_background": N_("Custom background"),
    "icon_small_card": N_("Icon small card"),
    "newsfeed_video": N_("Newsfeed video"),
    "large_newsfeed_image": N_("Large newsfeed image"),
    "ota_app_recommendations": N_("OTA app recommendations"),
    "startup_guide_app_download": N_("Startup guide app download"),
    "ota_mandatory_pre_install": N_("OTA mandatory pre-install"),
    "image_640x100": N_("Banner 640x100"),
    "sms_image": N_("SMS image card"),
    "sms_business": N_("SMS text card"),
    "rich_media_business": N_("Rich media"),
    "wallpaper_carousel": N_("Wallpaper carousel"),
}

CODE_NAMES: Mapping[str, str] = {
    **FORMAT_NAMES,
    # placements (Source: Mi Ads usage guide, 3.1.2 "Determine placement")
    "banner": N_("Banner"), "interstitial": N_("Interstitial"), "push": N_("Push"), "icon": N_("Icon"),
    "newsfeed": N_("Newsfeed"), "sms": N_("SMS"),
    # promotion channels and objectives
    "getapps": N_("GetApps"), "google_play": N_("Google Play"),
    "performance": N_("Performance"), "brand": N_("Brand"),
    "app_download": N_("App download"), "non_download": N_("Non-download (H5 or website)"),
    # bid types (Source: Mi Ads usage guide, 3.1.2 "Set bid")
    "guaranteed_cpm": N_("Guaranteed CPM"), "cpt": N_("CPT (cost per time)"), "cpc": N_("CPC (cost per click)"),
    "cpa": N_("CPA (cost per action)"),
    # qualification documents
    "business_license": N_("Business licence"), "industry_qualification": N_("Industry qualification"),
    "authorization_letter": N_("Authorisation letter"), "getapps_shop_screenshot": N_("GetApps shop screenshot"),
    "other": N_("Other"),
    # account types and roles
    "advertiser": N_("Advertiser"), "agency": N_("Core agency"), "admin": N_("Administrator"),
    "reviewer": N_("Reviewer"), "account_manager": N_("Account manager"),
    # review and object statuses
    "to_be_submitted": N_("To be submitted"), "under_review": N_("Under review"), "approved": N_("Approved"),
    "suspended": N_("Suspended by a reviewer"),
    "account_suspended": N_("Account suspended by the platform"),
    "rejected": N_("Rejected"), "enabled": N_("Enabled"), "paused": N_("Paused"), "deleted": N_("Deleted"),
    "active": N_("Active"), "error": N_("Error"), "disabled": N_("Disabled"),
    "queued": N_("Queued"), "running": N_("Running"), "done": N_("Done"), "failed": N_("Failed"),
    "succeeded": N_("Succeeded"),
    # operations (Source: Mi Ads usage guide, 6.2 "Operation Logs")
    "create": N_("Create"), "update": N_("Edit"), "copy": N_("Copy"), "delete": N_("Delete"),
    "submit": N_("Submit for review"), "approve": N_("Approve"), "reject": N_("Reject"), "enable": N_("Enable"),
    "pause": N_("Pause"), "top_up": N_("Top up"), "transfer": N_("Transfer"), "login": N_("Sign in"),
    # review history actions
    "edit_reviewed_field": N_("Reviewed field edited"), "suspend": N_("Suspend"),
    "lift_suspension": N_("Lift suspension"), "platform_pause": N_("Paused by the platform"),
    "platform_resume": N_("Resumed by the platform"),
    # pacing and targeting values
    "even": N_("Even (spread over the day)"), "asap": N_("As fast as possible"),
    "male": N_("Male"), "female": N_("Female"), "wifi": N_("Wi-Fi"),
    "not_currently_installed": N_("Not currently installed"), "not_installed_90d": N_("Not installed within 90 days"),
    "never_installed": N_("Never installed"), "installed": N_("Already installed"), "all_users": N_("All users"),
    # audiences (Source: Mi Ads usage guide, 6.1.1 "Create Audience")
    "uploaded": N_("Uploaded file"), "label": N_("Labels"), "gaid": N_("GAID raw value"),
    "gaid_md5": N_("GAID-MD5 encryption"),
    # Installs and the 22 in-app events, by their meaning.
    # Source: partner integration guide, 1 "The list of in-app events that MiAds recommends to be postbacked".
    "INSTALL": N_("Install"), "AD_REVENUE": N_("IAA advertising revenue"), "PURCHASE": N_("Any purchase"),
    "FIRST_PURCHASE": N_("First-time purchase"), "APP_OPEN": N_("App open"), "REGISTRATION": N_("User registration"),
    "LOGIN": N_("User login"), "CUSTOMIZE1": N_("Custom event 1"), "CUSTOMIZE2": N_("Custom event 2"),
    "CUSTOMIZE3": N_("Custom event 3"), "CREATE_ROLE": N_("Create role"),
    "TUTORIAL_COMPLETION": N_("Complete tutorial"), "ACHIEVEMENT_UNLOCKED": N_("Unlock achievement"),
    "LEVEL_ACHIEVED": N_("Level achieved"), "ADD_TO_CART": N_("Add to cart"), "ADD_TO_WISHLIST": N_("Add to wishlist"),
    "ADD_PAYMENT_INFO": N_("Add payment information"), "LOAN_DISBURSAL": N_("Loan disbursal"),
    "FIRST_TRADE": N_("First trade"), "FIRST_DEPOSIT": N_("First deposit"),
    "LOAN_CREDIT": N_("Loan credit assessment"), "LOAN_APPROVAL": N_("Loan approval"), "SUBSCRIBE": N_("Subscription"),
    # app categories of the package table (label audiences)
    "communication": N_("Communication"), "social": N_("Social"), "video": N_("Video"), "music": N_("Music"),
    "games": N_("Games"), "finance": N_("Finance"), "shopping": N_("Shopping"), "tools": N_("Tools"),
    # measurement partners: brand names, not translated
    "appsflyer": "AppsFlyer", "adjust": "Adjust", "tenjin": "Tenjin", "appmetrica": "AppMetrica", "branch": "Branch",
    "singular": "Singular", "kochava": "Kochava", "mytracker": "MyTracker", "airbridge": "Airbridge",
    # account roles and invitations
    "owner": N_("Owner"), "operator": N_("Operator"), "viewer": N_("Viewer"),
    "pending": N_("Pending"), "accepted": N_("Accepted"), "revoked": N_("Revoked"), "expired": N_("Expired"),
    # the event pipeline's consumers
    "billing": N_("Billing"), "touchpoints": N_("Touchpoints"), "events": N_("Events and reports"),
    "postbacks": N_("Partner postbacks"),
    # who made a ledger entry when no person did
    "system": N_("System"),
    # object types of the operation log
    "account": N_("Account"), "account_balance": N_("Balance"), "account_document": N_("Qualification document"),
    "ad_group": N_("Ad group"), "ad_space": N_("Ad space"), "announcement": N_("Announcement"),
    "api_key": N_("API key"), "app": N_("App"), "app_event_mapping": N_("Event mapping"),
    "audience": N_("Audience"), "audience_region": N_("Audience region"), "campaign": N_("Campaign"),
    "creative": N_("Creative"), "creative_format": N_("Creative format"), "credit_line": N_("Credit line"),
    "device_population": N_("Device population"), "fx_rate": N_("Exchange rate"), "invitation": N_("Invitation"),
    "media": N_("Media file"), "media_asset": N_("Media file"), "package_category": N_("App category"),
    "partner_connection": N_("Partner connection"), "partner_app_binding": N_("Partner app binding"),
    "portrait_tag": N_("Portrait tag"), "publisher": N_("Publisher"), "refund": N_("Refund"),
    "settlement_rule": N_("Settlement rule"), "top_up_request": N_("Top-up request"), "user": N_("User"),
    "webhook_endpoint": N_("Webhook endpoint"),
}

# What each format is, in adstack's own words (creatives/formats.py, `description`). The guide (3.1.3 "Upload ad
# material information") gives only each format's materials and their limits, never a description.
FORMAT_DESCRIPTIONS: Mapping[str, str] = {
    "interstitial_image": N_("A full-screen image shown at a natural pause in an app."),
    "interstitial_video": N_("A full-screen video shown at a natural pause in an app."),
    "rewarded_video": N_("A video the user watches to the end for an in-app reward."),
    "large_image": N_("A notification with an 800x360 picture, an icon, a title and a line of text."),
    "push_standard": N_("A notification with an icon, a title and a line of text."),
    "custom_background": N_("An app card on a background colour of the advertiser's choice."),
    "icon_small_card": N_("A small card: the app icon, a title and a description."),
    "newsfeed_video": N_("A video in a content feed (the guide's information stream)."),
    "large_newsfeed_image": N_("A large 1200x628 image in a content feed."),
    "ota_app_recommendations": N_("Apps recommended on the screen shown after a system (OTA) update."),
    "startup_guide_app_download": N_("Apps offered for download in the device's first-start setup guide."),
    "ota_mandatory_pre_install": N_("An app installed with a system (OTA) update."),
    "image_640x100": N_("A 640x100 banner image."),
    "sms_image": N_("A business message with a 600x500 image, an icon and a link."),
    "sms_business": N_("A business message: business name and phone, up to three subtitles, a link, two buttons."),
    "rich_media_business": N_(
        "A rich business message: an 800x450 picture, business name and phone, a link, a button."),
    "wallpaper_carousel": N_("A full-screen 720x1600 lock-screen wallpaper."),
}

# The IAB sizes' formats (creatives/iab_sizes.py): iab_banner_300x250, iab_interstitial_320x480, ...
IAB_FORMAT = re.compile(r"iab_(banner|interstitial)_(\d+x\d+)")
IAB_FORMAT_NAMES: Mapping[str, str] = {"banner": N_("IAB banner %(size)s"),
                                       "interstitial": N_("IAB interstitial %(size)s")}
IAB_FORMAT_DESCRIPTIONS: Mapping[str, str] = {
    "banner": N_("A %(size)s image for exchanges' banner placements."),
    "interstitial": N_("A %(size)s image for exchanges' interstitial placements."),
}


def code_name(code: object, language: str) -> str:
    """The translated name of a code; the code itself when it is not one of ours (user data stays as typed)."""
    text = str(code) if code is not None else ""
    iab = IAB_FORMAT.fullmatch(text)
    if iab:
        return translations(language).gettext(IAB_FORMAT_NAMES[iab[1]]) % {"size": iab[2]}
    message = CODE_NAMES.get(text) or CODE_NAMES.get(text.lower())
    return translations(language).gettext(message) if message else text


def region_name(code: str, name: str, language: str) -> str:
    """An audience region by its country's name in the visitor's language; a cluster's own name otherwise."""
    country = Locale.parse(LANGUAGES[language]).territories.get(code.upper()) if len(code) == 2 else None
    return str(country) if country else name


def format_description(code: str, language: str, fallback: str = "") -> str:
    """A creative format's description in the visitor's language; `fallback` for a format added without one."""
    iab = IAB_FORMAT.fullmatch(code)
    if iab:
        return translations(language).gettext(IAB_FORMAT_DESCRIPTIONS[iab[1]]) % {"size": iab[2]}
    message = FORMAT_DESCRIPTIONS.get(code)
    return translations(language).gettext(message) if message else fallback


def time_zone_name(name: str, language: str) -> str:
    """A time zone as people read it. The fixed offsets are the guide's "UTC+8" in every language (Source: Mi Ads
    usage guide, 3.1.2 "Set budget and schedule": "Time zone: UTC+0, UTC+1 ~ UTC+12:00, UTC-1 ~ UTC−12:00").
    A named zone is its IANA name in English and CLDR's location form in Chinese (Asia/Shanghai: 中国（上海）时间)."""
    if name == "UTC" or name.startswith("Etc/"):
        try:
            hours = int(standard_offset(name).total_seconds() // 3600)
        except (KeyError, ValueError):
            return name
        return f"UTC{hours:+d}"
    if language == "en":
        return name
    try:
        return str(get_timezone_location(name, locale=LANGUAGES[language]))
    except LookupError:
        return name
