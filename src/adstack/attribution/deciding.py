"""Deciding a batch's postbacks in memory (batch.py), in receipt order: each one attributed against the view,
recorded there for the next, and its CPA charge queued and applied."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from adstack.apps.partners import SPECS
from adstack.attribution.adapters import ADAPTERS
from adstack.attribution.models import UNSIGNED_KEY_PREFIX, UNSIGNED_NOT_CHARGED, PostbackStatus
from adstack.attribution.postback_fields import PartnerVerdict, same_revenue
from adstack.attribution.rules import (
    CLICK_SPAM_WINDOW,
    DEVICE_FLAGS,
    AttributionType,
    Authority,
    Decision,
    FraudFlag,
    MatchType,
    Touch,
    TouchKind,
    Windows,
    attribute_event,
    attribute_install,
    follow_partner,
    own_verdict,
    within,
)
from adstack.attribution.service import convert, micros
from adstack.attribution.view import (
    _IN_BATCH,
    _INSTALL,
    _NO_DEVICE,
    AppInfo,
    DeviceKey,
    Item,
    Known,
    View,
    _latest,
    charged_touch,
)
from adstack.core.errors import DomainError
from adstack.core.vocabulary import ConversionEvent, Partner
from adstack.finance.charges import ChargeRequest, apply_charges

log = logging.getLogger("adstack.attribution")

DEVICE_TOUCH_LIMIT = 100
PARTNER_MISMATCH_NOT_CHARGED = "partner_mismatch_not_charged"
WITHOUT_VERDICT = frozenset(spec.partner.value for spec in SPECS.values() if not spec.sends_verdict)
_BY_PARTNER, _BY_ADSTACK = Authority.PARTNER.value, Authority.ADSTACK.value


# ---------- deciding, in memory ----------


def _device_touches(view: View, app: AppInfo, device: DeviceKey, until: datetime, windows: Windows) -> list[Touch]:
    """The device's clicks (and impressions, when view-through is on) on this app's ads that may count for a
    conversion at `until`, newest first."""
    click_from = until - max(windows.click_lookback, CLICK_SPAM_WINDOW)
    view_from = until - windows.view_through if windows.view_through is not None else None
    found: list[Touch] = []
    for touch, package in view.device_touches.get(device, ()):
        at = touch.occurred_at
        if at > until or touch.account_id != app.account_id or package != app.package_name:
            continue
        if at >= click_from if touch.kind is TouchKind.CLICK else view_from is not None and at >= view_from:
            found.append(touch)
            if len(found) == DEVICE_TOUCH_LIMIT:
                break
    return found


def _click_touch(view: View, app: AppInfo, click_id: str) -> Touch | None:
    return _of_app(view.click_touches.get(click_id), app)


def _impression_touch(view: View, app: AppInfo, click_id: str) -> Touch | None:
    """The impression whose links carried this click id: our partner view-through link, fired on every
    impression, carries the click id a later click would carry, and the partner returns it for a view-through."""
    return _of_app(view.impression_touches.get(click_id), app)


def _of_app(found: tuple[Touch, str] | None, app: AppInfo) -> Touch | None:
    if found is None or found[0].account_id != app.account_id or found[1] != app.package_name:
        return None  # a touch on another advertiser's or another app's ad does not credit this app
    return found[0]


def _same_conversion(view: View, item: Item) -> Known | None:
    """A conversion recorded from a postback with the same identifying fields (event, click id, device, partner
    time as sent, revenue): the partner's retry of it under another dedupe key, e.g. without its event id. The time
    as sent, not the conversion's: a time too far ahead is replaced by each copy's own receipt. Two postbacks
    that both carry a partner event id, different ones, or both revenue, different amounts, are two conversions."""
    app, parsed, event = item.app, item.parsed, item.event
    assert app is not None and parsed is not None and event is not None
    candidates = view.same.get((app.id, app.account_id, event.value, parsed.event_name[:100], parsed.click_id,
                                parsed.occurred_at, item.device))
    if not candidates:
        return None
    mine = parsed.dedupe_key
    # Those that bear on this postback first, then the 20 earliest: unsigned ones must not crowd out a signed one.
    bearing = [k for k in sorted(candidates, key=lambda k: k.seq) if k.postback_id != item.id and _counts_for(item, k)]
    for known in bearing[:20]:
        theirs = known.dedupe_key.removeprefix(UNSIGNED_KEY_PREFIX)
        if ":id:" in mine and ":id:" in theirs and theirs != mine:
            continue
        if not same_revenue(parsed.revenue, parsed.currency, known.revenue, known.currency):
            continue
        adapter = ADAPTERS.get(Partner(item.partner))
        if parsed.event_params and adapter is not None \
                and adapter.event_params(known.fields or {}) != parsed.event_params:
            continue
        return known
    return None


def _counts_for(item: Item, known: Known) -> bool:
    """Whether a recorded conversion bears on this postback: an unsigned one never bears on a signed one."""
    return known.signed or not item.signed


def _device_keys(item: Item) -> tuple[DeviceKey, ...]:
    """Every form of the postback's device (raw GAID, MD5, SHA1) a stored conversion of it may be known by."""
    if item.gaid is None:
        return ()
    return item.keys or (item.device,)


def _installs_by_click(view: View, item: Item, impression: Touch | None) -> list[Known]:
    """The installs known by the postback's click id: those that named it, those attributed to its click, and
    those attributed to the impression whose links carried it."""
    if not item.click_id:
        return []
    found = list(view.installs_by_click.get((item.app_id, item.click_id), ()))
    if impression is not None:
        found.extend(k for k in view.installs_by_impression.get((item.app_id, impression.touch_id), ())
                     if k not in found)
    return found


def _install_for_event(view: View, item: Item, at: datetime, impression: Touch | None) -> Known | None:
    if item.gaid is not None:
        found = _latest(k for key in _device_keys(item) for k in view.installs_by_device.get((item.app_id, key), ())
                        if k.occurred_at <= at and _counts_for(item, k))
        if found is not None:
            return found
    if item.click_id:
        return _latest(k for k in _installs_by_click(view, item, impression) if _counts_for(item, k))
    return None


def _device_flags(view: View, item: Item, impression: Touch | None) -> tuple[FraudFlag, ...]:
    """Fraud flags any install of this device (or of this click) carries: the flag travels with the device."""
    installs: list[Known] = []
    for key in _device_keys(item):
        installs.extend(view.installs_by_device.get((item.app_id, key), ()))
    installs.extend(_installs_by_click(view, item, impression))
    installs = [k for k in installs if _counts_for(item, k)]
    if not any(k.fraud_flags for k in installs):  # the usual case
        return ()
    rows = {k.seq: k for k in installs}
    found: dict[FraudFlag, None] = {}
    for seq in sorted(rows):
        for flag in rows[seq].fraud_flags or ():
            if flag in DEVICE_FLAGS:
                found[FraudFlag(flag)] = None
    return tuple(found)


def _charged_before(view: View, item: Item, click_id: str, impression_id: str, at: datetime,
                    window: timedelta) -> list[Known]:
    """Conversions charged for this click id or impression and event (named by their postback or attributed to
    it), or for this device (in any of its forms) and app within the re-attribution window, whatever postback they
    came in (their charge may still be pending)."""
    event = item.event
    assert event is not None
    found: dict[int, Known] = {}
    if click_id:
        found.update((k.seq, k) for k in view.charged_by_click.get((item.app_id, event.value, click_id), ()))
    if impression_id:
        found.update((k.seq, k) for k in view.charged_by_impression.get((item.app_id, event.value, impression_id),
                                                                        ()))
    earliest, latest = at - window, at + window
    for key in _device_keys(item):
        found.update((k.seq, k) for k in view.charged_by_device.get((item.app_id, event.value, key), ())
                     if earliest <= k.occurred_at <= latest)
    return [k for k in found.values() if k.charged is None or k.charged > 0]


def charge_anchor(click_id: str, device: DeviceKey, postback_id: int, impression_id: str = "") -> str:
    """What a CPA charge is charged once for: the click it was attributed to, else the impression of a
    view-through, else the device (its MD5 or SHA1 form), else the postback."""
    if click_id:
        return f"c{click_id}"
    if impression_id:
        return f"v{impression_id}"
    if device != _NO_DEVICE:
        return f"d{device[1]}"
    return f"pb{postback_id}"


def cpa_charge_id(ad_group_id: int, anchor: str, event: ConversionEvent) -> str:
    return f"cpa:{ad_group_id}:{anchor}:{event.value}"[:120]


REVENUE_WITHOUT_RATE = "revenue_without_fx_rate"
NEGATIVE_REVENUE = "negative_revenue"


def is_refund(event: ConversionEvent | str, data_flags: Sequence[str]) -> bool:
    """An in-app event sent with negative revenue takes revenue back: it is no new conversion. An install stays one
    whatever its revenue."""
    return NEGATIVE_REVENUE in data_flags and event != ConversionEvent.INSTALL
# The cap of a conversion's revenue as sent (postback_fields.MAX_REVENUE, 10^9 units) in micros, held again after
# conversion to the account currency and USD, so the reports' 64-bit sums cannot wrap.
MAX_REVENUE_MICROS = 10**15


def _decide(session: Session, view: View, item: Item, position: int) -> None:
    """Attribute one postback against the view, record its conversion there and queue its CPA charge."""
    app, parsed, event, occurred_at = item.app, item.parsed, item.event, item.occurred_at
    assert app is not None and parsed is not None and event is not None and occurred_at is not None
    data_flags = [f"unreadable:{name}:{rule}" for name, rule in parsed.unreadable.items()]
    data_flags.extend(parsed.notes)
    if item.clamped:
        data_flags.append("future_time_clamped")
    windows = app.windows
    if parsed.occurred_at is not None:
        same = _same_conversion(view, item)
        if same is not None:
            item.finish(PostbackStatus.DUPLICATE,
                        f"the conversion of postback {same.postback_id}, retried under another key")
            return

    forged, gaid, click_id = item.forged, item.gaid, item.click_id
    # No install follows its own postback: a partner time ahead of the receipt (within the skew tolerance) would
    # stretch click-to-install past the click-injection threshold, so the install is judged at the receipt.
    judged_at = min(occurred_at, item.received_at) if event is ConversionEvent.INSTALL else occurred_at
    touch_by_click = _click_touch(view, app, click_id) if click_id else None
    seen_by_click = _impression_touch(view, app, click_id) if click_id else None
    named_touch = touch_by_click
    install: Known | None = None
    touches: list[Touch] = []
    if event is ConversionEvent.INSTALL:
        # The device's earlier install, or one on the same click id (or its impression): one click installs an
        # app once, and a postback without the GAID is known by the click alone.
        earlier = [*(k for key in _device_keys(item) for k in view.installs_by_device.get((app.id, key), ())),
                   *_installs_by_click(view, item, seen_by_click)]
        prior = _latest(k for k in earlier if k.occurred_at <= occurred_at and not k.is_reinstall
                        and _counts_for(item, k))
        touches = _device_touches(view, app, item.device, occurred_at, windows) if gaid is not None else []
        # The impression the click id came from counts as a view-through, within the view-through window (none
        # when the app turned view-through off); a click of that id before the install beats it.
        viewed = seen_by_click if seen_by_click is not None and within(
            seen_by_click.occurred_at, judged_at, windows.view_through) else None
        if viewed is not None and (touch_by_click is None or touch_by_click.occurred_at > judged_at):
            named_touch = viewed
        own: Decision = attribute_install(
            installed_at=judged_at, windows=windows, touch_by_click_id=touch_by_click,
            impression_by_click_id=viewed, device_clicks=[t for t in touches if t.kind is TouchKind.CLICK],
            device_impressions=[t for t in touches if t.kind is TouchKind.IMPRESSION],
            prior_install=prior.prior() if prior is not None else None, forged_click_id=forged)
    else:
        install = _install_for_event(view, item, occurred_at, seen_by_click)
        own = attribute_event(occurred_at=occurred_at, windows=windows,
                              install=install.prior() if install is not None else None,
                              touch_by_click_id=touch_by_click, forged_click_id=forged)

    decision = own
    partner_says = parsed.verdict.value if parsed.verdict is not None else ""
    follows_partner = bool(partner_says) and app.attribution_authority != _BY_ADSTACK
    if follows_partner:
        if not touches and gaid is not None and parsed.verdict is PartnerVerdict.ATTRIBUTED and not own.attributed:
            touches = _device_touches(view, app, item.device, occurred_at, windows)
        decision = follow_partner(verdict=partner_says, own=own, occurred_at=judged_at,
                                  is_install=event is ConversionEvent.INSTALL, touch_by_click_id=named_touch,
                                  device_touches=touches, partner_touch_type=parsed.touch_type)
    elif item.partner in WITHOUT_VERDICT and app.attribution_authority != _BY_ADSTACK \
            and event is ConversionEvent.INSTALL and own.attributed and own.match_type is not MatchType.CLICK_ID:
        # No verdict field, and the partner did not return our click id, which it fills only for an install it
        # credits to our click: a feed of all users (as the guide sets Tenjin up) also holds installs it gave to
        # other networks, and a device match of ours says nothing of which. Not ours, and never billed.
        decision = Decision(AttributionType.OTHER, MatchType.NONE, None, reinstall=own.reinstall,
                            fraud_flags=own.fraud_flags)
        data_flags.append("device_match_without_partner_credit")
    if event is ConversionEvent.INSTALL and parsed.reattribution and not decision.reinstall:
        # The partner calls it a re-attribution or reinstall (AppsFlyer re-attribution, Adjust reattribution, ...):
        # an app already installed once, so not a new install to charge, whatever we know of the first one.
        decision = Decision(decision.attribution_type, decision.match_type, decision.touch,
                            decision.click_to_install, True, decision.fraud_flags)
        data_flags.append("partner_reattribution")
    if event is not ConversionEvent.INSTALL:
        inherited = _device_flags(view, item, seen_by_click)
        if inherited:
            decision = Decision(decision.attribution_type, decision.match_type, decision.touch,
                                decision.click_to_install, decision.reinstall,
                                tuple(dict.fromkeys((*decision.fraud_flags, *inherited))))
    if (item.clamped or judged_at < occurred_at) and decision.click_to_install is not None:
        # Measured to the receipt, which no install can follow: an upper bound of the real time.
        data_flags.append("click_to_install_to_receipt")
    ours = own_verdict(own)
    disagree = None if not partner_says else (partner_says == PartnerVerdict.ATTRIBUTED.value) != (
        ours == "attributed")

    currency = view.currencies.get(app.account_id, "USD")
    revenue_micros = revenue_usd_micros = 0
    detail = "; ".join(data_flags)
    # A refund or a cancellation: partners take revenue of either sign (AppsFlyer's af_revenue, "any numeric
    # value, positive or negative"). Decided on the sign as sent, whatever rounding or a missing FX rate makes of the
    # amount, so billing and the reports' `refunds` agree; only an in-app event is one (an install stays one).
    if parsed.revenue is not None and parsed.revenue < 0:
        data_flags.append(NEGATIVE_REVENUE)
        detail = "; ".join(data_flags)
    refund = is_refund(event, data_flags)
    if parsed.revenue is not None:
        in_account = convert(parsed.revenue, parsed.currency, currency, view.rates) if parsed.currency else None
        in_usd = in_account if currency == "USD" else \
            convert(parsed.revenue, parsed.currency, "USD", view.rates) if parsed.currency else None
        if in_account is None or in_usd is None:
            # Kept as sent on the conversion, but no money in reports (0 in the account currency and in USD).
            data_flags.append(REVENUE_WITHOUT_RATE)
            detail = "; ".join([*data_flags, f"no FX rate for {parsed.currency or 'an unreadable currency'}; "
                                             "revenue kept as sent"])
        else:
            revenue_micros = micros(in_account)
            revenue_usd_micros = revenue_micros if in_usd is in_account else micros(in_usd)
            if max(abs(revenue_micros), abs(revenue_usd_micros)) > MAX_REVENUE_MICROS:
                # Within the cap as sent, past it once converted (a strong currency into a weak one).
                revenue_micros = revenue_usd_micros = 0
                data_flags.append("revenue_out_of_range")
                detail = "; ".join(data_flags)

    touch = decision.touch
    fraud = [f.value for f in decision.fraud_flags]
    if touch is not None:
        touch_kind, touch_id, touch_at = touch.kind.value, touch.touch_id, touch.occurred_at
        campaign_id, ad_group_id, creative_id = touch.campaign_id, touch.ad_group_id, touch.creative_id
        ad_space_id, publisher_id = touch.ad_space_id, touch.publisher_id
    else:
        touch_kind, touch_id, touch_at = "", "", None
        campaign_id = ad_group_id = creative_id = ad_space_id = publisher_id = 0
    event_name = event.value
    attribution_type, match_type = decision.attribution_type.value, decision.match_type.value
    row: dict[str, Any] = {
        "postback_id": item.id, "app_id": app.id, "account_id": app.account_id, "partner": item.partner,
        "conversion_event": event_name, "source_event_name": parsed.event_name[:100],
        "attribution_type": attribution_type, "match_type": match_type,
        "partner_attributed": parsed.partner_attributed, "partner_verdict": partner_says, "own_verdict": ours,
        "verdict_source": _BY_PARTNER if follows_partner else _BY_ADSTACK,
        "verdict_reason": parsed.verdict_reason[:200], "verdicts_disagree": disagree,
        "is_reinstall": decision.reinstall, "install_conversion_id": install.id if install is not None else None,
        "touch_kind": touch_kind, "touch_id": touch_id, "touch_at": touch_at, "campaign_id": campaign_id,
        "ad_group_id": ad_group_id, "creative_id": creative_id, "ad_space_id": ad_space_id,
        "publisher_id": publisher_id,
        "click_id": click_id, "gaid_md5": item.md5, "gaid_sha1": item.sha1,
        "click_to_install_seconds": int(decision.click_to_install.total_seconds())
        if decision.click_to_install is not None else None,
        "fraud_flags": fraud, "data_flags": data_flags,
        "revenue": "" if parsed.revenue is None else format(parsed.revenue, "f")[:40],
        "currency": parsed.currency[:3], "revenue_micros": revenue_micros, "revenue_usd_micros": revenue_usd_micros,
        "charged_micros": 0, "occurred_at": occurred_at, "partner_time": parsed.occurred_at if item.clamped else None,
        "received_at": item.received_at,
    }
    known = Known(seq=_IN_BATCH + position, postback_id=item.id, app_id=app.id, conversion_event=event_name,
                  occurred_at=occurred_at, click_id=click_id, attribution_type=attribution_type,
                  match_type=match_type, is_reinstall=decision.reinstall, touch_kind=touch_kind, touch_id=touch_id,
                  touch_at=touch_at, account_id=app.account_id, campaign_id=campaign_id, ad_group_id=ad_group_id,
                  creative_id=creative_id, ad_space_id=ad_space_id, publisher_id=publisher_id, fraud_flags=fraud,
                  dedupe_key=item.dedupe_key, fields=item.fields, touch=touch, signed=item.signed,
                  revenue=row["revenue"], currency=row["currency"])
    item.row, item.known, item.install, item.touch = row, known, install, touch

    billable = decision.attributed and not decision.reinstall and not decision.fraud_flags and touch is not None
    if not item.signed:
        # Anyone who saw a click id can send the guide's bare URL; only the app's signed URL bills. Flagged
        # whether or not it would have billed, so an unsigned conversion can always be told apart.
        billable = False
        data_flags.append(UNSIGNED_NOT_CHARGED)
        detail = "; ".join([*([detail] if detail else []), "not charged: the postback did not come to the app's "
                            "signed postback URL (`app` and `sig`)"])
    if app.partner and item.partner != app.partner:
        # The signature names the app, not the partner: a postback read by another partner's rules (whose verdict
        # fields suit the sender, or the app's former partner) is kept and reported, never billed.
        billable = False
        data_flags.append(PARTNER_MISMATCH_NOT_CHARGED)
        detail = "; ".join([*([detail] if detail else []), f"not charged: the app measures with {app.partner}, "
                            f"not {item.partner}"])
    if billable and refund:
        # A refund or a cancellation takes revenue back; it is no new conversion to pay for.
        billable = False
        detail = "; ".join([*([detail] if detail else []), "not charged: negative revenue (a refund)"])
    if billable:
        assert touch is not None
        # Charged once per click it was attributed to, whichever postback names it or matches its device; an event
        # after a known install is charged under the install's touch.
        charge_click, impression = charged_touch(install.touch_kind, install.touch_id, install.click_id) \
            if event is not ConversionEvent.INSTALL and install is not None \
            else charged_touch(touch.kind.value, touch.touch_id, click_id)
        before = _charged_before(view, item, charge_click, impression, occurred_at, windows.reattribution)
        if any(k.charged is None for k in before):
            apply_pending(session, view)  # its outcome decides this one, as if charged one by one
            before = [k for k in before if k.charged]
        if before:
            detail = "; ".join([*([detail] if detail else []), "already charged for this click or device"])
        else:
            _request_charge(view, item, known, touch, event,
                            charge_anchor(charge_click, item.device, item.id, impression))
    item.detail = detail
    _remember(view, item, known)


def _remember(view: View, item: Item, known: Known) -> None:
    """What later postbacks of the batch read, as the database would show them this conversion."""
    sent_at = item.parsed.occurred_at if item.parsed is not None else None
    same_key = (known.app_id, known.account_id, known.conversion_event, item.row["source_event_name"]
                if item.row else "", known.click_id, sent_at or known.occurred_at)
    for key in item.keys or (_NO_DEVICE,):
        view.same[(*same_key, key)].append(known)
    if known.conversion_event == _INSTALL:
        view.add_install(known, item.keys)
    if known.charged is None:
        view.add_charged(known, item.keys)


def _request_charge(view: View, item: Item, known: Known, touch: Touch, event: ConversionEvent,
                    anchor: str) -> None:
    """Queue the ad group's CPA bid once per install lifetime and event, when this is its chosen event."""
    group = view.ad_groups.get(touch.ad_group_id)
    if group is None or group.bid_type != "cpa" or group.conversion_event != event.value:
        return
    if group.bid_micros <= 0 or group.account_id != known.account_id or known.account_id not in view.currencies:
        # apply_charges would refuse the whole batch for it
        log.warning("CPA charge for conversion of postback %s refused: ad group %s cannot charge account %s "
                    "%s micros", item.id, group.id, known.account_id, group.bid_micros)
        return
    item.charge_id = cpa_charge_id(group.id, anchor, event)
    known.charged = None
    view.pending_charges.append((item, ChargeRequest(
        item.charge_id, known.account_id, touch.campaign_id, group.id, touch.creative_id, group.bid_micros, "cpa",
        item.received_at)))  # charged on the day it is received


def apply_pending(session: Session, view: View) -> None:
    """Apply the queued CPA charges, in order, in one `apply_charges`; only the amounts are read back, so the
    ledger entries are written without returning their ids."""
    queued, view.pending_charges = view.pending_charges, []
    if not queued:
        return
    requests = [request for _, request in queued]
    try:
        with session.begin_nested():
            charged = [r.charged_micros if r.applied else 0 for r in apply_charges(
                session, requests, with_entry_ids=False)]
    except DomainError:  # one charge it refuses must not refuse the others: charge them one by one
        charged = []
        for item, request in queued:
            try:
                with session.begin_nested():
                    result = apply_charges(session, [request], with_entry_ids=False)[0]
                charged.append(result.charged_micros if result.applied else 0)
            except DomainError as exc:
                log.warning("CPA charge for conversion of postback %s refused: %s", item.id, exc.message)
                charged.append(0)
    for (item, _), amount in zip(queued, charged, strict=True):
        assert item.known is not None and item.row is not None
        item.known.charged = amount
        item.row["charged_micros"] = amount
