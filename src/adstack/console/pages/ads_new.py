"""Step-by-step creation and editing: campaign -> ad group -> creative, with the live audience estimate beside
the targeting, the live preview beside the materials, and instant checks of each uploaded file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from adstack.accounts import tenancy
from adstack.audiences import service as audiences
from adstack.campaigns import audience_size
from adstack.campaigns import service as campaigns
from adstack.campaigns.ad_group_values import allowed_target_groups
from adstack.campaigns.enums import (
    BID_TYPES_BY_OBJECTIVE,
    LandingKind,
    MarketingObjective,
    Pacing,
    PromotionChannel,
    PromotionType,
    TargetGroup,
)
from adstack.campaigns.models import (
    AdGroupCreate,
    AdGroupUpdate,
    CampaignCreate,
    CampaignUpdate,
    EstimateIn,
)
from adstack.campaigns.targeting import AgeRange, Gender, Network
from adstack.console import adforms, forms
from adstack.console.forms import FormErrors
from adstack.console.pages import choices
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, FieldError, ValidationFailed
from adstack.core.vocabulary import ConversionEvent, PlacementType
from adstack.creatives import catalog as creative_formats
from adstack.creatives import formats
from adstack.creatives import service as creatives
from adstack.creatives.models import CreativeCreate, CreativeUpdate, Materials, PreviewIn
from adstack.inventory import service as inventory
from adstack.media import service as media
from adstack.media.models import MediaAsset, MediaKind

router = APIRouter(route_class=ConsoleRoute)

UPLOAD_FIELDS = {"images": MediaKind.IMAGE, "videos": MediaKind.VIDEO, "cover_image": MediaKind.IMAGE,
                 "icon": MediaKind.IMAGE}
SINGLE_UPLOADS = ("cover_image", "icon")


# ---------- quick copy ----------
# Source: Mi Ads usage guide, 3.3 Ad List, "② Copy: —Quick copy&paste: Fill in the same content, and everything can
# be modified". The creation form opens filled with the original's values; nothing is saved until it is sent. The
# name starts as the original's with the suffix the API's copies get (campaigns.service.copy_name).


def _copy_source(visitor: Visitor) -> int | None:
    """The id in `?copy_of=`: the object whose values prefill a creation form."""
    raw = visitor.request.query_params.get("copy_of", "")
    return int(raw) if raw.isdecimal() and 0 < len(raw) < 19 else None


def _as_copy(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "name": campaigns.copy_name(str(values.get("name") or ""))}


# ---------- step 1: campaign ----------


def _campaign_form(visitor: Visitor, values: dict[str, Any], errors: FormErrors, *, campaign_id: int | None = None,
                   status: int = 200, copied_from: Any = None) -> Response:
    return render(visitor, "ads/campaign_form.html", {
        "values": values, "errors": errors, "campaign_id": campaign_id, "copied_from": copied_from,
        "account_choices": choices.account_choices(visitor),
        "objectives": [o.value for o in MarketingObjective], "promotion_types": [p.value for p in PromotionType],
        "landing_kinds": [k.value for k in LandingKind], "step": 1,
    }, status=status)


@router.get("/ads/new")
def new_campaign(visitor: UserDep) -> Response:
    """A new campaign's form; with `?copy_of=` (quick copy) filled with that campaign's values."""
    source_id = _copy_source(visitor)
    if source_id is not None:
        source = campaigns.get_campaign(visitor.session, visitor.me, source_id)
        return _campaign_form(visitor, _as_copy(adforms.campaign_values(source)), FormErrors(), copied_from=source)
    return _campaign_form(visitor, {"objective": "performance", "promotion_type": "app_download"}, FormErrors())


@router.post("/ads/new")
def create_campaign(visitor: UserDep, form: FormDep) -> Response:
    session = visitor.session
    try:
        campaign = campaigns.create_campaign(session, visitor.me, CampaignCreate.model_validate(
            adforms.campaign_payload(form)))
        session.commit()
    except ValidationError as exc:
        return _campaign_form(visitor, adforms.form_values(form), FormErrors.from_validation(exc), status=422)
    except DomainError as exc:
        session.rollback()
        return _campaign_form(visitor, adforms.form_values(form), FormErrors.from_domain(exc), status=exc.status)
    return redirect(with_notice(f"{PREFIX}/ads/campaigns/{campaign.id}/ad-groups/new", "created"))


@router.get("/ads/campaigns/{campaign_id}/edit")
def edit_campaign_form(campaign_id: IdPath, visitor: UserDep) -> Response:
    campaign = campaigns.get_campaign(visitor.session, visitor.me, campaign_id)
    return _campaign_form(visitor, adforms.campaign_values(campaign), FormErrors(), campaign_id=campaign_id)


@router.post("/ads/campaigns/{campaign_id}/edit")
def edit_campaign(campaign_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    payload = adforms.campaign_payload(form)
    payload.pop("account_id", None)
    payload.pop("objective", None)  # fixed once created
    session = visitor.session
    try:
        _, notice = campaigns.update_campaign(session, visitor.me, campaign_id, CampaignUpdate.model_validate(payload))
        session.commit()
    except ValidationError as exc:
        return _campaign_form(visitor, adforms.form_values(form), FormErrors.from_validation(exc),
                              campaign_id=campaign_id, status=422)
    except DomainError as exc:
        session.rollback()
        if exc.status == 404:
            raise
        return _campaign_form(visitor, adforms.form_values(form), FormErrors.from_domain(exc),
                              campaign_id=campaign_id, status=exc.status)
    return redirect(with_notice(f"{PREFIX}/ads/campaigns/{campaign_id}",
                                "campaign_back_to_review" if notice else "saved"))


# ---------- step 2: ad group ----------


def _ad_group_context(visitor: Visitor, campaign: Any, values: dict[str, Any]) -> dict[str, Any]:
    session = visitor.session
    placement = values.get("placement_type") or PlacementType.INTERSTITIAL.value
    account = tenancy.get_account(session, visitor.me, campaign.account_id)
    audience_rows, _ = audiences.list_audiences(session, visitor.me, account_id=campaign.account_id, limit=200)
    return {
        "campaign": campaign, "account": account, "values": values, "step": 2,
        "channels": [c.value for c in PromotionChannel],
        "target_groups": allowed_target_groups(campaign.promotion_type),
        "placements": [p.value for p in PlacementType], "pacings": [p.value for p in Pacing],
        "bid_types": sorted(b.value for b in BID_TYPES_BY_OBJECTIVE[MarketingObjective(campaign.objective)]),
        "conversion_events": [e.value for e in ConversionEvent],
        "countries": choices.countries(visitor.language), "time_zones": choices.time_zones(visitor.language),
        "genders": [g.value for g in Gender], "age_ranges": [a.value for a in AgeRange],
        "networks": [n.value for n in Network], "audiences": audience_rows,
        "publishers": inventory.list_publishers(session, status="active", limit=200)[0],
        "spaces": inventory.list_ad_spaces(session, placement_type=placement, status="active", limit=200)[0],
        "estimate": _estimate(visitor, placement, values),
    }


def _estimate(visitor: Visitor, placement: str, values: dict[str, Any]) -> dict[str, Any]:
    """The audience-size estimate for what the form holds now, or the reason it cannot be computed."""
    targeting = {name: values.get(name) or [] for name in (*adforms.TARGETING_CHOICE_LISTS,
                                                            *adforms.TARGETING_ID_LISTS)}
    for name in adforms.TARGETING_TEXT_LISTS:
        raw = values.get(name) or ""
        targeting[name] = adforms.split_list(raw) if isinstance(raw, str) else list(raw)
    for name in ("os_version_min", "os_version_max"):
        if values.get(name):
            targeting[name] = values[name]
    try:
        data = EstimateIn.model_validate({
            "placement_type": placement, "targeting": targeting,
            "publisher_ids": values.get("publisher_ids") or [], "ad_space_ids": values.get("ad_space_ids") or [],
            "frequency_cap_per_day": int(values["frequency_cap_per_day"])
            if str(values.get("frequency_cap_per_day") or "").isdecimal() and 0 < int(values["frequency_cap_per_day"])
            <= 1000 else None,
        })
        result, source = audience_size.estimate(visitor.session, visitor.me, data)
    except ValidationError as exc:
        return {"error": FormErrors.from_validation(exc)}
    except DomainError as exc:
        return {"error": FormErrors.from_domain(exc)}
    return {"result": result, "source": source}


def _ad_group_form(visitor: Visitor, campaign: Any, values: dict[str, Any], errors: FormErrors, *,
                   ad_group_id: int | None = None, status: int = 200, copied_from: Any = None) -> Response:
    context = _ad_group_context(visitor, campaign, values)
    context.update(errors=errors, ad_group_id=ad_group_id, copied_from=copied_from)
    return render(visitor, "ads/ad_group_form.html", context, status=status)


def _ad_group_defaults(campaign: Any, account: Any) -> dict[str, Any]:
    performance = campaign.objective == MarketingObjective.PERFORMANCE
    return {"placement_type": PlacementType.INTERSTITIAL.value, "promotion_channel": PromotionChannel.GETAPPS.value,
            "target_group": TargetGroup.ALL_USERS.value, "time_zone": account.time_zone,
            "pacing": Pacing.EVEN.value, "bid_type": "cpc" if performance else "guaranteed_cpm",
            "schedule_mode": "all_day", "countries": [account.country] if account.country else []}


@router.get("/ads/campaigns/{campaign_id}/ad-groups/new")
def new_ad_group(campaign_id: IdPath, visitor: UserDep) -> Response:
    """A new ad group's form; with `?copy_of=` (quick copy) filled with that ad group's values."""
    campaign = campaigns.get_campaign(visitor.session, visitor.me, campaign_id)
    source_id = _copy_source(visitor)
    if source_id is not None:
        source = campaigns.get_ad_group(visitor.session, visitor.me, source_id)
        values = _as_copy(adforms.ad_group_values(source, visitor.fmt.amount))
        return _ad_group_form(visitor, campaign, values, FormErrors(), copied_from=source)
    account = tenancy.get_account(visitor.session, visitor.me, campaign.account_id)
    return _ad_group_form(visitor, campaign, _ad_group_defaults(campaign, account), FormErrors())


def _schedule_errors(payload: dict[str, Any]) -> FormErrors:
    """The end-after-start rule, checked here too so it shows beside the end even when other fields already
    stopped the request before the service could look at the schedule."""
    errors = FormErrors()
    start, end = payload.get("start_at"), payload.get("end_at")
    try:
        if start and end and datetime.fromisoformat(str(end)) <= datetime.fromisoformat(str(start)):
            errors.add("end_at", "after_start", "the end must be after the start")
    except ValueError:
        pass
    return errors


def _ad_group_refusal(visitor: Visitor, campaign: Any, form: FormData, exc: ValidationError | DomainError, *,
                      ad_group_id: int | None = None, typed: FormErrors | None = None,
                      payload: dict[str, Any] | None = None) -> Response:
    """Every refusal at once: badly typed amounts, the schema's, and the schedule's; the form keeps its values."""
    visitor.session.rollback()
    typed = typed or FormErrors()
    if isinstance(exc, ValidationError):
        errors, status = FormErrors.from_validation(exc), 422
    elif typed and not exc.fields:  # only the typed values stopped it
        errors, status = FormErrors(), 422
    else:
        errors, status = FormErrors.from_domain(exc), exc.status
    if "end_at" not in errors:
        errors = forms.merge(errors, _schedule_errors(payload or {}))
    errors = forms.merge(typed, errors)
    return _ad_group_form(visitor, campaign, adforms.form_values(form), errors, ad_group_id=ad_group_id,
                          status=status)


@router.post("/ads/campaigns/{campaign_id}/ad-groups/new")
def create_ad_group(campaign_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    session = visitor.session
    campaign = campaigns.get_campaign(session, visitor.me, campaign_id)
    with forms.collecting() as typed:
        payload = adforms.ad_group_payload(form)
    try:
        data = AdGroupCreate.model_validate({**payload, "campaign_id": campaign_id})
        if typed:
            raise ValidationFailed("the ad group has invalid fields")
        group = campaigns.create_ad_group(session, visitor.me, data)
        session.commit()
    except (ValidationError, DomainError) as exc:
        return _ad_group_refusal(visitor, campaign, form, exc, typed=typed, payload=payload)
    return redirect(with_notice(f"{PREFIX}/ads/ad-groups/{group.id}/creatives/new", "created"))


@router.get("/ads/ad-groups/{ad_group_id}/edit")
def edit_ad_group_form(ad_group_id: IdPath, visitor: UserDep) -> Response:
    group = campaigns.get_ad_group(visitor.session, visitor.me, ad_group_id)
    campaign = campaigns.get_campaign(visitor.session, visitor.me, group.campaign_id)
    return _ad_group_form(visitor, campaign, adforms.ad_group_values(group, visitor.fmt.amount), FormErrors(),
                          ad_group_id=ad_group_id)


@router.post("/ads/ad-groups/{ad_group_id}/edit")
def edit_ad_group(ad_group_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    session = visitor.session
    group = campaigns.get_ad_group(session, visitor.me, ad_group_id)
    campaign = campaigns.get_campaign(session, visitor.me, group.campaign_id)
    with forms.collecting() as typed:
        payload = adforms.ad_group_edit_payload(form, group)
    try:
        data = AdGroupUpdate.model_validate(payload)
        if typed:
            raise ValidationFailed("the ad group has invalid fields")
        _, notice = campaigns.update_ad_group(session, visitor.me, ad_group_id, data)
        session.commit()
    except (ValidationError, DomainError) as exc:
        if isinstance(exc, DomainError) and exc.status == 404:
            raise
        return _ad_group_refusal(visitor, campaign, form, exc, ad_group_id=ad_group_id, typed=typed,
                                 payload=payload)
    return redirect(with_notice(f"{PREFIX}/ads/ad-groups/{ad_group_id}",
                                "ad_group_back_to_review" if notice else "saved"))


@router.post("/ads/estimate")
def live_estimate(visitor: UserDep, form: FormDep) -> Response:
    """Re-sized on every change of the targeting (HTMX)."""
    values = adforms.form_values(form)
    placement = forms.text(form, "placement_type") or PlacementType.INTERSTITIAL.value
    return render(visitor, "ads/_estimate.html", {"estimate": _estimate(visitor, placement, values)})


@router.get("/ads/ad-spaces")
def ad_space_choices(visitor: UserDep, placement_type: str = PlacementType.INTERSTITIAL.value) -> Response:
    """The catalogue's ad spaces for a placement type (HTMX swaps them in when the placement changes)."""
    placement = placement_type if placement_type in {p.value for p in PlacementType} else None
    spaces = inventory.list_ad_spaces(visitor.session, placement_type=placement, status="active", limit=200)[0]
    return render(visitor, "ads/_ad_spaces.html", {"spaces": spaces, "values": {}})


# ---------- step 3: creative ----------


def _assets(visitor: Visitor, account_id: int, values: dict[str, Any]) -> dict[int, MediaAsset]:
    wanted = {*values.get("images", []), *values.get("videos", []), *values.get("cover_image", []),
              *values.get("icon", [])}
    return media.assets_of_account(visitor.session, account_id, {int(i) for i in wanted})


def _creative_form(visitor: Visitor, group: Any, values: dict[str, Any], errors: FormErrors, *,
                   creative_id: int | None = None, status: int = 200, copied_from: Any = None) -> Response:
    specs = creative_formats.specs_for_placement(visitor.session, group.placement_type)
    code = values.get("format") or (specs[0].code if specs else "")
    spec = creative_formats.get_spec(visitor.session, code)
    return render(visitor, "ads/creative_form.html", {
        "group": group, "values": {**values, "format": code}, "errors": errors, "creative_id": creative_id,
        "copied_from": copied_from,
        "specs": specs, "spec": spec, "assets": _assets(visitor, group.account_id, values), "step": 3,
        "text_slots": adforms.TEXT_SLOTS, "tracking_events": adforms.TRACKING_EVENTS,
        "preview": _preview(visitor, group.account_id, code, values),
    }, status=status)


def _preview(visitor: Visitor, account_id: int, code: str, values: dict[str, Any]) -> dict[str, Any]:
    """The creative as its format shows it, with the rules its materials break listed above it."""
    payload = {
        "account_id": account_id, "format": code, "click_url": values.get("click_url") or None,
        "materials": {
            **{name: [t for t in values.get(name, []) if t]
               for name in ("titles", "subtitles", "descriptions", "button_texts")},
            "images": values.get("images", []), "videos": values.get("videos", []),
            **{name: (values.get(name) or [None])[0] for name in SINGLE_UPLOADS},
            **{name: values.get(name) or None for name in adforms.SINGLE_MATERIAL_TEXTS},
            "top_button": bool(values.get("top_button")) or None,
        },
    }
    try:
        data = PreviewIn.model_validate(payload)
        return {"html": creatives.preview_materials(visitor.session, visitor.me, data)}
    except ValidationError as exc:
        return {"error": FormErrors.from_validation(exc)}
    except DomainError as exc:
        return {"error": FormErrors.from_domain(exc)}


@router.get("/ads/ad-groups/{ad_group_id}/creatives/new")
def new_creative(ad_group_id: IdPath, visitor: UserDep) -> Response:
    """A new creative's form; with `?copy_of=` (quick copy) filled with that creative's values."""
    group = campaigns.get_ad_group(visitor.session, visitor.me, ad_group_id)
    source_id = _copy_source(visitor)
    if source_id is not None:
        source = creatives.get_creative(visitor.session, visitor.me, source_id)
        return _creative_form(visitor, group, _as_copy(adforms.creative_values(source)), FormErrors(),
                              copied_from=source)
    return _creative_form(visitor, group, {}, FormErrors())


@router.post("/ads/ad-groups/{ad_group_id}/creatives/new")
def create_creative(ad_group_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    session = visitor.session
    group = campaigns.get_ad_group(session, visitor.me, ad_group_id)
    try:
        creative = creatives.create_creative(session, visitor.me, CreativeCreate.model_validate(
            {**adforms.creative_payload(form), "ad_group_id": ad_group_id}))
        session.commit()
    except (ValidationError, DomainError) as exc:
        session.rollback()
        errors = FormErrors.from_validation(exc) if isinstance(exc, ValidationError) else FormErrors.from_domain(exc)
        return _creative_form(visitor, group, adforms.form_values(form), errors,
                              status=422 if isinstance(exc, ValidationError) else exc.status)
    return redirect(with_notice(f"{PREFIX}/ads/ad-groups/{ad_group_id}?creative={creative.id}", "created"))


@router.get("/ads/creatives/{creative_id}/edit")
def edit_creative_form(creative_id: IdPath, visitor: UserDep) -> Response:
    creative = creatives.get_creative(visitor.session, visitor.me, creative_id)
    group = campaigns.get_ad_group(visitor.session, visitor.me, creative.ad_group_id)
    return _creative_form(visitor, group, adforms.creative_values(creative), FormErrors(), creative_id=creative_id)


@router.post("/ads/creatives/{creative_id}/edit")
def edit_creative(creative_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    session = visitor.session
    creative = creatives.get_creative(session, visitor.me, creative_id)
    group = campaigns.get_ad_group(session, visitor.me, creative.ad_group_id)
    try:
        _, notice = creatives.update_creative(session, visitor.me, creative_id, CreativeUpdate.model_validate(
            adforms.creative_payload(form)))
        session.commit()
    except (ValidationError, DomainError) as exc:
        session.rollback()
        if isinstance(exc, DomainError) and exc.status == 404:
            raise
        errors = FormErrors.from_validation(exc) if isinstance(exc, ValidationError) else FormErrors.from_domain(exc)
        return _creative_form(visitor, group, adforms.form_values(form), errors, creative_id=creative_id,
                              status=422 if isinstance(exc, ValidationError) else exc.status)
    return redirect(with_notice(f"{PREFIX}/ads/creatives/{creative_id}",
                                "creative_back_to_review" if notice else "saved"))


@router.post("/ads/ad-groups/{ad_group_id}/creatives/form")
def creative_form_for_format(ad_group_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """The creative form again with another format's materials, keeping what was typed (nothing is saved)."""
    group = campaigns.get_ad_group(visitor.session, visitor.me, ad_group_id)
    creative_id = forms.integer(form, "creative_id", minimum=1)
    if creative_id is not None:
        creatives.get_creative(visitor.session, visitor.me, creative_id)
    return _creative_form(visitor, group, adforms.form_values(form), FormErrors(), creative_id=creative_id)


@router.post("/ads/ad-groups/{ad_group_id}/preview")
def live_preview(ad_group_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    group = campaigns.get_ad_group(visitor.session, visitor.me, ad_group_id)
    values = adforms.form_values(form)
    code = forms.text(form, "format")
    return render(visitor, "ads/_preview.html", {"preview": _preview(visitor, group.account_id, code, values)})


@router.post("/ads/ad-groups/{ad_group_id}/media")
def upload_material(ad_group_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """Store the chosen files as the account's media and check each against the format's rule for that
    material at once, so a wrong size or weight shows before the creative is saved."""
    session = visitor.session
    group = campaigns.get_ad_group(session, visitor.me, ad_group_id)
    field = forms.text(form, "field")
    if field not in UPLOAD_FIELDS:
        raise ValidationFailed.single("field", "enum", "unknown material", limit=sorted(UPLOAD_FIELDS), actual=field)
    spec = creative_formats.get_spec(session, forms.text(form, "format"))
    kept = [int(v) for v in form.getlist(field) if isinstance(v, str) and v.isdecimal() and len(v) < 19]
    results: list[dict[str, Any]] = []
    for upload in forms.uploads(form, f"upload_{field}")[:20]:
        try:
            asset = media.upload(session, visitor.me, stream=upload.file, filename=upload.filename or "upload",
                                 media_dir=visitor.settings.media_dir, max_bytes=visitor.settings.max_upload_bytes,
                                 account_id=group.account_id, kind=UPLOAD_FIELDS[field])
            session.commit()
        except DomainError as exc:
            session.rollback()
            results.append({"filename": upload.filename, "asset": None, "errors": _named(exc.fields, exc)})
            continue
        problems = _material_problems(visitor, group.account_id, spec, field, asset)
        results.append({"filename": upload.filename, "asset": asset, "errors": problems})
        if not problems:
            kept.append(asset.id)
    if field in SINGLE_UPLOADS:
        kept = kept[-1:]
    assets = media.assets_of_account(session, group.account_id, set(kept))
    return render(visitor, "ads/_materials.html", {
        "field": field, "kept": [i for i in dict.fromkeys(kept) if i in assets], "assets": assets,
        "results": results,
    }, headers={"HX-Trigger": "materials-changed"})


def _named(fields: list[FieldError], exc: DomainError) -> list[dict[str, Any]]:
    if not fields:
        return [{"field": "file", "rule": exc.code, "message": exc.message, "limit": None, "actual": None}]
    return [{"field": f.field, "rule": f.rule, "message": f.message or exc.message, "limit": f.limit,
             "actual": f.actual} for f in fields]


def _material_problems(visitor: Visitor, account_id: int, spec: formats.FormatSpec | None, field: str,
                       asset: MediaAsset) -> list[dict[str, Any]]:
    """The format's rules for this one file: the same validator the creative is saved with."""
    if spec is None:
        return []
    materials = Materials(**{field: asset.id if field in SINGLE_UPLOADS else [asset.id]})
    problems = creatives.material_errors(visitor.session, account_id, spec, materials)
    prefix = f"materials.{field}"
    relevant = [p for p in problems if p.field.startswith(prefix) and p.rule not in ("min_count", "required")]
    return [{"field": p.field, "rule": p.rule, "message": p.message, "limit": p.limit, "actual": p.actual}
            for p in relevant]
