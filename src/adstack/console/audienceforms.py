"""Label audience forms: one section per kind of condition, to a `LabelRule` payload and back.

Only shape conversion lives here (package lists typed in a box, minutes instead of seconds); every rule is
checked by `LabelRule` exactly as for the API, and its refusals are renamed to the form's inputs.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData

from adstack.console import forms
from adstack.console.adforms import split_list
from adstack.console.forms import FormErrors

MAX_MINUTES = 90 * 24 * 60

# condition kind -> its attribute -> the form input that holds it ("" names the section as a whole)
SECTIONS: dict[str, dict[str, str]] = {
    "installed_apps": {"packages": "installed_apps", "match": "installed_apps_match", "": "installed_apps"},
    "not_installed_apps": {"packages": "not_installed_apps", "": "not_installed_apps"},
    "installed_categories": {"categories": "installed_categories", "match": "installed_categories_match",
                             "": "installed_categories"},
    "not_installed_categories": {"categories": "not_installed_categories", "": "not_installed_categories"},
    "active_in_apps": {"packages": "active_in_apps", "within_days": "active_within_days", "": "active_in_apps"},
    "usage_time": {"package": "usage_package", "category": "usage_category", "within_days": "usage_within_days",
                   "min_seconds": "usage_min_minutes", "max_seconds": "usage_max_minutes", "": "usage"},
    "converted": {"app_ids": "converted_apps", "events": "converted_events", "within_days": "converted_within_days",
                  "": "converted_apps"},
}


def _minutes(form: FormData, name: str) -> int | None:
    minutes = forms.integer(form, name, minimum=0, maximum=MAX_MINUTES)
    return None if minutes is None else minutes * 60


def _days(form: FormData, name: str) -> int | str:
    return forms.text(form, name) or 7


def rule_payload(form: FormData) -> dict[str, Any]:
    """The conditions of every section the visitor filled in. Raises ValidationFailed for a number that is
    not one (named by its input)."""
    conditions: list[dict[str, Any]] = []
    if packages := split_list(forms.text(form, "installed_apps")):
        conditions.append({"kind": "installed_apps", "packages": packages,
                           "match": forms.text(form, "installed_apps_match") or "any"})
    if packages := split_list(forms.text(form, "not_installed_apps")):
        conditions.append({"kind": "not_installed_apps", "packages": packages})
    if categories := forms.texts(form, "installed_categories"):
        conditions.append({"kind": "installed_categories", "categories": categories,
                           "match": forms.text(form, "installed_categories_match") or "any"})
    if categories := forms.texts(form, "not_installed_categories"):
        conditions.append({"kind": "not_installed_categories", "categories": categories})
    if packages := split_list(forms.text(form, "active_in_apps")):
        conditions.append({"kind": "active_in_apps", "packages": packages,
                           "within_days": _days(form, "active_within_days")})
    usage_package, usage_category = forms.text(form, "usage_package"), forms.text(form, "usage_category")
    min_seconds, max_seconds = _minutes(form, "usage_min_minutes"), _minutes(form, "usage_max_minutes")
    if usage_package or usage_category or min_seconds is not None or max_seconds is not None:
        conditions.append({"kind": "usage_time", "package": usage_package or None,
                           "category": usage_category or None, "within_days": _days(form, "usage_within_days"),
                           "min_seconds": min_seconds or 0, "max_seconds": max_seconds})
    if app_ids := forms.texts(form, "converted_apps"):
        conditions.append({"kind": "converted", "app_ids": app_ids,
                           "events": forms.texts(form, "converted_events") or ["INSTALL"],
                           "within_days": forms.text(form, "converted_within_days") or 30})
    return {"conditions": conditions, "seen_within_days": forms.text(form, "seen_within_days") or 30}


def rule_values(rule: dict[str, Any] | None) -> dict[str, Any]:
    """A stored rule as the form's inputs, for editing."""
    values: dict[str, Any] = {"installed_categories": [], "not_installed_categories": [], "converted_apps": [],
                              "converted_events": []}
    if not rule:
        return values
    values["seen_within_days"] = rule.get("seen_within_days", 30)
    for condition in rule.get("conditions", []):
        kind = condition.get("kind")
        if kind in ("installed_apps", "not_installed_apps", "active_in_apps"):
            values[kind] = "\n".join(condition.get("packages", []))
        if kind in ("installed_categories", "not_installed_categories"):
            values[kind] = list(condition.get("categories", []))
        if kind in ("installed_apps", "installed_categories"):
            values[f"{kind}_match"] = condition.get("match", "any")
        if kind == "active_in_apps":
            values["active_within_days"] = condition.get("within_days", 7)
        if kind == "converted":
            values.update(converted_apps=[str(a) for a in condition.get("app_ids", [])],
                          converted_events=list(condition.get("events", [])),
                          converted_within_days=condition.get("within_days", 30))
        if kind == "usage_time":
            values.update(usage_package=condition.get("package") or "", usage_category=condition.get("category") or "",
                          usage_within_days=condition.get("within_days", 7),
                          usage_min_minutes=(condition.get("min_seconds") or 0) // 60 or "",
                          usage_max_minutes="" if condition.get("max_seconds") is None
                          else condition["max_seconds"] // 60)
    return values


def form_values(form: FormData) -> dict[str, Any]:
    """What was typed, to show again beside the refusals."""
    values: dict[str, Any] = {name: forms.text(form, name) for name in (
        "name", "region_code", "account_id", "seen_within_days", "installed_apps", "installed_apps_match",
        "not_installed_apps", "installed_categories_match", "active_in_apps", "active_within_days", "usage_package",
        "usage_category", "usage_within_days", "usage_min_minutes", "usage_max_minutes", "converted_within_days")}
    values["installed_categories"] = forms.texts(form, "installed_categories")
    values["converted_apps"] = forms.texts(form, "converted_apps")
    values["converted_events"] = forms.texts(form, "converted_events")
    values["not_installed_categories"] = forms.texts(form, "not_installed_categories")
    return values


_CONDITION_FIELD = re.compile(r"^rule\.conditions\.(\d+)\.([a-z_]+)(?:\.([a-z_]+))?")


def form_errors(errors: FormErrors, conditions: list[dict[str, Any]]) -> FormErrors:
    """Refusals of the payload renamed to the form's inputs: `rule.conditions.2.usage_time.max_seconds` is
    the usage section's `usage_max_minutes`; `rule.conditions` (none filled in) is `conditions`."""
    renamed = FormErrors()
    for items in errors.values():
        for item in items:
            field = item["field"]
            match = _CONDITION_FIELD.match(field)
            if match and int(match[1]) < len(conditions):
                section = SECTIONS.get(conditions[int(match[1])]["kind"], {})
                field = section.get(match[3] or "", section.get("", field))
            elif field.startswith("rule."):
                field = field.removeprefix("rule.")
            renamed.add(field, item["rule"], item["message"], limit=item["limit"], actual=item["actual"])
    return renamed
