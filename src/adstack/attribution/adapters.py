"""One adapter per measurement partner: reads a postback in that partner's own field names and values.

Pure functions. Every adapter turns the flat field map of a request (query, form or JSON, merged) into a
`ParsedPostback`. Rules shared by all partners:

- a macro the partner left unreplaced (`{gps_adid}`, `(clickid)`, `${(id)!}`, `{{advertising_id}}`, `__CLICK_ID__`,
  `%%CLICK_ID%%`, `$click_id$`, `[CLICK_ID]`) counts as missing, never as a value, as does an empty or dropped field;
- a field that cannot be read (revenue `lots`, currency `US Dollar`, time `yesterday`) is left out and named in
  `unreadable`; the rest of the postback is kept;
- the partner's own verdict (attributed to us, organic, another network, rejected) is read where the partner sends
  one, into `verdict` and `verdict_reason`;
- GAIDs are normalised; MD5 and SHA1 forms are kept as such and matched against the same form;
- timestamps are read in seconds, milliseconds or date-time text (UTC unless the text names its offset);
- revenue is a Decimal with a three-letter currency (USD when the partner sends none);
- a rejection (`reject_reason`, `is_rejected`, `blocked_reason`, `rejection_reason`) wins over any other verdict
  field of the same postback (AppMetrica's touch type, Singular's NETWORK flag);
- the dedupe key is the partner's own event id where it has one (AppMetrica `transaction_id`, Branch `id`,
  Airbridge `event_uuid`, Adjust `adid` + `created_at_milli` when a postback carries it), else a hash of the
  identifying fields only (kind, event and its parameters, click id, device, partner time), so a retry that adds,
  drops or reorders another field is still one event; attribution also matches a retry that lost its event id
  (see `identity`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from adstack.attribution.postback_fields import (
    MAX_FIELDS,
    MAX_PARAM_VALUE_LENGTH,
    ParsedPostback,
    PartnerVerdict,
    flatten,
    json_object,
    parse_flag,
    pick,
    present,
    present_values,
    read_currency,
    read_revenue,
    read_timestamp,
    tolerant,
)
from adstack.core.vocabulary import Partner
from adstack.tracking.devices import normalise_gaid

# ---------- adapters ----------

_ORGANIC_NAMES = frozenset({"organic", "organic install", "none", "unattributed", "direct"})
# AppsFlyer appends its reject reason to the install postback: `reject_reason` today, `rejected_reason` in the
# earlier versions of the same page ("rejected_reason=site_blacklist&rejected_reason_value=...").
# Source: https://support.appsflyer.com/hc/en-us/articles/115004744123
_REJECTED_REASON_FIELDS = ("blocked_reason", "reject_reason", "rejected_reason", "rejection_reason")


def rejection(values: Mapping[str, str]) -> tuple[PartnerVerdict, str] | None:
    """A rejection in the fields partners share (AppsFlyer's reject_reason or rejected_reason / is_rejected /
    blocked_reason, Adjust's rejection_reason), whichever partner sends it."""
    for name in _REJECTED_REASON_FIELDS:
        raw = values.get(name)
        if raw is not None and (reason := present(raw)) is not None:
            return PartnerVerdict.REJECTED, f"{name}={reason[:80]}"
    if parse_flag(values.get("is_rejected")):
        return PartnerVerdict.REJECTED, "is_rejected=1"
    return None


def _same_network(name: str, ours: frozenset[str]) -> bool:
    return name.strip().lower() in ours


class Adapter:
    """Field names of one partner, tried in order; the Mi Ads style names (ext, gaid, event) come last."""

    partner: ClassVar[Partner]
    click_id_fields: ClassVar[tuple[str, ...]] = ()
    gaid_fields: ClassVar[tuple[str, ...]] = ()
    event_fields: ClassVar[tuple[str, ...]] = ()
    time_fields: ClassVar[tuple[str, ...]] = ()
    install_time_fields: ClassVar[tuple[str, ...]] = ()
    click_time_fields: ClassVar[tuple[str, ...]] = ()
    revenue_fields: ClassVar[tuple[str, ...]] = ()
    currency_fields: ClassVar[tuple[str, ...]] = ()
    event_id_fields: ClassVar[tuple[str, ...]] = ()
    attributed_fields: ClassVar[tuple[str, ...]] = ()
    network_fields: ClassVar[tuple[str, ...]] = ("network_name",)  # the network the partner attributed to
    touch_type_fields: ClassVar[tuple[str, ...]] = ("touch_type",)
    package_fields: ClassVar[tuple[str, ...]] = ("package", "app_package_name", "bundle_id")
    json_fields: ClassVar[tuple[str, ...]] = ()  # fields carrying URL-encoded JSON event parameters
    event_param_fields: ClassVar[tuple[str, ...]] = ()  # single event parameters sent as their own fields
    install_names: ClassVar[frozenset[str]] = frozenset({"install", "installs", "app_install"})
    reinstall_names: ClassVar[frozenset[str]] = frozenset({"reinstall", "reattribution", "re-attribution"})
    # The partner's own event names spelled like a macro (Singular's __iap__), lower case: read as names.
    literal_event_names: ClassVar[frozenset[str]] = frozenset()

    _GENERIC_CLICK_ID = ("ext", "click_id", "clickid")
    _GENERIC_GAID = ("gaid", "google_aid", "advertising_id")
    _GENERIC_EVENT = ("event", "event_name")
    _GENERIC_TIME = ("timestamp", "ts", "event_time")
    _GENERIC_REVENUE = ("revenue",)
    _GENERIC_CURRENCY = ("currency",)
    # The name lists `parse` reads, joined once per adapter class rather than once per postback.
    _click_names: ClassVar[tuple[str, ...]]
    _gaid_names: ClassVar[tuple[str, ...]]
    _event_names: ClassVar[tuple[str, ...]]
    _time_names: ClassVar[tuple[str, ...]]
    _revenue_names: ClassVar[tuple[str, ...]]
    _currency_names: ClassVar[tuple[str, ...]]
    _install_or_reinstall: ClassVar[frozenset[str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._join_names()

    @classmethod
    def _join_names(cls) -> None:
        cls._click_names = cls.click_id_fields + cls._GENERIC_CLICK_ID
        cls._gaid_names = cls.gaid_fields + cls._GENERIC_GAID
        cls._event_names = cls.event_fields + cls._GENERIC_EVENT
        cls._time_names = cls.time_fields + cls._GENERIC_TIME
        cls._revenue_names = cls.revenue_fields + cls._GENERIC_REVENUE
        cls._currency_names = cls.currency_fields + cls._GENERIC_CURRENCY
        cls._install_or_reinstall = cls.install_names | cls.reinstall_names

    @classmethod
    def first(cls, values: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str | None]:
        for name in names:
            raw = values.get(name)
            if raw is not None and (value := present(raw)) is not None:
                return name, value
        return (names[0] if names else ""), None

    @classmethod
    def event_name(cls, values: Mapping[str, str]) -> str:
        for name in cls._event_names:
            text = (values.get(name) or "").strip()
            if text.lower() in cls.literal_event_names:
                return text
            if (value := present(text)) is not None:
                return value
        return ""

    @classmethod
    def is_install(cls, values: Mapping[str, str], event_name: str) -> bool:
        return event_name == "" or event_name.lower() in cls._install_or_reinstall

    @classmethod
    def is_reattribution(cls, values: Mapping[str, str], event_name: str) -> bool:
        return event_name.lower() in cls.reinstall_names

    @classmethod
    def revenue(cls, values: Mapping[str, str], unreadable: dict[str, str],
                notes: list[str]) -> Decimal | None:
        name, text = cls.first(values, cls._revenue_names)
        return read_revenue(name, text, unreadable, notes)

    @classmethod
    def verdict(cls, values: Mapping[str, str], networks: frozenset[str]) -> tuple[PartnerVerdict | None, str]:
        """The partner's verdict from the fields every adapter shares: an attributed flag, the network the partner
        attributed to. None when the partner says nothing. A rejection, which wins over both, is read first by
        `rejection` (see `parse`)."""
        network = cls.network(values)
        if network is not None:
            if _same_network(network, networks):
                return PartnerVerdict.ATTRIBUTED, f"network={network[:60]}"
            if network.strip().lower() in _ORGANIC_NAMES:
                return PartnerVerdict.ORGANIC, f"network={network[:60]}"
            return PartnerVerdict.OTHER_NETWORK, f"network={network[:60]}"
        name, attributed = cls.first(values, cls.attributed_fields)
        flag = parse_flag(attributed)
        if flag is True:
            return PartnerVerdict.ATTRIBUTED, f"{name}=1"
        if flag is False:
            return PartnerVerdict.ORGANIC, f"{name}=0"
        return None, ""

    @classmethod
    def rejection(cls, values: Mapping[str, str]) -> tuple[PartnerVerdict, str] | None:
        return rejection(values)

    @classmethod
    def judge(cls, values: Mapping[str, str], networks: frozenset[str]) -> tuple[PartnerVerdict | None, str]:
        """The partner's verdict and its reason; a rejection wins over whatever else the partner says about the
        same conversion."""
        return cls.rejection(values) or cls.verdict(values, networks)

    @classmethod
    def network(cls, values: Mapping[str, str]) -> str | None:
        """The network the partner attributed the conversion to, when the postback names one."""
        return cls.first(values, cls.network_fields)[1]

    @classmethod
    def names_network(cls, values: Mapping[str, str]) -> bool:
        """Whether the postback names the network the partner attributed it to: only then do our own network
        names change the verdict."""
        return cls.network(values) is not None

    @classmethod
    def touch_type(cls, values: Mapping[str, str]) -> str:
        _, text = cls.first(values, cls.touch_type_fields)
        lowered = (text or "").lower()
        if lowered in ("click", "1_click", "clicks"):
            return "click"
        if lowered in ("impression", "view", "views", "impressions", "view_through", "viewthrough"):
            return "impression"
        return ""

    @classmethod
    def event_id(cls, values: Mapping[str, str]) -> str:
        return cls.first(values, cls.event_id_fields)[1] or ""

    @classmethod
    def parse(cls, values: Mapping[str, str], networks: frozenset[str] = frozenset()) -> ParsedPostback:
        """Read what can be read. `networks` are the names adstack is registered under with this partner,
        lower case, for partners that name the network they attributed to."""
        unreadable: dict[str, str] = {}
        notes: list[str] = []
        found = present_values(values)  # each field read once; `first` over them is a look-up
        event_name = cls.event_name(values)
        install = cls.is_install(values, event_name)
        _, click_id = pick(found, cls._click_names)
        _, gaid_text = pick(found, cls._gaid_names)
        time_field, time_text = pick(found, cls._time_names)
        install_field, install_text = pick(found, cls.install_time_fields)
        click_field, click_text = pick(found, cls.click_time_fields)
        currency_field, currency_text = pick(found, cls._currency_names)
        revenue = cls.revenue(values, unreadable, notes)
        currency = tolerant(read_currency, currency_text, currency_field, unreadable)
        if currency is None and revenue is not None and currency_field not in unreadable:
            currency = "USD"  # the partners' documented default when no currency is sent
        install_at = tolerant(read_timestamp, install_text, install_field, unreadable)
        occurred_at = tolerant(read_timestamp, time_text, time_field, unreadable) or (
            install_at if install else None)
        verdict, reason = cls.judge(values, networks)
        _, package = pick(found, cls.package_fields)
        return ParsedPostback(
            partner=cls.partner, is_install=install, event_name="" if install and event_name.lower() in
            cls._install_or_reinstall else event_name, click_id=(click_id or "")[:128],
            gaid=normalise_gaid(gaid_text) if gaid_text else None, occurred_at=occurred_at, install_at=install_at,
            click_at=tolerant(read_timestamp, click_text, click_field, unreadable), revenue=revenue,
            currency=currency or "", partner_event_id=cls.event_id(values)[:100],
            partner_attributed=None if verdict is None else verdict is PartnerVerdict.ATTRIBUTED,
            # A name the adapter reads as a reinstall is one for every partner, whatever else (Singular's
            # {IS_RE_ENG}) the adapter reads a re-attribution from.
            reattribution=cls.is_reattribution(values, event_name) or (
                install and event_name.lower() in cls.reinstall_names),
            verdict=verdict, verdict_reason=reason, touch_type=cls.touch_type(values), unreadable=unreadable,
            notes=tuple(notes), package=(package or "")[:255],
            event_params=cls.event_params(values),
        )

    @classmethod
    def event_params(cls, values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The event's own parameters, JSON read into sorted keys: a retry that reorders them is the same."""
        found: dict[str, str] = {}
        for key in cls.json_fields + cls.event_param_fields:
            text = present(values.get(key))
            if text is None:
                continue
            document = json_object(text) if key in cls.json_fields else {}
            if document:
                found.update({f"{key}.{k}": v for k, v in flatten(document).items()})
            else:
                found[key] = text
        return tuple(sorted(found.items()))

    @classmethod
    def params(cls, values: Mapping[str, str]) -> dict[str, str]:
        """The fields with a value, JSON event values flattened into their own keys: what event mapping
        conditions test (`apps.mapping`)."""
        return cls._present_params(present_values(values))

    @classmethod
    def _present_params(cls, found: Mapping[str, str]) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, text in found.items():
            if len(params) >= MAX_FIELDS:
                continue
            if key in cls.json_fields:
                flatten(json_object(text), "", params)
            params[key] = text[:MAX_PARAM_VALUE_LENGTH]
        return params


Adapter._join_names()



class AppsFlyer(Adapter):
    # Source: https://support.appsflyer.com/hc/en-us/articles/207273946-Postback-macros-for-ad-networks
    # Source: https://support.appsflyer.com/hc/en-us/articles/115004744123 (reject_reason, is_rejected)
    partner = Partner.APPSFLYER
    click_id_fields = ("clickid",)
    gaid_fields = ("advertising_id", "advertiser_id", "advertiserId")
    event_fields = ("event_name",)
    time_fields = ("event_time",)
    install_time_fields = ("install_unix_ts", "install_time")
    click_time_fields = ("click_ts", "click_time")
    revenue_fields = ("event_revenue",)
    currency_fields = ("event_revenue_currency",)
    attributed_fields = ("is_attributed",)
    network_fields = ("media_source", "pid")
    touch_type_fields = ("attributed_touch_type", "touch_type")
    package_fields = ("app_id", "package")
    json_fields = ("event_value",)
    install_names = frozenset({"install", "installs", "af_install"})
    reinstall_names = frozenset({"re-attribution", "reattribution", "reinstall", "re-engagement"})

    @classmethod
    def verdict(cls, values: Mapping[str, str], networks: frozenset[str]) -> tuple[PartnerVerdict | None, str]:
        verdict, reason = super().verdict(values, networks)
        if verdict is PartnerVerdict.ATTRIBUTED and parse_flag(values.get("is_primary_attribution")) is False:
            # A secondary (multi-touch) attribution: the install belongs to another touch.
            return PartnerVerdict.OTHER_NETWORK, "is_primary_attribution=0"
        return verdict, reason


class Adjust(Adapter):
    # Source: https://help.adjust.com/en/article/install-callbacks, .../ad-revenue-callbacks ({revenue} in cents,
    # {revenue_float} in units), .../rejected-install-reattribution-callbacks-partner ({rejection_reason})
    partner = Partner.ADJUST
    click_id_fields = ("label",)
    gaid_fields = ("gps_adid", "gps_adid_md5", "gps_adid_sha1")
    event_fields = ("event", "event_name")
    time_fields = ("created_at_milli", "created_at")
    install_time_fields = ("installed_at",)
    click_time_fields = ("click_time",)
    revenue_fields = ("revenue_float", "revenue")
    currency_fields = ("currency",)
    # {tracker_name}: "Current link name as defined in Campaign Lab", e.g. Network1::Christmas::Reindeers::320x70_en
    # (help.adjust.com/en/article/self-attributing-network-callbacks); its first level is the network.
    network_fields = ("tracker_name", "network_name")
    json_fields = ("partner_parameters", "callback_params")
    _INSTALL_KINDS = frozenset({"install", "reattribution", "reinstall", "reattribution_reinstall",
                                "rejected_install", "rejected_reattribution"})
    _REINSTALL_KINDS = frozenset({"reattribution", "reinstall", "reattribution_reinstall", "rejected_reattribution"})
    _REJECTED_KINDS = frozenset({"rejected_install", "rejected_reattribution"})

    @classmethod
    def _kind(cls, values: Mapping[str, str]) -> str:
        return (present(values.get("activity_kind")) or "").lower().replace(" ", "_")

    @classmethod
    def event_name(cls, values: Mapping[str, str]) -> str:
        kind = cls._kind(values)
        if kind in cls._INSTALL_KINDS:
            return ""
        if kind and kind not in ("event", "in-app_event", "ad_revenue"):
            return kind  # session, click, ... read through the standard names (session → APP_OPEN)
        if kind == "ad_revenue" and not present(values.get("event")):
            return "ad_revenue"
        return super().event_name(values)

    @classmethod
    def is_install(cls, values: Mapping[str, str], event_name: str) -> bool:
        kind = cls._kind(values)
        return kind in cls._INSTALL_KINDS or (not kind and event_name == "")

    @classmethod
    def is_reattribution(cls, values: Mapping[str, str], event_name: str) -> bool:
        return cls._kind(values) in cls._REINSTALL_KINDS

    @classmethod
    def revenue(cls, values: Mapping[str, str], unreadable: dict[str, str],
                notes: list[str]) -> Decimal | None:
        # {revenue_float} is in currency units; {revenue} is in cents.
        units = present(values.get("revenue_float"))
        if units is not None:
            return read_revenue("revenue_float", units, unreadable, notes)
        cents = present(values.get("revenue"))
        return read_revenue("revenue", cents, unreadable, notes, Decimal("0.01")) if cents is not None else None

    @classmethod
    def rejection(cls, values: Mapping[str, str]) -> tuple[PartnerVerdict, str] | None:
        if cls._kind(values) in cls._REJECTED_KINDS:
            reason = present(values.get("rejection_reason")) or ""
            return PartnerVerdict.REJECTED, f"{cls._kind(values)}:{reason[:60]}"
        return super().rejection(values)

    @classmethod
    def network(cls, values: Mapping[str, str]) -> str | None:
        name, text = cls.first(values, cls.network_fields)
        if text is None or name != "tracker_name":
            return text
        return text.split("::", 1)[0]

    @classmethod
    def event_id(cls, values: Mapping[str, str]) -> str:
        # One device does one thing per millisecond: {adid} + {created_at_milli} (+ kind and token) is the event.
        adid, milli = present(values.get("adid")), present(values.get("created_at_milli"))
        if adid is None or milli is None:
            return ""
        return f"{adid}:{milli}:{cls._kind(values)}:{present(values.get('event')) or ''}"


class AppMetrica(Adapter):
    # Source: https://appmetrica.yandex.com/docs/en/mobile-tracking/postback-specification
    partner = Partner.APPMETRICA
    click_id_fields = ("ext", "click_id")
    gaid_fields = ("gaid", "google_aid")
    event_fields = ("event_name", "conversion_event_name")
    time_fields = ("conversion_timestamp", "conversion_datetime", "event_datetime", "event_timestamp")
    install_time_fields = ("install_timestamp", "install_datetime")
    click_time_fields = ("click_timestamp", "click_datetime")
    revenue_fields = ("price", "revenue", "ad_revenue")
    currency_fields = ("currency",)
    event_id_fields = ("transaction_id",)
    touch_type_fields = ("touch_type", "attributed_touch_type")
    json_fields = ("event_json", "conversion_event_json", "event_params")

    @classmethod
    def verdict(cls, values: Mapping[str, str], networks: frozenset[str]) -> tuple[PartnerVerdict | None, str]:
        # {attributed_touch_type} is click or impression on a postback attributed to this tracker and empty on
        # the unattributed ones; a URL without the field (the guide's) carries no verdict.
        for name in cls.touch_type_fields:
            if name in values:
                touch = (present(values.get(name)) or "").lower()
                if touch in ("click", "impression"):
                    return PartnerVerdict.ATTRIBUTED, f"{name}={touch}"
                # Not ours; a network name, when sent, says whose it is.
                verdict, reason = super().verdict(values, networks)
                if verdict in (PartnerVerdict.OTHER_NETWORK, PartnerVerdict.ORGANIC):
                    return verdict, reason
                return PartnerVerdict.ORGANIC, f"{name} empty: not attributed to this tracker"
        return super().verdict(values, networks)


class Branch(Adapter):
    # Source: https://help.branch.io/using-branch/docs/postback-macros-functions
    partner = Partner.BRANCH
    click_id_fields = ("click_id", "~click_id")
    gaid_fields = ("aaid", "$aaid", "user_data.aaid")
    event_fields = ("name",)
    time_fields = ("event_timestamp", "timestamp")
    revenue_fields = ("revenue", "event_data.revenue")
    currency_fields = ("currency", "event_data.currency")
    event_id_fields = ("id",)
    attributed_fields = ("attributed",)
    touch_type_fields = ("touch_type", "last_attributed_touch_type")
    json_fields = ("event_data", "custom_data")
    install_names = frozenset({"install"})
    reinstall_names = frozenset({"reinstall"})


class Singular(Adapter):
    # Source: https://support.singular.net/hc/en-us/articles/115004063323 ({cl?Network}, {NETWORK=Network},
    # {IS_VIEWTHROUGH}, {IS_RE_ENG}, {EVTNAME}, {AMOUNT}, {UTCM})
    partner = Partner.SINGULAR
    click_id_fields = ("cl",)
    gaid_fields = ("aifa",)
    event_fields = ("evtname",)
    time_fields = ("utcm",)
    revenue_fields = ("amount",)
    currency_fields = ("currency",)
    attributed_fields = ("is_ours",)  # {NETWORK=<our name>}: 1 when Singular attributed it to us
    network_fields = ("network",)
    install_names = frozenset({"install", "__install__", "__start__"})
    # Singular's revenue events (in-app purchase, ad monetisation) and install names look like __X__ macros.
    literal_event_names = frozenset({"__iap__", "__admon_user_level_revenue__", "__install__", "__start__"})

    @classmethod
    def verdict(cls, values: Mapping[str, str], networks: frozenset[str]) -> tuple[PartnerVerdict | None, str]:
        ours = parse_flag(values.get("is_ours"))
        if ours is True:
            return PartnerVerdict.ATTRIBUTED, "NETWORK=1"
        if ours is False:
            network = present(values.get("network")) or ""
            if not network or network.lower() in _ORGANIC_NAMES:
                return PartnerVerdict.ORGANIC, "NETWORK=0, no network"
            return PartnerVerdict.OTHER_NETWORK, f"NETWORK=0, network={network[:60]}"
        return super().verdict(values, networks)

    @classmethod
    def touch_type(cls, values: Mapping[str, str]) -> str:
        viewthrough = parse_flag(values.get("is_viewthrough"))
        return "" if viewthrough is None else "impression" if viewthrough else "click"

    @classmethod
    def is_reattribution(cls, values: Mapping[str, str], event_name: str) -> bool:
        return bool(parse_flag(values.get("is_re_eng")))


def _network_id(text: str) -> str | None:
    """A numeric network id in one spelling (Kochava's network_id), or None for anything else."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    return text.lstrip("0") or "0"


class Kochava(Adapter):
    partner = Partner.KOCHAVA
    click_id_fields = ("click_id",)
    gaid_fields = ("adid", "device_id", "android_adid")
    event_fields = ("event_name",)
    time_fields = ("event_time", "timestamp")
    install_time_fields = ("install_time",)
    revenue_fields = ("revenue", "event_revenue")
    currency_fields = ("currency",)
    # Kochava knows a network by the numeric network_id of its click link; the name is Kochava's label for it.
    network_fields = ("network_id", "network_name", "network")
    _name_fields = ("network_name", "network")
    json_fields = ("event_value", "event_data")
    install_names = frozenset({"_install", "install"})
    reinstall_names = frozenset({"_reinstall", "reinstall"})

    @classmethod
    def verdict(cls, values: Mapping[str, str], networks: frozenset[str]) -> tuple[PartnerVerdict | None, str]:
        """By the network id where the postback returns one and the app is set up with an id (a numeric network
        name), else by the network name. For an app set up with an id, a name that is neither organic nor one of
        ours says nothing: the label Kochava shows for that id is not known here."""
        ids = {i for i in map(_network_id, networks) if i is not None}
        network_id = _network_id(present(values.get("network_id")) or "")
        name = cls.first(values, cls._name_fields)[1]
        organic = name is not None and name.strip().lower() in _ORGANIC_NAMES
        if network_id is not None and ids:
            if network_id in ids:
                return PartnerVerdict.ATTRIBUTED, f"network_id={network_id}"
            if organic:
                return PartnerVerdict.ORGANIC, f"network={(name or '')[:60]}"
            return PartnerVerdict.OTHER_NETWORK, f"network_id={network_id}"
        if name is None:
            return None, ""
        if _same_network(name, networks):
            return PartnerVerdict.ATTRIBUTED, f"network={name[:60]}"
        if organic:
            return PartnerVerdict.ORGANIC, f"network={name[:60]}"
        if ids:
            return None, ""
        return PartnerVerdict.OTHER_NETWORK, f"network={name[:60]}"


class Tenjin(Adapter):
    partner = Partner.TENJIN
    click_id_fields = ("click_id",)
    gaid_fields = ("advertising_id",)
    event_fields = ("event",)
    time_fields = ("created_at",)
    revenue_fields = ("revenue",)
    currency_fields = ("currency",)


class MyTracker(Adapter):
    # Source: https://docs.tracker.my.com/tracking/postbacks/macros?lang=en
    partner = Partner.MYTRACKER
    click_id_fields = ("clickid", "mt_sub1")
    gaid_fields = ("gaid", "mt_gaid", "mt_gaid_lc")
    event_fields = ("event",)
    time_fields = ("event-time", "event_ts")
    revenue_fields = ("revenue",)
    currency_fields = ("currency",)
    event_param_fields = ("level",)


class Airbridge(Adapter):
    partner = Partner.AIRBRIDGE
    click_id_fields = ("click_id",)
    gaid_fields = ("gaid", "gaid_raw")
    event_fields = ("event",)
    time_fields = ("event_ts",)
    revenue_fields = ("revenue",)
    currency_fields = ("currency",)
    event_id_fields = ("event_uuid",)
    install_names = frozenset({"install", "airbridge.install", "app_install"})
    reinstall_names = frozenset({"reinstall", "airbridge.reinstall"})


ADAPTERS: dict[Partner, type[Adapter]] = {
    adapter.partner: adapter
    for adapter in (AppsFlyer, Adjust, AppMetrica, Branch, Singular, Kochava, Tenjin, MyTracker, Airbridge)
}
assert set(ADAPTERS) == set(Partner)


def parse_postback(partner: Partner, values: Mapping[str, str],
                   networks: frozenset[str] = frozenset()) -> ParsedPostback:
    return ADAPTERS[partner].parse(values, networks)


# ---------- the reading, stored ----------

# What the adapters read from a postback is stored with it when it is received, so attribution does not read its
# fields a second time; a postback stored under another version is read again from its fields. The version carries
# the shape of `ParsedPostback` by itself (a field added with a default would otherwise decode silently); raise
# READING_REVISION whenever a field is read differently (here, or in the readers of `postback_fields` and
# `tracking.devices.normalise_gaid`).
# 2: AppsFlyer's rejected_reason; 3: a reinstall name is a re-attribution for Singular too; 4: Kochava's network_id
READING_REVISION = 4


def reading_version(reading: type) -> str:
    """The revision and a digest of the reading's fields, names and types."""
    shape = repr([(f.name, str(f.type)) for f in dataclass_fields(reading)])
    return f"{READING_REVISION}.{hashlib.sha256(shape.encode()).hexdigest()[:12]}"


PARSE_VERSION = reading_version(ParsedPostback)


class StoredParse(msgspec.Struct, frozen=True):
    version: str
    parsed: ParsedPostback


_STORED_PARSE = msgspec.json.Decoder(StoredParse)
_STORED_PARSE_ENCODER = msgspec.json.Encoder()


def stored_parse(parsed: ParsedPostback) -> dict[str, Any]:
    """The reading as JSON values, for the event log's record and the postbacks table. Read without the app's
    network names, which attribution applies (`read_postback`)."""
    return msgspec.to_builtins(StoredParse(PARSE_VERSION, parsed))


def stored_parse_text(parsed: ParsedPostback) -> str:
    """`stored_parse` as the postbacks table keeps it."""
    return _STORED_PARSE_ENCODER.encode(StoredParse(PARSE_VERSION, parsed)).decode()


def read_postback(partner: Partner, values: Mapping[str, str], networks: frozenset[str],
                  stored: str | bytes | None) -> ParsedPostback:
    """The postback as `parse_postback` reads it: from its stored reading when it has one of this version,
    with the verdict judged again by the app's network names when the partner names a network."""
    if stored:
        try:
            found = _STORED_PARSE.decode(stored)
        except msgspec.DecodeError:  # written by another version, or damaged: read the fields again
            found = None
        if found is not None and found.version == PARSE_VERSION and found.parsed.partner is partner:
            parsed = found.parsed
            adapter = ADAPTERS[partner]
            if networks and adapter.names_network(values):
                verdict, reason = adapter.judge(values, networks)
                parsed = replace(parsed, verdict=verdict, verdict_reason=reason,
                                 partner_attributed=None if verdict is None else verdict is PartnerVerdict.ATTRIBUTED)
            return parsed
    return parse_postback(partner, values, networks)
