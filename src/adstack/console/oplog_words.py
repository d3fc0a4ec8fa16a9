"""The operation log in words: each change by its field's label, money in the account's currency, targeting as a
short readable summary, and codes (statuses, formats, bid types) by their names in the visitor's language."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adstack.console import i18n
from adstack.console.i18n import N_
from adstack.console.messages import FIELD_LABELS, field_label
from adstack.console.vocabulary import code_name

# Columns the services record that have no form label.
LOG_FIELD_LABELS: Mapping[str, str] = {
    "status": N_("Status"), "review_status": N_("Review status"), "rejection_reasons": N_("Rejection reasons"),
    "promotion_type": N_("Promotion type"), "campaign_id": N_("Campaign"), "ad_group_id": N_("Ad group"),
    "materials": N_("Materials"), "kind": N_("Type"), "size": N_("Size"), "region_code": N_("Country or region"),
    "id_type": N_("File type"), "balance_micros": N_("Balance"), "low_balance_threshold_micros": N_("Balance alert"),
    "payment_mode": N_("Payment"), "type": N_("Type"), "role": N_("Role"), "copied_from": N_("Copied from"),
    "filename": N_("File"), "app_package": N_("Package name"), "platform": N_("Platform"),
    "parent_agency_id": N_("Agency"), "contract_version": N_("Contract"), "agreement_version": N_("Agreement"),
    "has_been_approved": N_("Approved before"), "deleted_at": N_("Deleted at"),
    "account_id": N_("Account ID"), "size_bytes": N_("Size"), "iab_categories": N_("IAB categories"),
    "content_type": N_("File format"), "sha256": N_("Checksum"), "storage_path": N_("Stored file"),
    "user_id": N_("User"), "account_role": N_("Account role"), "expires_at": N_("Expires"),
    "accepted_at": N_("Accepted at"),
}

# Targeting keys in the order a person reads them, each with its label.
TARGETING_LABELS: tuple[tuple[str, str], ...] = (
    ("countries", N_("Countries or regions")), ("genders", N_("Gender")), ("age_ranges", N_("Age")),
    ("languages", N_("Languages")), ("networks", N_("Network")), ("carriers", N_("Carriers")),
    ("device_models", N_("Device models")), ("installed_apps", N_("Installed apps (packages)")),
    ("installed_app_categories", N_("Installed app categories")),
    ("not_installed_apps", N_("Not installed apps (packages)")),
    ("not_installed_app_categories", N_("Not installed app categories")),
    ("app_behaviours", N_("App behaviour")), ("app_usage", N_("App usage time")),
    ("include_audience_ids", N_("Include audiences")), ("exclude_audience_ids", N_("Exclude audiences")),
    ("deal_ids", N_("Deals")),
)
LIST_PREVIEW = 5


class LogWords:
    """Turns one log row's changes into (label, before, after) texts."""

    def __init__(self, language: str, time_zone: str = "UTC"):
        self.language = language
        self.catalog = i18n.translations(language)
        self.fmt = i18n.Formatter(language, time_zone)

    def _(self, message: str) -> str:
        return self.catalog.gettext(message)

    def label(self, field: str) -> str:
        name = field.split(".")[-1]
        message = LOG_FIELD_LABELS.get(name)
        if message:
            return self._(message)
        if name in FIELD_LABELS or name.removesuffix("_micros") in FIELD_LABELS:
            return field_label(name, self._)
        return name.removesuffix("_micros").replace("_", " ").capitalize()

    def value(self, field: str, value: Any, currency: str) -> str:
        name = field.split(".")[-1]
        if value is None or value == "" or value == []:
            return "—"
        if isinstance(value, bool):
            return self._("Yes") if value else self._("No")
        if name.endswith("_micros") and isinstance(value, int | float):
            return self.fmt.money(int(value), currency)
        if name == "targeting" and isinstance(value, Mapping):
            return self.targeting(value)
        if name == "dayparting" and isinstance(value, list):
            hours = sum(1 for day in value if isinstance(day, list) for on in day if on)
            return self._("All day") if hours in (0, 7 * 24) else self._("%(hours)s hours a week") % {"hours": hours}
        if name in ("start_at", "end_at", "created_at", "deleted_at", "expires_at", "accepted_at") \
                and isinstance(value, str):
            try:
                return self.fmt.datetime(datetime.fromisoformat(value))
            except ValueError:
                return value
        if isinstance(value, list):
            return self._list([self.value(name, item, currency) if not isinstance(item, Mapping)
                               else self._mapping(item, currency) for item in value])
        if isinstance(value, Mapping):
            return self._mapping(value, currency)
        if isinstance(value, int | float):
            return self.fmt.number(value)
        return code_name(value, self.language)

    def _list(self, items: list[str]) -> str:
        shown = ", ".join(items[:LIST_PREVIEW])
        if len(items) > LIST_PREVIEW:
            shown += " " + self._("and %(count)s more") % {"count": len(items) - LIST_PREVIEW}
        return shown

    def _mapping(self, value: Mapping[str, Any], currency: str) -> str:
        parts = [f"{self.label(str(k))}: {self.value(str(k), v, currency)}" for k, v in value.items()
                 if v not in (None, "", [], {})]
        return "; ".join(parts) or "—"

    def targeting(self, value: Mapping[str, Any]) -> str:
        """E.g. "Countries or regions: SG, ID; Gender: Male; OS version 10 to 14"."""
        parts = []
        for key, message in TARGETING_LABELS:
            items = value.get(key) or []
            if items:
                names = [code_name(item, self.language) if isinstance(item, str) else
                         (self._mapping(item, "") if isinstance(item, Mapping) else str(item)) for item in items]
                parts.append(f"{self._(message)}: {self._list(names)}")
        low, high = value.get("os_version_min"), value.get("os_version_max")
        if low or high:
            parts.append(self._("OS version %(low)s to %(high)s") % {"low": low or "…", "high": high or "…"})
        exceptions = value.get("exceptions")
        if isinstance(exceptions, Mapping) and any(exceptions.values()):
            label = self._("Exceptions")
            parts.append(f"{label}: {self._mapping(exceptions, '')}")
        return "; ".join(parts) or self._("Everyone (no targeting)")

    def changes(self, row: Any, currency: str) -> list[dict[str, str]]:
        return [{"field": str(change.get("field", "")), "label": self.label(str(change.get("field", ""))),
                 "old": self.value(str(change.get("field", "")), change.get("old"), currency),
                 "new": self.value(str(change.get("field", "")), change.get("new"), currency)}
                for change in (row.changes or []) if isinstance(change, Mapping)]
