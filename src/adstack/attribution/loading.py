"""Reading a batch's world (batch.py): each postback parsed, then one read each for the apps, their event
mappings and accounts, the click and device touches, the earlier installs and charges, the conversions a retry
may repeat and the ad groups the touches name."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, or_, select, union_all
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.apps.mapping import MappingRule, resolve_event
from adstack.apps.models import App, EventMapping
from adstack.apps.service import verify_postback_signature
from adstack.attribution.adapters import ADAPTERS, read_postback
from adstack.attribution.models import (
    UNSIGNED_KEY_PREFIX,
    UNSIGNED_NOT_CHARGED,
    Conversion,
    Postback,
    PostbackStatus,
    Touchpoint,
)
from adstack.attribution.postback_fields import PostbackError
from adstack.attribution.rules import CLICK_SPAM_WINDOW, Touch, TouchKind, bounded_time
from adstack.attribution.view import _NO_DEVICE, AppInfo, Item, Known, View, _Group, _row_keys
from adstack.core.vocabulary import ConversionEvent, Partner
from adstack.finance import service as finance
from adstack.tracking.tokens import TokenError, verify_click_id

# ---------- reading the batch's world ----------


def _load_apps(session: Session, view: View, app_ids: set[int]) -> None:
    found = {a.id: a for a in session.scalars(select(App).where(App.id.in_(app_ids)))}
    view.apps = {i: AppInfo.of(a) for i, a in found.items() if a.deleted_at is None}
    for m in session.scalars(select(EventMapping).where(EventMapping.app_id.in_(found))
                             .order_by(EventMapping.app_id, EventMapping.position, EventMapping.id)):
        view.rules.setdefault(m.app_id, []).append(MappingRule(m.source_name, ConversionEvent(m.event),
                                                               tuple(m.conditions or ())))
    account_ids = {a.account_id for a in view.apps.values()}
    if account_ids:
        view.currencies = {account_id: currency for account_id, currency in session.execute(
            select(Account.id, Account.currency).where(Account.id.in_(account_ids)))}


def drop_unsigned_copies(session: Session, items: list[Item]) -> None:
    """An unsigned postback whose signed copy (the same dedupe key, for the same app) is stored is that copy's
    duplicate: the signed one is attributed, and charged where it should be."""
    unsigned = [i for i in items
                if i.dedupe_key.startswith(UNSIGNED_KEY_PREFIX) and i.status is PostbackStatus.ATTRIBUTED]
    if not unsigned:
        return
    p = _POSTBACKS.c
    wanted = {(i.app_id, i.dedupe_key[len(UNSIGNED_KEY_PREFIX):]) for i in unsigned}
    found = {(row.app_id, row.dedupe_key): row.id for row in session.execute(
        select(p.id, p.app_id, p.dedupe_key).where(p.app_id.in_({app for app, _ in wanted}),
                                                   p.dedupe_key.in_({key for _, key in wanted})))}
    for item in unsigned:
        signed = found.get((item.app_id, item.dedupe_key[len(UNSIGNED_KEY_PREFIX):]))
        if signed is not None:
            item.finish(PostbackStatus.DUPLICATE, f"the unsigned copy of postback {signed}, which is attributed")
            item.event = None


def _prepare(view: View, item: Item) -> None:
    """Parse one postback and name its event, device and click id; no database."""
    app = view.apps.get(item.app_id)
    if app is None:
        item.finish(PostbackStatus.FAILED, f"app {item.app_id} does not exist")
        return
    item.app = app
    signature = item.fields.get("sig")
    item.signed = isinstance(signature, str) and str(item.fields.get("app", "")) == str(item.app_id) \
        and verify_postback_signature(view.secret, item.app_id, signature)
    try:
        parsed = read_postback(_PARTNERS.get(item.partner) or Partner(item.partner), item.fields, app.networks,
                               item.stored_parse)
    except PostbackError as exc:  # stored before a parser change; keep it, do not count it
        item.finish(PostbackStatus.FAILED, exc.message)
        return
    item.parsed = parsed
    if parsed.is_install:
        item.event = ConversionEvent.INSTALL
    else:
        rules = view.rules.get(app.id, [])
        # Only an app whose event mapping has conditions reads the postback's parameters.
        params = ADAPTERS[parsed.partner].params(item.fields) if any(rule.conditions for rule in rules) else {}
        item.event = resolve_event(parsed.event_name, params, rules)
    if item.event is None:
        item.finish(PostbackStatus.UNMAPPED,
                    f"event {parsed.event_name!r} is not mapped, or its conditions do not hold")
        return
    item.occurred_at, item.clamped = bounded_time(parsed.occurred_at, item.received_at)
    if parsed.click_id:
        genuine = view.verified.get(parsed.click_id)
        if genuine is None:  # an install and its events carry the same click id: verified once a batch
            try:
                verify_click_id(parsed.click_id, view.secret)
                genuine = True
            except TokenError:
                genuine = False
            view.verified[parsed.click_id] = genuine
        if genuine:
            item.click_id = parsed.click_id
        else:
            item.forged = True
    item.gaid = gaid = parsed.gaid
    if gaid is not None:
        forms = view.device_forms.get(gaid.value)
        if forms is None:
            md5, sha1 = gaid.md5, gaid.sha1
            forms = view.device_forms[gaid.value] = (md5, sha1, _row_keys(md5, sha1))
        item.md5, item.sha1, item.keys = forms
        item.device = item.keys[0]


_KINDS = {kind.value: kind for kind in TouchKind}
_PARTNERS = {partner.value: partner for partner in Partner}


def _touch(row: Any, made: dict[tuple[str, str], Touch]) -> Touch:
    """The touch of a row of `_TOUCH_COLUMNS`; one object per touchpoint, however many reads return it."""
    kind, touch_id = row[0], row[1]
    found = made.get((kind, touch_id))
    if found is None:
        found = made[(kind, touch_id)] = Touch(
            kind=_KINDS[kind], touch_id=touch_id, occurred_at=row[2], account_id=row[3], campaign_id=row[4],
            ad_group_id=row[5], creative_id=row[6], ad_space_id=row[7], publisher_id=row[8], country=row[9],
            placement_type=row[10])
    return found


_TOUCHPOINTS = cast(Table, Touchpoint.__table__)
_CONVERSIONS = cast(Table, Conversion.__table__)
_POSTBACKS = cast(Table, Postback.__table__)
_T = _TOUCHPOINTS.c
_TOUCH_COLUMNS = (_T.kind, _T.touch_id, _T.occurred_at, _T.account_id, _T.campaign_id, _T.ad_group_id,
                  _T.creative_id, _T.ad_space_id, _T.publisher_id, _T.country, _T.placement_type, _T.app_package)
_C = _CONVERSIONS.c
_KNOWN_COLUMNS = (_C.id, _C.postback_id, _C.app_id, _C.conversion_event, _C.occurred_at, _C.click_id,
                  _C.attribution_type, _C.match_type, _C.is_reinstall, _C.touch_kind, _C.touch_id, _C.touch_at,
                  _C.account_id, _C.campaign_id, _C.ad_group_id, _C.creative_id, _C.ad_space_id, _C.publisher_id,
                  _C.fraud_flags, _C.charged_micros, _C.gaid_md5, _C.gaid_sha1, _C.data_flags)


def _known(row: Any, **extra: Any) -> Known:
    return Known(seq=row.id, id=row.id, postback_id=row.postback_id, app_id=row.app_id,
                 conversion_event=row.conversion_event, occurred_at=row.occurred_at, click_id=row.click_id,
                 attribution_type=row.attribution_type, match_type=row.match_type, is_reinstall=row.is_reinstall,
                 touch_kind=row.touch_kind, touch_id=row.touch_id, touch_at=row.touch_at, account_id=row.account_id,
                 campaign_id=row.campaign_id, ad_group_id=row.ad_group_id, creative_id=row.creative_id,
                 ad_space_id=row.ad_space_id, publisher_id=row.publisher_id, fraud_flags=row.fraud_flags or (),
                 charged=row.charged_micros, signed=_signed(row.data_flags), **extra)


def _signed(data_flags: Any) -> bool:
    return UNSIGNED_NOT_CHARGED not in (data_flags or ())


def _in(view: View, params: dict[str, Any], column: Any, name: str, values: Iterable[Any]) -> Any:
    """`column IN values` with the values bound as one list parameter (`finance.member_of`): an expanding IN of
    a batch's thousand device keys costs SQLAlchemy more than the look-up costs the database."""
    params[name] = list(values)
    return finance.member_of(column, name, view.dialect)


def _device_filter(view: View, params: dict[str, Any], columns: Any, items: list[Item]) -> list[Any]:
    md5s = {i.md5 for i in items if i.md5 is not None}
    # Every form each device has: a row stored from a postback with the SHA1 form has no MD5 to be found by.
    sha1s = {i.sha1 for i in items if i.gaid is not None and i.sha1 is not None}
    found = []
    if md5s:
        found.append(_in(view, params, columns.gaid_md5, "p_md5", md5s))
    if sha1s:
        found.append(_in(view, params, columns.gaid_sha1, "p_sha1", sha1s))
    return found


def _load_touches(session: Session, view: View, items: list[Item]) -> None:
    made: dict[tuple[str, str], Touch] = {}
    clicks = {i.click_id for i in items if i.click_id}
    if clicks:
        params: dict[str, Any] = {}
        # A click id is a click's, or the impression's whose links carried it (its partner view-through link):
        # each through its own index.
        by_click = select(*_TOUCH_COLUMNS, _T.click_id).where(
            _T.kind == TouchKind.CLICK.value, _in(view, params, _T.touch_id, "p_clicks", clicks))
        by_impression = select(*_TOUCH_COLUMNS, _T.click_id).where(
            _in(view, params, _T.click_id, "p_impression_clicks", clicks), _T.kind == TouchKind.IMPRESSION.value)
        for row in session.execute(union_all(by_click, by_impression), params):
            if row[0] == TouchKind.CLICK.value:
                view.click_touches[row[1]] = (_touch(row, made), row[11])
            else:
                view.impression_touches[row[12]] = (_touch(row, made), row[11])
    with_device = [i for i in items if i.gaid is not None]
    if not with_device:
        return
    earliest, latest = [], []
    for i in with_device:
        assert i.app is not None and i.occurred_at is not None
        w = i.app.windows
        earliest.append(i.occurred_at - max(w.click_lookback, CLICK_SPAM_WINDOW, w.view_through or timedelta(0)))
        latest.append(i.occurred_at)
    packages = {i.app.package_name for i in with_device if i.app is not None}
    params = {}
    rows = session.execute(select(*_TOUCH_COLUMNS, _T.gaid_md5, _T.gaid_sha1).where(
        or_(*_device_filter(view, params, _T, with_device)), _T.app_package.in_(packages),
        _T.occurred_at >= min(earliest), _T.occurred_at <= max(latest)).order_by(_T.occurred_at.desc()), params)
    for row in rows:
        entry = (_touch(row, made), row[11])
        for key in _row_keys(row[12], row[13]):
            view.device_touches[key].append(entry)


def _load_conversions(session: Session, view: View, items: list[Item]) -> None:
    """The devices' and click ids' installs and charged conversions; then the charges of the click ids those
    installs carry, which a later event is charged under."""
    live = [i for i in items if i.event is not None]
    app_ids = {i.app_id for i in live}
    if not app_ids:
        return
    clicks = {i.click_id for i in live if i.click_id}
    params: dict[str, Any] = {}
    matches = _device_filter(view, params, _C, live)
    if clicks:
        matches.append(_in(view, params, _C.click_id, "p_clicks", clicks))
        # A conversion attributed to one of these clicks by its device, its postback naming no click.
        matches.append(and_(_C.touch_kind == TouchKind.CLICK.value, _in(view, params, _C.touch_id,
                                                                           "p_touch_clicks", clicks)))
    impressions = {view.impression_touches[c][0].touch_id for c in clicks if c in view.impression_touches}
    if impressions:
        # One attributed to the impression a click id names (by its device, or by that click id).
        matches.append(and_(_C.touch_kind == TouchKind.IMPRESSION.value, _in(view, params, _C.touch_id,
                                                                                "p_impressions", impressions)))
    seen: set[int] = set()
    if matches:
        # One branch per device form and one for the click ids, each through its (app, key) index: an OR of
        # them makes SQLite read every conversion of the app, a cost that grows with the table.
        wanted = or_(_C.conversion_event == ConversionEvent.INSTALL.value, _C.charged_micros > 0)
        branches = [select(*_KNOWN_COLUMNS).where(_C.app_id.in_(app_ids), wanted, match) for match in matches]
        stmt: Any = union_all(*branches) if len(branches) > 1 else branches[0]
        rows = {row.id: row for row in session.execute(stmt, params)}
        for _, row in sorted(rows.items()):
            seen.add(row.id)
            known, keys = _known(row), _row_keys(row.gaid_md5, row.gaid_sha1)
            if row.conversion_event == ConversionEvent.INSTALL.value:
                view.add_install(known, keys)
            if row.charged_micros > 0:
                view.add_charged(known, keys)
    installs = [k for rows in view.installs_by_device.values() for k in rows]
    install_clicks = {c for k in installs for c in k.clicks()} - clicks
    install_impressions = {k.impression() for k in installs if k.impression()} - impressions
    if install_clicks or install_impressions:
        params = {}
        found = []
        if install_clicks:
            found.append(select(*_KNOWN_COLUMNS).where(
                _C.app_id.in_(app_ids), _C.charged_micros > 0,
                _in(view, params, _C.click_id, "p_clicks", install_clicks)))
            found.append(select(*_KNOWN_COLUMNS).where(
                _C.app_id.in_(app_ids), _C.charged_micros > 0, _C.touch_kind == TouchKind.CLICK.value,
                _in(view, params, _C.touch_id, "p_touch_clicks", install_clicks)))
        if install_impressions:
            found.append(select(*_KNOWN_COLUMNS).where(
                _C.app_id.in_(app_ids), _C.charged_micros > 0, _C.touch_kind == TouchKind.IMPRESSION.value,
                _in(view, params, _C.touch_id, "p_impressions", install_impressions)))
        stmt = union_all(*found) if len(found) > 1 else found[0]
        for row in sorted(session.execute(stmt, params), key=lambda r: r.id):
            if row.id not in seen:
                seen.add(row.id)
                view.add_charged(_known(row), ())  # matched by its click only


def _load_retried(session: Session, view: View, items: list[Item]) -> None:
    """Conversions stored with the identifying fields of a postback of the batch (partner time as sent, click id as
    sent, device): a retry under another key repeats one of them."""
    timed = [i for i in items if i.event is not None and i.parsed is not None and i.parsed.occurred_at is not None]
    if not timed:
        return
    p = _POSTBACKS.c
    times = {i.parsed.occurred_at for i in timed if i.parsed is not None}
    app_ids = {i.app_id for i in timed}
    params: dict[str, Any] = {}
    clicks = _in(view, params, _C.click_id, "p_clicks", {i.parsed.click_id for i in timed if i.parsed is not None})

    def branch(*terms: Any) -> Any:
        return select(_C.id, _C.postback_id, _C.app_id, _C.account_id, _C.conversion_event, _C.source_event_name,
                      _C.click_id, _C.occurred_at, _C.partner_time, _C.gaid_md5, _C.gaid_sha1, _C.data_flags,
                      _C.revenue, _C.currency, p.dedupe_key, p.fields) \
            .join(_POSTBACKS, p.id == _C.postback_id) \
            .where(_C.app_id.in_(app_ids), clicks, *terms)

    # One branch per device form, so each reads its (app, device, time) index rather than every conversion of
    # the account at that second.
    branches = [branch(_C.occurred_at.in_(times), term) for term in _device_filter(view, params, _C, timed)]
    if any(i.gaid is None for i in timed):
        branches.append(branch(_C.occurred_at.in_(times), _C.gaid_md5.is_(None), _C.gaid_sha1.is_(None),
                               _C.account_id.in_({i.app.account_id for i in timed if i.app is not None})))
    # A conversion whose time lay too far ahead has its receipt as its time: found by the time it was sent with,
    # through the partial index (no `IS NOT NULL` term: with one, SQLite reads the index as a range).
    branches.append(branch(_C.partner_time.in_(times)))
    stmt: Any = union_all(*branches)
    seen: set[int] = set()
    for row in session.execute(stmt, params):
        if row.id in seen:
            continue
        seen.add(row.id)
        known = Known(seq=row.id, id=row.id, postback_id=row.postback_id, app_id=row.app_id,
                      conversion_event=row.conversion_event, occurred_at=row.occurred_at, click_id=row.click_id,
                      dedupe_key=row.dedupe_key, fields=row.fields, signed=_signed(row.data_flags),
                      revenue=row.revenue, currency=row.currency)
        for key in _row_keys(row.gaid_md5, row.gaid_sha1) or (_NO_DEVICE,):
            view.same[(row.app_id, row.account_id, row.conversion_event, row.source_event_name, row.click_id,
                       row.partner_time or row.occurred_at, key)].append(known)


def _load_ad_groups(session: Session, view: View) -> None:
    """Every ad group a touch of the batch may name: the CPA decision needs its bid and event."""
    from adstack.campaigns.models import AdGroup

    ids = {t.ad_group_id for t, _ in view.click_touches.values()}
    ids.update(t.ad_group_id for t, _ in view.impression_touches.values())
    ids.update(t.ad_group_id for rows in view.device_touches.values() for t, _ in rows)
    ids.update(k.ad_group_id for rows in view.installs_by_device.values() for k in rows)
    ids.update(k.ad_group_id for rows in view.installs_by_click.values() for k in rows)
    ids.discard(0)
    if ids:
        g = cast(Table, AdGroup.__table__).c
        view.ad_groups = {row[0]: _Group(*row) for row in session.execute(
            select(g.id, g.account_id, g.bid_type, g.bid_micros, g.conversion_event).where(g.id.in_(ids)))}
