"""Refusals in words people read: one mapping from the API's error shape (field, rule, limit, actual) to a
sentence per rule, in the visitor's language. Money is shown in the account's currency, fields by their
label; no path, no pattern, no micros ever reach the page.

Also the serving-status reasons the services write in English, told again from the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from adstack.console import i18n
from adstack.console.i18n import N_
from adstack.console.vocabulary import code_name

# Field names (the last part of "targeting.os_version_max") -> the label people see beside the input.
FIELD_LABELS: Mapping[str, str] = {
    "name": N_("Name"), "campaign_name": N_("Campaign name"), "company_name": N_("Company name"),
    "region_code": N_("Region"), "id_type": N_("ID type"), "audience_id": N_("Audience"), "mode": N_("Change"),
    "converted_apps": N_("Installed or converted in these apps"),
    "converted_events": N_("With one of these events (none: installs)"),
    "converted_within_days": N_("Within the last (days)"),
    "account_id": N_("Account"), "request_account_id": N_("Account"), "sub_account_id": N_("Sub-account"),
    "landing_url": N_("Landing page URL"), "landing_kind": N_("Landing page type"),
    "request_amount": N_("Amount"), "transfer_amount": N_("Amount"), "proof": N_("Proof of payment"),
    "limit": N_("Credit limit"), "starts_on": N_("First day"), "ends_on": N_("Last day"),
    "click_lookback_days": N_("Click lookback (days)"), "partner_link_id": N_("Partner app or link id"),
    "api_token": N_("API token"), "app_package": N_("Package name"), "publisher_id": N_("Publisher"),
    "reserve_price": N_("Reserve price (CPM, USD)"), "reserve_price_micros": N_("Reserve price (CPM, USD)"),
    "accepted_formats": N_("Accepted formats"), "current_password": N_("Current password"),
    "low_balance_threshold": N_("Low-balance alert below"), "store": N_("Store"), "partner": N_("Measurement partner"),
    "view_through_hours": N_("View-through window (hours)"),
    "reattribution_window_days": N_("Re-attribution window (days)"),
    "event_window_days": N_("Event postback window (days, empty = lifetime)"),
    "low_balance_threshold_micros": N_("Low-balance alert below"),
    "contact_name": N_("Contact name"), "contact_email": N_("Contact email"), "contact_phone": N_("Contact phone"),
    "email": N_("E-mail"), "password": N_("Password"), "new_password": N_("New password"),
    "document": N_("Qualification document"), "document_kind": N_("Document type"),
    "accept_agreement": N_("Agreement"), "country": N_("Country or region"), "settlement": N_("Settlement"),
    "settlement_entity": N_("Settlement entity"), "currency": N_("Currency"), "time_zone": N_("Time zone"),
    "bid": N_("Bid"), "bid_micros": N_("Bid"), "bid_type": N_("Bid type"),
    "daily_budget": N_("Daily budget"), "daily_budget_micros": N_("Daily budget"),
    "total_budget": N_("Total budget"), "total_budget_micros": N_("Total budget"),
    "amount": N_("Amount"), "amount_micros": N_("Amount"), "credit_limit_micros": N_("Credit limit"),
    "start_at": N_("Start"), "end_at": N_("End"), "start_date": N_("From"), "end_date": N_("To"),
    "frequency_cap_per_day": N_("Frequency cap per day"), "booked_impressions": N_("Booked impressions"),
    "booked_slots": N_("Booked slots"), "promotion_channel": N_("Promotion channel"),
    "target_group": N_("Target group"), "placement_type": N_("Placement type"), "pacing": N_("Pacing"),
    "conversion_event": N_("Conversion event"), "objective": N_("Marketing objective"),
    "promotion_target": N_("Promotion target"), "package_name": N_("Package name"),
    "countries": N_("Countries or regions"), "languages": N_("Languages"), "carriers": N_("Carriers"),
    "language": N_("Language of the ad's text"),
    "os_version_min": N_("OS version from"), "os_version_max": N_("OS version to"),
    "device_models": N_("Device models"), "publisher_ids": N_("Publishers"), "ad_space_ids": N_("Ad spaces"),
    "click_url": N_("Click address"), "deeplink": N_("Deeplink"),
    "impression_tracking_urls": N_("Impression monitoring"),
    "video_tracking_urls": N_("Video impression monitoring"), "titles": N_("Ad title"), "title": N_("Title"),
    "descriptions": N_("Ad description"), "button_texts": N_("Button text"), "images": N_("Image"),
    "icon": N_("Icon"), "videos": N_("Video"), "format": N_("Ad format"), "body": N_("Text"),
    "dayparting": N_("Hours"), "targeting": N_("Targeting"), "file": N_("File"), "reasons": N_("Reasons"),
    # The report filters' pickers.
    "campaign_ids": N_("Campaign"), "ad_group_ids": N_("Ad group"), "creative_ids": N_("Creative"),
    "objectives": N_("Objective"),
}

# Inputs where people type an amount in currency units (the service's own fields end in "_micros").
UNIT_MONEY_FIELDS = frozenset({"bid", "daily_budget", "total_budget", "amount", "credit_limit", "request_amount",
                               "transfer_amount", "limit", "reserve_price", "low_balance_threshold"})
URL_FIELDS = frozenset({"click_url", "deeplink", "impression_tracking_urls", "video_tracking_urls", "url",
                        "website", "postback_url", "callback_url"})

# Rule -> sentence. %(field)s is the label; %(limit)s and %(actual)s are shown as people read them.
RULE_SENTENCES: Mapping[str, str] = {
    "required": N_("%(field)s is required."),
    "too_short": N_("%(field)s needs at least %(limit)s characters."),
    "too_long": N_("%(field)s can have at most %(limit)s characters."),
    "pattern": N_("%(field)s is not in the expected form."),
    "url": N_("%(field)s must be a web address starting with http:// or https://."),
    "email": N_("%(field)s must be an e-mail address, like name@example.com."),
    "number": N_("%(field)s must be a number, like 12.50."),
    "whole_number": N_("%(field)s must be a whole number."),
    "whole_number_range": N_("%(field)s must be a whole number from %(low)s to %(high)s."),
    "range": N_("%(field)s must be between %(low)s and %(high)s."),
    "greater_than": N_("%(field)s must be more than %(limit)s."),
    "at_least": N_("%(field)s must be at least %(limit)s."),
    "less_than": N_("%(field)s must be less than %(limit)s."),
    "at_most": N_("%(field)s must be at most %(limit)s."),
    "end_after_start": N_("The end must be later than the start."),
    "choice": N_("Choose one of the offered values for %(field)s."),
    "unique": N_("This %(field)s is already in use."),
    "invalid": N_("%(field)s is not valid."),
    "daily_le_total": N_("The daily budget cannot be more than the total budget."),
    "agreement": N_("Please read and accept the agreement."),
    "too_many_attempts": N_("Too many attempts. Please wait a little and try again."),
    "common_password": N_("This password is too common. Please choose another."),
    "file_too_large": N_("The file is too large: %(actual)s; at most %(limit)s."),
    "file_type": N_("This type of file is not accepted here. Accepted: %(limit)s."),
    "image_size": N_("Wrong size: %(actual)s pixels; allowed: %(limit)s."),
    "aspect_ratio": N_("Wrong aspect ratio: %(actual)s; allowed: %(limit)s."),
    "min_dimensions": N_("Too small: %(actual)s pixels; at least %(limit)s."),
    "max_duration_s": N_("Too long: %(actual)s seconds; at most %(limit)s."),
    "max_count": N_("Too many: %(actual)s; at most %(limit)s."),
    "not_allowed": N_("This format does not take this material."),
    "url_required": N_("The text must contain a web address (http:// or https://)."),
    "e164": N_("Not a valid phone number: write it with + and the country code, like +6560000000."),
    "color_format": N_("Not a colour as #RRGGBB."),
    "language_code": N_("Not an ISO 639-1 language code: write two letters, like en or hi."),
    "no_emoji": N_("This format does not take emoji."),
    "duplicate": N_("The same value is given twice."),
    "not_found": N_("%(field)s refers to something that does not exist or that you cannot see."),
    "balance": N_("The amount is more than the available balance."),
    "max_range_days": N_("The date range can be at most %(limit)s days."),
    "same_currency": N_("Both accounts must use the same currency."),
    "one_currency": N_("Your accounts settle in different currencies (%(limit)s): choose one account."),
    "date": N_("%(field)s is not a date: write it as year-month-day, like 2025-05-20."),
    "not_editable": N_("%(field)s can no longer be changed."),
    "pending_top_up": N_("%(field)s cannot change while a top-up request is pending."),
    "credit_line_granted": N_("%(field)s cannot change once the account has a credit line."),
    "no_nul_character": N_("%(field)s cannot contain the NUL character."),
    "settlement": N_("This settlement entity and currency are not offered for the chosen country or region."),
    "min_valid_ids": N_("The file has %(actual)s distinct valid ids; at least %(limit)s are needed."),
    "matches_file": N_("Most lines of the file are of another ID type: %(actual)s. Choose that type."),
    "not_before_start": N_("The end cannot be before the start."),
    "slot_in_future": N_("A new slot must start in the future."),
    "slot_started": N_("A slot that has started is billed and cannot be changed or removed."),
    "slot_overlap": N_("This slot overlaps another slot of the same ad group."),
    "slot_in_schedule": N_("A slot must lie within the ad group's start and end."),
    "slot_taken": N_("This slot is already booked on the ad space."),
    "public_address": N_("This address is not on the public internet: nothing can be sent to it."),
    "promotion_target": N_("The target group must match the promotion target: only app download campaigns take "
                           "install-based target groups; a non-download campaign's ad groups target all users."),
    "md5_or_bare_gaid": N_("The file holds 32-digit ids: if they are MD5 digests of GAIDs, choose that ID type; "
                           "if they are GAIDs without hyphens, write them with hyphens (8-4-4-4-12)."),
}

# The API's rule names (pydantic's and our services') -> a sentence above.
RULE_ALIASES: Mapping[str, str] = {
    "missing": "required", "none_required": "required", "not_null": "required", "required": "required",
    "string_too_short": "too_short", "min_length": "too_short", "too_short": "too_short",
    "string_too_long": "too_long", "max_length": "too_long", "too_long": "too_long",
    "string_pattern_mismatch": "pattern", "format": "pattern", "pattern": "pattern",
    "url_parsing": "url", "url_scheme": "url", "url_type": "url", "url_syntax_violation": "url",
    "valid_link": "url",
    "decimal": "number", "decimal_parsing": "number", "float_parsing": "number", "float_type": "number",
    "decimal_type": "number", "int_parsing": "whole_number", "int_type": "whole_number",
    "int_from_float": "whole_number", "integer": "whole_number",
    "range": "range", "int_range": "range", "datetime_range": "range",
    "greater_than": "greater_than", "greater_than_equal": "at_least", "less_than": "less_than",
    "less_than_equal": "at_most", "max": "at_most", "after_start": "end_after_start",
    "enum": "choice", "literal_error": "choice", "one_of": "choice", "allowed_values": "choice",
    "bid_type": "choice", "objective_bid_type": "choice", "placement_type": "choice", "known_region": "choice",
    "known_column": "choice", "publisher": "choice", "ad_space_formats": "choice", "not_in_format": "not_allowed",
    "in_future": "slot_in_future", "started_slot_kept": "slot_started", "no_overlap": "slot_overlap",
    "within_schedule": "slot_in_schedule", "slot_available": "slot_taken", "public_address": "public_address",
    "md5_or_bare_gaid": "md5_or_bare_gaid", "promotion_target": "promotion_target",
    "unique": "unique", "le_total_budget": "daily_le_total", "too_many_attempts": "too_many_attempts",
    "common_password": "common_password", "max_size_bytes": "file_too_large", "payload_too_large": "file_too_large",
    "max_size_kb": "file_too_large", "file_type": "file_type", "file_extension": "file_type",
    "file_format": "file_type", "text_file": "file_type", "image_size": "image_size", "video_size": "image_size",
    "aspect_ratio": "aspect_ratio", "min_dimensions": "min_dimensions", "max_pixels": "image_size",
    "max_duration_s": "max_duration_s", "max_count": "max_count", "not_allowed": "not_allowed",
    "url_required": "url_required", "e164": "e164", "color_format": "color_format", "no_emoji": "no_emoji",
    "language_code": "language_code",
    "duplicate": "duplicate", "not_found": "not_found", "exists": "not_found", "belongs_to_account": "not_found",
    "within_available_balance": "balance", "max_range_days": "max_range_days", "max_period_days": "max_range_days",
    "same_currency": "same_currency", "one_currency": "one_currency", "fixed_once_funded": "not_editable",
    "fixed_once_spent": "not_editable", "fixed_while_top_up_pending": "pending_top_up",
    "fixed_once_credit_line": "credit_line_granted",
    "no_nul_character": "no_nul_character", "string_unicode": "invalid",
    "allowed_for_country": "settlement", "allowed_for_settlement_entity": "settlement",
    "min_valid_ids": "min_valid_ids", "matches_file": "matches_file", "not_before_starts_on": "not_before_start",
    "not_before_start_date": "not_before_start", "known_time_zone": "invalid", "time_zone_range": "invalid",
    "bool_parsing": "invalid", "bool_type": "invalid", "date_parsing": "date", "datetime_parsing": "invalid",
    "date_from_datetime_parsing": "date", "date_from_datetime_inexact": "date", "date_type": "date",
    "datetime_from_date_parsing": "invalid",
}

# Anything that reads like the machine rather than a person: never shown.
_INTERNAL = re.compile(r"/api/|\b(GET|POST|PUT|PATCH|DELETE) /|\^|\$'|\\[dws]|_micros|\bmicros\b|\[[^\]]*-[^\]]*\]|"
                       r"\{'|Value error|Input should|String should|pydantic|Traceback")


def _base(field: str) -> str:
    last = re.sub(r"(\.\d+)+$", "", field or "").split(".")[-1]
    return last


def field_label(field: str, gettext: Callable[[str], str]) -> str:
    name = _base(field)
    message = FIELD_LABELS.get(name) or FIELD_LABELS.get(name.removesuffix("_micros"))
    if message:
        return gettext(message)
    return gettext(N_("This field")) if not name or name == "form" else name.replace("_", " ").capitalize()


class Speaker:
    """Says refusals in one language, with money in one currency."""

    def __init__(self, language: str, currency: str = "USD"):
        self.language = language
        self.currency = currency or "USD"
        self.catalog = i18n.translations(language)
        self.fmt = i18n.Formatter(language)

    def gettext(self, message: str) -> str:
        return self.catalog.gettext(message)

    def _value(self, field: str, value: Any) -> str:
        name = _base(field)
        if isinstance(value, list | tuple):
            return ", ".join(self._value(field, v) for v in value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value)
        money_micros = name.endswith("_micros")
        money_units = name in UNIT_MONEY_FIELDS
        if money_micros or money_units:
            try:
                amount = Decimal(str(value))
            except (InvalidOperation, ValueError):
                return str(value)
            micros = int(amount) if money_micros else int(amount * 1_000_000)
            # A limit is told as exactly as it is: "at least $0.000001", never a rounded "$0.00".
            return self.fmt.money(micros, self.currency, exact=True)
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return self.fmt.number(value)
        text = str(value)
        return "" if _INTERNAL.search(text) else code_name(text, self.language)

    def _size(self, value: Any, in_kb: bool) -> str:
        """A file size as people read it: 500 KB, 2.5 MB."""
        try:
            size = Decimal(str(value)) * (1024 if in_kb else 1)
        except (InvalidOperation, ValueError):
            return ""
        if size >= 1024 * 1024:
            return f"{self.fmt.number((size / (1024 * 1024)).quantize(Decimal('0.1')))} MB"
        if size >= 1024:
            return f"{self.fmt.number((size / 1024).quantize(Decimal('1')))} KB"
        return f"{self.fmt.number(size)} B"

    def key(self, item: Mapping[str, Any]) -> str:
        """Which sentence speaks for this refusal."""
        rule = str(item.get("rule") or "")
        field = _base(str(item.get("field") or ""))
        message = str(item.get("message") or "").lower()
        key = RULE_ALIASES.get(rule, "")
        if rule in ("string_too_short", "min_length", "too_short") and item.get("limit") in (1, "1"):
            return "required"
        if rule == "value_error" or key in ("pattern", "invalid", ""):
            if "email" in field or "email address" in message:
                return "email"
            if field in URL_FIELDS or "url" in field or "url" in message:
                return "url"
            if "accept" in field or "agreement" in message:
                return "agreement"
            if rule == "value_error" and ("end" in field or "after" in message) and "start" in message:
                return "end_after_start"
        if key == "whole_number" and isinstance(item.get("limit"), list | tuple) and len(item["limit"]) == 2:
            return "whole_number_range"
        if key == "range" and not (isinstance(item.get("limit"), list | tuple) and len(item["limit"]) == 2):
            return "invalid"
        return key or "invalid"

    def sentence(self, item: Mapping[str, Any]) -> str:
        field = str(item.get("field") or "")
        key = self.key(item)
        limit, actual = item.get("limit"), item.get("actual")
        values = {"field": field_label(field, self.gettext), "limit": self._value(field, limit),
                  "actual": self._value(field, actual), "low": "", "high": ""}
        if isinstance(limit, list | tuple) and len(limit) == 2:
            values["low"], values["high"] = self._value(field, limit[0]), self._value(field, limit[1])
        if key == "file_too_large":
            in_kb = item.get("rule") == "max_size_kb"
            values["limit"], values["actual"] = self._size(limit, in_kb), self._size(actual, in_kb)
        text = self.gettext(RULE_SENTENCES[key]) % values
        if key == "invalid" and self.language == "en":
            detail = self.detail(str(item.get("message") or ""))
            if detail:
                text = f"{text} {detail}"
        return text

    def detail(self, message: str) -> str:
        """A service's own wording, when it is one of ours in the catalog and not machine talk."""
        cleaned = re.sub(r"^Value error, ", "", message).strip()
        if not cleaned or _INTERNAL.search(cleaned):
            return ""
        translated = self.gettext(cleaned)
        if translated != cleaned or self.language == "en":
            return translated[:1].upper() + translated[1:] + ("" if translated.endswith(".") else ".")
        return ""

    def page_message(self, status: int, code: str, message: str) -> str:
        """The sentence of an error page: the service's words where they are ours, else one per status."""
        if code == "role_forbidden":  # the service's words name the permission and the role by their codes
            return self.gettext(ROLE_REFUSED)
        detail = self.detail(message)
        if detail:
            return detail
        return self.gettext(STATUS_SENTENCES.get(status, STATUS_SENTENCES[400]))


ROLE_REFUSED = N_("Your role does not allow this. An administrator or the account's owner can change your role.")
STATUS_SENTENCES: Mapping[int, str] = {
    400: N_("The request could not be carried out."),
    401: N_("Please sign in again."),
    403: N_("Your account is not allowed to do this."),
    404: N_("This page does not exist, or you do not have access to it."),
    409: N_("This is not possible in the object's current state."),
    413: N_("The upload is too large."),
    422: N_("Some values need attention."),
    429: N_("Too many attempts. Please wait a little and try again."),
    503: N_("The service is busy. Please try again in a moment."),
}

# Serving-status reasons as the services word them -> the catalog's sentence.
# Source: src/adstack/campaigns/status.py and src/adstack/creatives/service.py (the reasons they write).
_FIXED_REASONS = (
    N_("the ad group is deleted"), N_("the ad group is paused"), N_("its campaign is paused"),
    N_("its campaign is deleted"), N_("the ad group has not been submitted for review"),
    N_("the ad group is under review"), N_("the ad group was rejected"), N_("the account has no balance left"),
    N_("outside the booked CPT slots"), N_("serving"), N_("the campaign is deleted"), N_("the campaign is paused"),
    N_("the booked CPT slot's charge was refused or cut short at its start, so it does not serve"),
    N_("the campaign has no ad groups"), N_("the creative is deleted"), N_("the creative is paused"),
    N_("the creative has not been submitted for review"), N_("the creative is under review"),
    N_("the creative was rejected"), N_("the ad group no longer exists"),
    N_("the ad group was suspended by a reviewer"), N_("the creative was suspended by a reviewer"),
    N_("the ad group has no creative"), N_("its creatives are under review"),
    N_("the account was suspended by the platform"),
    N_("none of its creatives is approved and enabled"),
    N_("no active ad space of its placement, within its publishers, ad spaces and exceptions, takes its formats "
       "and sizes"),
    N_("none of the audiences it includes has members yet: each is still building, failed or empty"),
)
_PATTERN_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^ad group: (?P<reason>.+)$"), N_("ad group: %(reason)s")),
    (re.compile(r"^starts at (?P<time>.+)$"), N_("starts at %(time)s")),
    (re.compile(r"^ended at (?P<time>.+)$"), N_("ended at %(time)s")),
    (re.compile(r"^outside dayparting \((?P<when>.+)\)$"), N_("outside the chosen hours (%(when)s)")),
    (re.compile(r"^the account is (?P<status>[a-z ]+)$"), N_("the account is %(status)s")),
    (re.compile(r"^the account was suspended by the platform: (?P<reasons>.+)$"),
     N_("the account was suspended by the platform: %(reasons)s")),
    (re.compile(r"^the (?P<kind>ad group|creative) was rejected: (?P<reasons>.+)$"),
     N_("rejected: %(reasons)s")),
    (re.compile(r"^the (?P<kind>ad group|creative) was suspended by a reviewer: (?P<reasons>.+)$"),
     N_("suspended by a reviewer: %(reasons)s")),
    (re.compile(r"^total budget of (?P<amount>.+) is spent$"), N_("total budget of %(amount)s is spent")),
    (re.compile(r"^daily budget of (?P<amount>.+) is spent for today$"),
     N_("daily budget of %(amount)s is spent for today")),
    (re.compile(r"^(?P<amount>.+) of today's budget is held by ads served and not yet shown.*$"),
     N_("%(amount)s of today's budget is held by ads served and not yet shown")),
    (re.compile(r"^(?P<amount>.+) of the total budget is held by ads served and not yet shown.*$"),
     N_("%(amount)s of the total budget is held by ads served and not yet shown")),
    (re.compile(r"^(?P<serving>\d+) of (?P<total>\d+) ad groups serving$"),
     N_("%(serving)s of %(total)s ad groups serving")),
    (re.compile(r"^no ad group is serving; the closest is (?P<status>[a-z ]+)$"),
     N_("no ad group is serving; the closest is %(status)s")),
)


def serving_reason(reason: str | None, language: str) -> str:
    """A serving-status reason in the visitor's language (rejection reasons the reviewer typed stay as typed)."""
    text = (reason or "").strip()
    if not text:
        return ""
    catalog = i18n.translations(language)
    if text in _FIXED_REASONS:
        return catalog.gettext(text)
    for pattern, message in _PATTERN_REASONS:
        match = pattern.match(text)
        if match is None:
            continue
        parts = match.groupdict()
        if "status" in parts:
            parts["status"] = code_name(parts["status"].replace(" ", "_"), language)
        if "reason" in parts:
            parts["reason"] = serving_reason(parts["reason"], language)
        if "reasons" in parts:
            parts["reasons"] = "; ".join(catalog.gettext(r.strip()) for r in parts["reasons"].split(";"))
        return catalog.gettext(message) % parts
    return text
