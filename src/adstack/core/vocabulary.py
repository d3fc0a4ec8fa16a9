"""Vocabularies shared across domains: placement types, conversion events and measurement partners."""

from __future__ import annotations

from enum import StrEnum


class PlacementType(StrEnum):
    BANNER = "banner"
    INTERSTITIAL = "interstitial"
    REWARDED_VIDEO = "rewarded_video"
    PUSH = "push"
    ICON = "icon"
    NEWSFEED = "newsfeed"
    SMS = "sms"
    WALLPAPER_CAROUSEL = "wallpaper_carousel"


class ConversionEvent(StrEnum):
    """Installs plus Mi Ads' 22 in-app events."""

    INSTALL = "INSTALL"
    AD_REVENUE = "AD_REVENUE"
    PURCHASE = "PURCHASE"
    FIRST_PURCHASE = "FIRST_PURCHASE"
    APP_OPEN = "APP_OPEN"
    REGISTRATION = "REGISTRATION"
    LOGIN = "LOGIN"
    CUSTOMIZE1 = "CUSTOMIZE1"
    CUSTOMIZE2 = "CUSTOMIZE2"
    CUSTOMIZE3 = "CUSTOMIZE3"
    CREATE_ROLE = "CREATE_ROLE"
    TUTORIAL_COMPLETION = "TUTORIAL_COMPLETION"
    ACHIEVEMENT_UNLOCKED = "ACHIEVEMENT_UNLOCKED"
    LEVEL_ACHIEVED = "LEVEL_ACHIEVED"
    ADD_TO_CART = "ADD_TO_CART"
    ADD_TO_WISHLIST = "ADD_TO_WISHLIST"
    ADD_PAYMENT_INFO = "ADD_PAYMENT_INFO"
    LOAN_DISBURSAL = "LOAN_DISBURSAL"
    FIRST_TRADE = "FIRST_TRADE"
    FIRST_DEPOSIT = "FIRST_DEPOSIT"
    LOAN_CREDIT = "LOAN_CREDIT"
    LOAN_APPROVAL = "LOAN_APPROVAL"
    SUBSCRIBE = "SUBSCRIBE"


IN_APP_EVENTS: tuple[ConversionEvent, ...] = tuple(e for e in ConversionEvent if e is not ConversionEvent.INSTALL)
assert len(IN_APP_EVENTS) == 22

# The events Mi Ads requires partners to send back.
MANDATORY_EVENTS = frozenset({
    ConversionEvent.AD_REVENUE, ConversionEvent.PURCHASE, ConversionEvent.FIRST_PURCHASE, ConversionEvent.APP_OPEN,
    ConversionEvent.REGISTRATION, ConversionEvent.LOGIN, ConversionEvent.FIRST_TRADE, ConversionEvent.FIRST_DEPOSIT,
})


class Partner(StrEnum):
    """Mobile measurement partners whose postbacks adstack reads."""

    APPSFLYER = "appsflyer"
    ADJUST = "adjust"
    TENJIN = "tenjin"
    APPMETRICA = "appmetrica"
    BRANCH = "branch"
    SINGULAR = "singular"
    KOCHAVA = "kochava"
    MYTRACKER = "mytracker"
    AIRBRIDGE = "airbridge"


# OpenRTB 2.6 Bid `language`: "The non-standard code "xx" may also be used if the creative has no linguistic
# content (e.g., a banner with just a company logo)." A creative's language (`materials.language`) may be it.
NO_LINGUISTIC_CONTENT = "xx"
