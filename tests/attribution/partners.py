"""A stand-in for the measurement partners (third parties we cannot reach from tests): each fills the postback
URL template we give it the way that partner does, with its own macro syntax, time formats and habits for
values it does not have (left empty, left as the literal macro, or dropped)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from adstack.core.vocabulary import Partner

_ids = itertools.count(1)


@dataclass
class Conversion:
    """What the partner knows about one install or in-app event."""

    at: datetime
    event: str = ""  # the partner's event name or token; "" for an install
    click_id: str = ""
    gaid: str = ""
    revenue: Decimal | None = None
    currency: str = ""
    install_at: datetime | None = None
    params: dict[str, str] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: f"evt-{next(_ids)}")
    # The partner's verdict: whether it attributed the conversion to adstack (None: when it knows our click id).
    attributed: bool | None = None

    @property
    def ours(self) -> bool:
        return bool(self.click_id) if self.attributed is None else self.attributed


def _unix(at: datetime) -> str:
    return str(int(at.timestamp()))


def _ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def _text(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


# The semantic of each macro, and how the partner formats it.
MACROS: dict[Partner, dict[str, Any]] = {
    Partner.APPSFLYER: {
        "(clickid)": lambda c: c.click_id,
        "(advertiserId)": lambda c: c.gaid,
        "(event_name)": lambda c: c.event,
        "(event_revenue)": lambda c: c.revenue,
        "(event_revenue_currency)": lambda c: c.currency,
        "(event_time)": lambda c: c.at.strftime("%Y-%m-%d %H:%M:%S.") + f"{c.at.microsecond // 1000:03d}",
        "(install-unix-ts)": lambda c: _unix(c.install_at or c.at),
        "(event_value)": lambda c: _json(c.params) if c.params else "",
    },
    Partner.ADJUST: {
        "{activity_kind}": lambda c: "install" if not c.event else "event",
        "{label}": lambda c: c.click_id,
        "{gps_adid}": lambda c: c.gaid,
        "{event}": lambda c: c.event,
        "{revenue_float}": lambda c: c.revenue,
        "{currency}": lambda c: c.currency,
        "{created_at}": lambda c: _unix(c.at),
        "{adid}": lambda c: c.event_id,
        "{installed_at}": lambda c: _unix(c.install_at or c.at),
        # The link's name in Campaign Lab, network first; an unattributed device's is "Organic".
        "{tracker_name}": lambda c: "adstack::Campaign::Adgroup::Creative" if c.ours else "Organic",
    },
    Partner.APPMETRICA: {
        "{click_id}": lambda c: c.click_id,
        "{google_aid}": lambda c: c.gaid,
        "{conversion_event_name}": lambda c: c.event,
        "{transaction_id}": lambda c: c.event_id,
        "{conversion_timestamp}": lambda c: _unix(c.at),
        "{price}": lambda c: c.revenue,
        "{currency}": lambda c: c.currency,
        "{attributed_touch_type}": lambda c: "click" if c.ours else "",
        "{conversion_event_json}": lambda c: _json(c.params) if c.params else "",
    },
    Partner.BRANCH: {
        "${(id)!}": lambda c: c.event_id,
        "${(name)!}": lambda c: c.event or "install",
        "${(event_timestamp)!}": lambda c: _ms(c.at),
        "${(last_attributed_touch_data.~click_id)!}": lambda c: c.click_id,
        "${(user_data.aaid)!}": lambda c: c.gaid,
        "${(event_data.revenue)!}": lambda c: c.revenue,
        "${(event_data.currency)!}": lambda c: c.currency,
        "<#if attributed>1<#else>0</#if>": lambda c: "1" if c.ours else "0",
    },
    Partner.SINGULAR: {
        "{cl?adstack}": lambda c: c.click_id,
        "{AIFA}": lambda c: c.gaid,
        "{EVTNAME}": lambda c: c.event,
        "{NETWORK=adstack}": lambda c: "1" if c.ours else "0",
        "{AMOUNT}": lambda c: c.revenue,
        "{CURRENCY}": lambda c: c.currency,
        "{UTCM}": lambda c: _unix(c.at),
    },
    Partner.KOCHAVA: {
        "{click_id}": lambda c: c.click_id,
        "{adid}": lambda c: c.gaid.upper(),
        "{event_name}": lambda c: c.event or "_install",
        "{revenue}": lambda c: c.revenue,
        "{currency}": lambda c: c.currency,
        "{event_time}": lambda c: _unix(c.at),
    },
    Partner.TENJIN: {
        "{{click_id}}": lambda c: c.click_id,
        "{{advertising_id}}": lambda c: c.gaid,
        "{{event}}": lambda c: c.event,
        "{{revenue}}": lambda c: c.revenue,
        "{{currency}}": lambda c: c.currency,
        "{{created_at}}": lambda c: c.at.isoformat().replace("+00:00", "Z"),
    },
    Partner.MYTRACKER: {
        "{mt_sub1}": lambda c: c.click_id,
        "{mt_gaid}": lambda c: c.gaid,
        "{mt_event}": lambda c: c.event,
        "{mt_event_ts}": lambda c: _unix(c.at),
        "{mt_payment_sum_src}": lambda c: c.revenue,
        "{mt_payment_currency_src}": lambda c: c.currency,
        "{mt_event_param_level}": lambda c: c.params.get("level", ""),
    },
    Partner.AIRBRIDGE: {
        "{@postback.clickID}": lambda c: c.click_id,
        "{@postback.gaidRaw}": lambda c: c.gaid,
        "{@postback.eventName}": lambda c: c.event or "airbridge.install",
        "{@postback.eventUUID}": lambda c: c.event_id,
        "{@postback.revenue}": lambda c: c.revenue,
        "{@postback.currency}": lambda c: c.currency,
        "{@postback.eventTimestamp}": lambda c: _ms(c.at),
    },
}

# What each partner does with a macro it has no value for.
MISSING = {
    Partner.APPSFLYER: "empty",
    Partner.ADJUST: "drop",
    Partner.APPMETRICA: "empty",
    Partner.BRANCH: "empty",
    Partner.SINGULAR: "literal",
    Partner.KOCHAVA: "literal",
    Partner.TENJIN: "empty",
    Partner.MYTRACKER: "literal",
    Partner.AIRBRIDGE: "empty",
}

# How each partner names the events used in the tests (Adjust sends tokens the app maps).
EVENT_NAMES: dict[Partner, dict[str, str]] = {
    Partner.APPSFLYER: {"PURCHASE": "af_purchase", "AD_REVENUE": "af_ad_revenue", "LOGIN": "af_login"},
    Partner.ADJUST: {"PURCHASE": "p4rch1", "AD_REVENUE": "adr3v1", "LOGIN": "l0g1n1"},
    Partner.APPMETRICA: {"PURCHASE": "purchase", "AD_REVENUE": "ad_revenue", "LOGIN": "login"},
    Partner.BRANCH: {"PURCHASE": "purchase", "AD_REVENUE": "ad_revenue", "LOGIN": "login"},
    Partner.SINGULAR: {"PURCHASE": "__iap__", "AD_REVENUE": "__ADMON_USER_LEVEL_REVENUE__", "LOGIN": "login"},
    Partner.KOCHAVA: {"PURCHASE": "Purchase", "AD_REVENUE": "ad_revenue", "LOGIN": "Login"},
    Partner.TENJIN: {"PURCHASE": "purchase", "AD_REVENUE": "ad_revenue", "LOGIN": "login"},
    Partner.MYTRACKER: {"PURCHASE": "purchase", "AD_REVENUE": "ad_revenue", "LOGIN": "login"},
    Partner.AIRBRIDGE: {
        "PURCHASE": "airbridge.ecommerce.order.completed",
        "AD_REVENUE": "airbridge.adImpression",
        "LOGIN": "airbridge.user.signin",
    },
}


def _json(params: dict[str, str]) -> str:
    import json

    return json.dumps(params)


def fill(partner: Partner, template: str, conversion: Conversion) -> tuple[str, list[tuple[str, str]]]:
    """The URL path and query the partner would call for this conversion."""
    # Split by hand: Branch's `<#if ...>` holds a '#' that is no fragment (the partner fills it before sending).
    path, _, template_query = template.partition("?")
    macros = MACROS[partner]
    query: list[tuple[str, str]] = []
    for name, value in parse_qsl(template_query, keep_blank_values=True):
        if value not in macros:
            query.append((name, value))  # our own fixed fields, or a macro this partner never fills
            continue
        filled = macros[value](conversion)
        if filled is None or filled == "":
            behaviour = MISSING[partner]
            if behaviour == "drop":
                continue
            query.append((name, value if behaviour == "literal" else ""))
        else:
            query.append((name, str(filled)))
    return urlsplit(path).path, query


def url(partner: Partner, template: str, conversion: Conversion) -> str:
    path, query = fill(partner, template, conversion)
    return f"{path}?{urlencode(query)}"
