"""People's names for the platform's codes (formats, channels, bid types, document kinds, statuses, operations),
so no page shows `interstitial_image` or `GUARANTEED_CPM`. Each name is a catalog message id."""

from __future__ import annotations

from collections.abc import Mapping

from adstack.console.i18n import N_, translations

# Source: Mi Ads usage guide, 3.1.3 "Upload ad material information" (the format headings).
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
}


def code_name(code: object, language: str) -> str:
    """The translated name of a code; the code itself when it is not one of ours (user data stays as typed)."""
    text = str(code) if code is not None else ""
    message = CODE_NAMES.get(text) or CODE_NAMES.get(text.lower())
    return translations(language).gettext(message) if message else text
