"""Ad management forms: HTML form fields to the API's campaign, ad group and creative payloads, and back.

Only shape conversion lives here (comma lists, hour grids, amounts typed in currency units); every rule is
checked by the campaigns and creatives services exactly as for the API.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from starlette.datastructures import FormData

from adstack.campaigns.models import AdGroup, Campaign
from adstack.console import forms
from adstack.core.timeutil import as_utc, zone
from adstack.creatives.models import Creative

TEXT_SLOTS = 3  # titles, subtitles, descriptions and button texts the creative form offers
# One-line materials of the message formats, one input each.
SINGLE_MATERIAL_TEXTS = ("business_name", "business_phone", "button_1", "button_2", "background_color")
TRACKING_EVENTS = ("start", "first_quartile", "midpoint", "third_quartile")
TARGETING_CHOICE_LISTS = ("countries", "genders", "age_ranges", "networks")
TARGETING_TEXT_LISTS = ("languages", "carriers", "device_models", "installed_apps", "installed_app_categories",
                        "not_installed_apps", "not_installed_app_categories")
TARGETING_ID_LISTS = ("include_audience_ids", "exclude_audience_ids")


def split_list(raw: str) -> list[str]:
    """Comma- or line-separated values typed in a text box."""
    return [part.strip() for part in re.split(r"[,\n;]+", raw) if part.strip()]


def ids(form: FormData, name: str) -> list[int]:
    values = []
    for raw in form.getlist(name):
        if isinstance(raw, str) and raw.strip().isdecimal() and len(raw.strip()) < 19:
            values.append(int(raw.strip()))
    return list(dict.fromkeys(values))


def _local_input(value: str) -> str | None:
    """A datetime-local value (no zone) passes through; the service reads it in the ad group's zone."""
    value = value.strip()
    if not value:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return value  # let validation name the field
    return value


def campaign_payload(form: FormData) -> dict[str, Any]:
    data: dict[str, Any] = {
        "objective": forms.text(form, "objective"),
        "name": forms.text(form, "name"),
        "promotion_type": forms.text(form, "promotion_type"),
    }
    if data["promotion_type"] == "app_download":
        data["package_name"] = forms.text(form, "package_name") or None
    else:
        data["landing_kind"] = forms.text(form, "landing_kind") or None
        data["landing_url"] = forms.text(form, "landing_url") or None
    account = forms.text(form, "account_id")
    if account.isdecimal() and len(account) < 19:
        data["account_id"] = int(account)
    return data


def targeting_payload(form: FormData) -> dict[str, Any]:
    targeting: dict[str, Any] = {}
    for name in TARGETING_CHOICE_LISTS:
        targeting[name] = forms.texts(form, name)
    for name in TARGETING_TEXT_LISTS:
        targeting[name] = split_list(forms.text(form, name))
    for name in TARGETING_ID_LISTS:
        targeting[name] = ids(form, name)
    for name in ("os_version_min", "os_version_max"):
        value = forms.text(form, name)
        if value:
            targeting[name] = value
    # Typed ids that are not numbers pass through, so validation names the one at fault.
    typed = split_list(forms.text(form, "exception_ad_space_ids"))
    spaces = [int(t) if t.isdecimal() and len(t) < 19 else t for t in typed]
    targeting["exceptions"] = {"publisher_packages": split_list(forms.text(form, "exception_publisher_packages")),
                               "ad_space_ids": spaces}
    return targeting


def dayparting(form: FormData) -> list[list[bool]] | None:
    if forms.text(form, "schedule_mode") != "custom":
        return None
    return [[form.get(f"hour_{day}_{hour}") == "on" for hour in range(24)] for day in range(7)]


def booked_slots(raw: str) -> list[dict[str, str]]:
    """One slot per line: `start/end`, each a local date-time."""
    slots = []
    for line in raw.splitlines():
        start, _, end = line.strip().partition("/")
        if start.strip() and end.strip():
            slots.append({"start": start.strip(), "end": end.strip()})
    return slots


def ad_group_payload(form: FormData, *, for_update: bool = False) -> dict[str, Any]:
    """Every ad group field the form carries, as the API's AdGroupCreate/AdGroupUpdate would receive it.

    Money typed in currency units becomes micros here; a bad amount raises ValidationFailed naming the field.
    """
    data: dict[str, Any] = {}
    for name in ("name", "promotion_channel", "target_group", "placement_type", "time_zone", "pacing", "bid_type"):
        value = forms.text(form, name)
        if value or not for_update:
            data[name] = value
    data["conversion_event"] = forms.text(form, "conversion_event") or None
    data["publisher_ids"] = ids(form, "publisher_ids")
    data["ad_space_ids"] = ids(form, "ad_space_ids")
    data["targeting"] = targeting_payload(form)
    start = _local_input(forms.text(form, "start_at"))
    if start or not for_update:
        data["start_at"] = start
    data["end_at"] = _local_input(forms.text(form, "end_at"))
    data["dayparting"] = dayparting(form)
    data["total_budget_micros"] = forms.money(form, "total_budget")
    data["daily_budget_micros"] = forms.money(form, "daily_budget")
    data["bid_micros"] = forms.money(form, "bid", required=True)
    data["frequency_cap_per_day"] = forms.integer(form, "frequency_cap_per_day", minimum=1, maximum=1000)
    data["booked_impressions"] = forms.integer(form, "booked_impressions", minimum=1, maximum=10**12)
    data["booked_slots"] = booked_slots(forms.text(form, "booked_slots"))
    if not for_update and data.get("start_at") is None:
        data.pop("start_at")
    return data


def ad_group_edit_payload(form: FormData, stored: AdGroup) -> dict[str, Any]:
    """The edit form's payload, with what the form cannot express taken from the stored ad group.

    The form shows times to the minute: a time left as shown keeps its stored seconds, so saving an unchanged
    form changes nothing. Targeting the form has no inputs for (set through the API) is kept.
    """
    data = ad_group_payload(form, for_update=True)
    same_zone = data.get("time_zone", stored.time_zone) == stored.time_zone
    if same_zone:
        for name in ("start_at", "end_at"):
            if name in data and data[name] == local_input_value(getattr(stored, name), stored.time_zone):
                del data[name]
        if [_slot_line(slot, stored.time_zone) for slot in data["booked_slots"]] == [
                _slot_line({"start": datetime.fromisoformat(s["start"]), "end": datetime.fromisoformat(s["end"])},
                           stored.time_zone) for s in stored.booked_slots or []]:
            del data["booked_slots"]
    data["targeting"] = {**dict(stored.targeting or {}), **data["targeting"]}
    return data


def _slot_line(slot: dict[str, Any], time_zone: str) -> str:
    """A booked slot as the form shows it, whether typed (local text) or stored (datetimes)."""
    def shown(value: Any) -> str:
        return local_input_value(value, time_zone) if isinstance(value, datetime) else str(value)
    return f"{shown(slot['start'])}/{shown(slot['end'])}"


def creative_payload(form: FormData) -> dict[str, Any]:
    materials: dict[str, Any] = {
        "titles": forms.texts(form, "titles"),
        "subtitles": forms.texts(form, "subtitles"),
        "descriptions": forms.texts(form, "descriptions"),
        "button_texts": forms.texts(form, "button_texts"),
        "images": ids(form, "images"),
        "videos": ids(form, "videos"),
        "cover_image": next(iter(ids(form, "cover_image")), None),
        "icon": next(iter(ids(form, "icon")), None),
        "top_button": forms.checkbox(form, "top_button") or None,
    }
    for name in SINGLE_MATERIAL_TEXTS:
        materials[name] = forms.text(form, name) or None
    materials["language"] = forms.text(form, "language") or None
    return {
        "name": forms.text(form, "name"),
        "format": forms.text(form, "format"),
        "materials": materials,
        "click_url": forms.text(form, "click_url"),
        "deeplink": forms.text(form, "deeplink") or None,
        "impression_urls": split_list(forms.text(form, "impression_urls")),
        "video_tracking": {event: split_list(forms.text(form, f"track_{event}")) for event in TRACKING_EVENTS},
    }


# ---------- back to form values (edit forms, copies) ----------


def local_input_value(moment: datetime | None, time_zone: str) -> str:
    if moment is None:
        return ""
    return as_utc(moment).astimezone(zone(time_zone)).strftime("%Y-%m-%dT%H:%M")


def campaign_values(campaign: Campaign) -> dict[str, Any]:
    return {"objective": campaign.objective, "name": campaign.name, "promotion_type": campaign.promotion_type,
            "package_name": campaign.package_name or "", "landing_kind": campaign.landing_kind or "",
            "landing_url": campaign.landing_url or "", "account_id": campaign.account_id}


def ad_group_values(ad_group: AdGroup, amount: Any) -> dict[str, Any]:
    """Form values of a stored ad group; `amount` formats micros as a plain decimal."""
    targeting = dict(ad_group.targeting or {})
    values: dict[str, Any] = {
        "name": ad_group.name, "promotion_channel": ad_group.promotion_channel,
        "target_group": ad_group.target_group, "placement_type": ad_group.placement_type,
        "publisher_ids": list(ad_group.publisher_ids or []), "ad_space_ids": list(ad_group.ad_space_ids or []),
        "time_zone": ad_group.time_zone, "pacing": ad_group.pacing, "bid_type": ad_group.bid_type,
        "conversion_event": ad_group.conversion_event or "",
        "start_at": local_input_value(ad_group.start_at, ad_group.time_zone),
        "end_at": local_input_value(ad_group.end_at, ad_group.time_zone),
        "schedule_mode": "custom" if ad_group.dayparting else "all_day",
        "dayparting": ad_group.dayparting,
        "total_budget": amount(ad_group.total_budget_micros), "daily_budget": amount(ad_group.daily_budget_micros),
        "bid": amount(ad_group.bid_micros),
        "frequency_cap_per_day": ad_group.frequency_cap_per_day or "",
        "booked_impressions": ad_group.booked_impressions or "",
        "booked_slots": "\n".join(f"{local_input_value(datetime.fromisoformat(s['start']), ad_group.time_zone)}/"
                                  f"{local_input_value(datetime.fromisoformat(s['end']), ad_group.time_zone)}"
                                  for s in ad_group.booked_slots or []),
    }
    for name in (*TARGETING_CHOICE_LISTS, *TARGETING_ID_LISTS):
        values[name] = list(targeting.get(name) or [])
    for name in TARGETING_TEXT_LISTS:
        values[name] = ", ".join(targeting.get(name) or [])
    for name in ("os_version_min", "os_version_max"):
        values[name] = targeting.get(name) or ""
    exceptions = targeting.get("exceptions") or {}
    values["exception_publisher_packages"] = ", ".join(exceptions.get("publisher_packages") or [])
    values["exception_ad_space_ids"] = ", ".join(str(s) for s in exceptions.get("ad_space_ids") or [])
    return values


def form_values(form: FormData) -> dict[str, Any]:
    """What the visitor typed, to show again next to the refusals."""
    values: dict[str, Any] = {}
    for key in form:
        items = [v for v in form.getlist(key) if isinstance(v, str)]
        if key in (*TARGETING_CHOICE_LISTS, *TARGETING_ID_LISTS, "publisher_ids", "ad_space_ids", "titles",
                   "subtitles", "descriptions", "button_texts", "images", "videos", "cover_image", "icon"):
            values[key] = items
        elif items:
            values[key] = items[0]
    if values.get("schedule_mode") == "custom":
        values["dayparting"] = dayparting(form)
    for name in (*TARGETING_ID_LISTS, "publisher_ids", "ad_space_ids", "images", "videos", "cover_image", "icon"):
        values[name] = [int(v) for v in values.get(name, []) if str(v).isdecimal() and len(str(v)) < 19]
    return values


def creative_values(creative: Creative) -> dict[str, Any]:
    materials = creative.materials or {}
    tracking = creative.video_tracking or {}
    return {
        "name": creative.name, "format": creative.format,
        "titles": list(materials.get("titles") or []), "subtitles": list(materials.get("subtitles") or []),
        "descriptions": list(materials.get("descriptions") or []),
        "button_texts": list(materials.get("button_texts") or []), "images": list(materials.get("images") or []),
        "videos": list(materials.get("videos") or []),
        "cover_image": [materials["cover_image"]] if materials.get("cover_image") else [],
        "icon": [materials["icon"]] if materials.get("icon") else [],
        **{name: materials.get(name) or "" for name in SINGLE_MATERIAL_TEXTS},
        "language": materials.get("language") or "",
        "top_button": "1" if materials.get("top_button") else "", "click_url": creative.click_url,
        "deeplink": creative.deeplink or "", "impression_urls": "\n".join(creative.impression_urls or []),
        **{f"track_{event}": "\n".join(tracking.get(event) or []) for event in TRACKING_EVENTS},
    }
