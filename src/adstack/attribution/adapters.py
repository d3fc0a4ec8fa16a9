"""One adapter per measurement partner: reads a postback in that partner's own field names and values.

Pure functions. Every adapter turns the flat field map of a request (query, form or JSON, merged) into a
`ParsedPostback`. Rules shared by all partners:

- a macro the partner left unreplaced (`{gps_adid}`, `(clickid)`, `${(id)!}`, `{{advertising_id}}`) counts as
  missing, as does an empty value or a dropped field;
- GAIDs are normalised; MD5 and SHA1 forms are kept as such and matched against the same form;
- timestamps are read in seconds, milliseconds or date-time text (UTC unless the text names its offset);
- revenue is a Decimal with a three-letter currency (USD when the partner sends none);
- the dedupe key is the partner's own event id where it has one (AppMetrica `transaction_id`, Branch `id`,
  Airbridge `event_uuid`), else a stable hash of the meaningful fields, so a retried postback has the same key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import orjson

from adstack.core.vocabulary import Partner
from adstack.tracking.devices import Gaid, normalise_gaid

MAX_FIELDS = 100
MAX_VALUE_LENGTH = 2000
MAX_PARAM_VALUE_LENGTH = 500
MAX_REVENUE = Decimal(10) ** 12
MAX_REVENUE_PLACES = 12
MAX_JSON_DEPTH = 8
# Fields of ours in the postback URL: not the partner's data.
RESERVED_FIELDS = frozenset({"partner", "app", "sig"})

_UNREPLACED = re.compile(
    r"^(\{\{?\s*[@A-Za-z0-9_.?~=\- ]+\s*\}?\}|\([A-Za-z0-9_.\-]+\)|\$\{.*\}|<#.*>|%7[Bb].*%7[Dd]|\[[A-Z_]+\])$"
)
_NULLS = frozenset({"", "null", "none", "nil", "undefined", "n/a", "na", "-"})
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S",
                     "%Y-%m-%d")
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f"})


class PostbackError(ValueError):
    """A postback that cannot be read; `field` and `rule` name what is wrong."""

    def __init__(self, field: str, rule: str, message: str):
        super().__init__(message)
        self.field = field
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class ParsedPostback:
    partner: Partner
    is_install: bool  # the partner's own notion; an event name mapped to INSTALL also counts as one
    event_name: str  # the partner's event name or token; "" for an install
    click_id: str
    gaid: Gaid | None
    occurred_at: datetime | None
    install_at: datetime | None
    click_at: datetime | None
    revenue: Decimal | None
    currency: str
    partner_event_id: str
    partner_attributed: bool | None
    reattribution: bool
    params: dict[str, str] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        if self.partner_event_id:
            return f"{self.partner.value}:id:{self.partner_event_id}"[:128]
        meaningful = [
            self.partner.value, "install" if self.is_install else "event", self.event_name.lower(), self.click_id,
            self.gaid.value if self.gaid else "", self.occurred_at.isoformat() if self.occurred_at else "",
            self.install_at.isoformat() if self.install_at else "",
            "" if self.revenue is None else format(self.revenue.normalize(), "f"), self.currency,
            sorted(self.params.items()),  # a retry repeats the request exactly; two events differ somewhere
        ]
        digest = hashlib.sha256(orjson.dumps(meaningful)).hexdigest()[:40]
        return f"{self.partner.value}:h:{digest}"


# ---------- value readers ----------


def present(value: str | None) -> str | None:
    """The value, or None when it is empty, a null word or a macro the partner did not replace."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() in _NULLS or _UNREPLACED.match(text):
        return None
    return text


def parse_timestamp(value: str | None, field_name: str) -> datetime | None:
    text = present(value)
    if text is None:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is not None and number.is_finite():
        seconds = number / 1000 if abs(number) >= 100_000_000_000 else number  # ms from 1973 on
        if not 0 < seconds < 4_102_444_800:  # before 2100
            raise PostbackError(field_name, "timestamp_range", f"{field_name} is not a plausible time: {text}")
        return datetime.fromtimestamp(float(seconds), UTC)
    candidate = text.replace("Z", "+00:00").replace(" UTC", "+00:00")
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        parsed = None
        for fmt in _DATETIME_FORMATS:
            try:
                parsed = datetime.strptime(text[:26], fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise PostbackError(field_name, "timestamp", f"{field_name} is neither a unix time nor a date-time: "
                                                     f"{text[:60]}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_revenue(value: str | None, field_name: str) -> Decimal | None:
    text = present(value)
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise PostbackError(field_name, "decimal", f"{field_name} is not a number: {text[:60]}") from None
    if not amount.is_finite() or abs(amount) >= MAX_REVENUE:
        raise PostbackError(field_name, "decimal_range", f"{field_name} is out of range: {text[:60]}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_REVENUE_PLACES:
        amount = amount.quantize(Decimal(1).scaleb(-MAX_REVENUE_PLACES))  # finer than any currency has
    return amount


def parse_currency(value: str | None, field_name: str) -> str | None:
    text = present(value)
    if text is None:
        return None
    code = text.upper()
    if not _CURRENCY.match(code):
        raise PostbackError(field_name, "currency", f"{field_name} is not an ISO 4217 code: {text[:20]}")
    return code


def parse_flag(value: str | None) -> bool | None:
    text = present(value)
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def flatten(value: Any, prefix: str = "", out: dict[str, str] | None = None, depth: int = 0) -> dict[str, str]:
    """Nested JSON as dotted keys, for conditions such as `level` or `event_data.level`."""
    out = {} if out is None else out
    if depth > MAX_JSON_DEPTH:
        return out
    if isinstance(value, Mapping):
        for key, inner in value.items():
            flatten(inner, f"{prefix}{key}" if not prefix else f"{prefix}.{key}", out, depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value[:20]):
            flatten(inner, f"{prefix}.{index}", out, depth + 1)
    elif value is not None and len(out) < MAX_FIELDS:
        out[prefix] = str(value)[:MAX_PARAM_VALUE_LENGTH]
    return out


def _json_object(text: str | None) -> dict[str, Any]:
    if not text or not text.lstrip().startswith("{"):
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------- adapters ----------


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
    json_fields: ClassVar[tuple[str, ...]] = ()  # fields carrying URL-encoded JSON event parameters
    install_names: ClassVar[frozenset[str]] = frozenset({"install", "installs", "app_install"})
    reinstall_names: ClassVar[frozenset[str]] = frozenset({"reinstall", "reattribution", "re-attribution"})

    _GENERIC_CLICK_ID = ("ext", "click_id", "clickid")
    _GENERIC_GAID = ("gaid", "google_aid", "advertising_id")
    _GENERIC_EVENT = ("event", "event_name")
    _GENERIC_TIME = ("timestamp", "ts", "event_time")
    _GENERIC_REVENUE = ("revenue",)
    _GENERIC_CURRENCY = ("currency",)

    @classmethod
    def first(cls, values: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str | None]:
        for name in names:
            value = present(values.get(name))
            if value is not None:
                return name, value
        return (names[0] if names else ""), None

    @classmethod
    def event_name(cls, values: Mapping[str, str]) -> str:
        return cls.first(values, cls.event_fields + cls._GENERIC_EVENT)[1] or ""

    @classmethod
    def is_install(cls, values: Mapping[str, str], event_name: str) -> bool:
        return event_name == "" or event_name.lower() in cls.install_names | cls.reinstall_names

    @classmethod
    def is_reattribution(cls, values: Mapping[str, str], event_name: str) -> bool:
        return event_name.lower() in cls.reinstall_names

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> ParsedPostback:
        event_name = cls.event_name(values)
        install = cls.is_install(values, event_name)
        _, click_id = cls.first(values, cls.click_id_fields + cls._GENERIC_CLICK_ID)
        _, gaid_text = cls.first(values, cls.gaid_fields + cls._GENERIC_GAID)
        time_field, time_text = cls.first(values, cls.time_fields + cls._GENERIC_TIME)
        install_field, install_text = cls.first(values, cls.install_time_fields)
        click_field, click_text = cls.first(values, cls.click_time_fields)
        revenue_field, revenue_text = cls.first(values, cls.revenue_fields + cls._GENERIC_REVENUE)
        currency_field, currency_text = cls.first(values, cls.currency_fields + cls._GENERIC_CURRENCY)
        _, event_id = cls.first(values, cls.event_id_fields)
        _, attributed = cls.first(values, cls.attributed_fields)
        revenue = parse_revenue(revenue_text, revenue_field)
        currency = parse_currency(currency_text, currency_field) or ("USD" if revenue is not None else "")
        install_at = parse_timestamp(install_text, install_field)
        occurred_at = parse_timestamp(time_text, time_field) or (install_at if install else None)
        params = cls.params(values)
        return ParsedPostback(
            partner=cls.partner, is_install=install, event_name="" if install and event_name.lower() in
            cls.install_names | cls.reinstall_names else event_name, click_id=(click_id or "")[:128],
            gaid=normalise_gaid(gaid_text) if gaid_text else None, occurred_at=occurred_at, install_at=install_at,
            click_at=parse_timestamp(click_text, click_field), revenue=revenue, currency=currency,
            partner_event_id=(event_id or "")[:100], partner_attributed=parse_flag(attributed),
            reattribution=cls.is_reattribution(values, event_name), params=params,
        )

    @classmethod
    def params(cls, values: Mapping[str, str]) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in values.items():
            if key in RESERVED_FIELDS or len(params) >= MAX_FIELDS:
                continue
            text = present(value)
            if text is None:
                continue
            if key in cls.json_fields:
                flatten(_json_object(text), "", params)
            params[key] = text[:MAX_PARAM_VALUE_LENGTH]
        return params


class AppsFlyer(Adapter):
    partner = Partner.APPSFLYER
    click_id_fields = ("clickid",)
    gaid_fields = ("advertising_id", "advertiser_id", "advertiserId")
    event_fields = ("event_name",)
    time_fields = ("event_time",)
    install_time_fields = ("install_unix_ts", "install_time")
    click_time_fields = ("click_ts", "click_time")
    revenue_fields = ("event_revenue",)
    currency_fields = ("event_revenue_currency",)
    json_fields = ("event_value",)
    install_names = frozenset({"install", "installs", "af_install"})
    reinstall_names = frozenset({"re-attribution", "reattribution", "reinstall", "re-engagement"})


class Adjust(Adapter):
    partner = Partner.ADJUST
    click_id_fields = ("label",)
    gaid_fields = ("gps_adid", "gps_adid_md5", "gps_adid_sha1")
    event_fields = ("event", "event_name")
    time_fields = ("created_at", "created_at_milli")
    install_time_fields = ("installed_at",)
    click_time_fields = ("click_time",)
    revenue_fields = ("revenue", "revenue_float", "reporting_revenue")
    currency_fields = ("currency", "reporting_currency")
    json_fields = ("partner_parameters", "callback_params")
    _INSTALL_KINDS = frozenset({"install", "reattribution", "reinstall", "reattribution_reinstall"})
    _REINSTALL_KINDS = frozenset({"reattribution", "reinstall", "reattribution_reinstall"})

    @classmethod
    def event_name(cls, values: Mapping[str, str]) -> str:
        kind = (present(values.get("activity_kind")) or "").lower()
        if kind in cls._INSTALL_KINDS:
            return ""
        if kind and kind != "event":
            return kind  # session, click, ... read through the standard names (session → APP_OPEN)
        return super().event_name(values)

    @classmethod
    def is_install(cls, values: Mapping[str, str], event_name: str) -> bool:
        kind = (present(values.get("activity_kind")) or "").lower()
        return kind in cls._INSTALL_KINDS or (not kind and event_name == "")

    @classmethod
    def is_reattribution(cls, values: Mapping[str, str], event_name: str) -> bool:
        return (present(values.get("activity_kind")) or "").lower() in cls._REINSTALL_KINDS


class AppMetrica(Adapter):
    partner = Partner.APPMETRICA
    click_id_fields = ("ext", "click_id")
    gaid_fields = ("gaid", "google_aid")
    event_fields = ("event_name",)
    time_fields = ("event_datetime", "event_timestamp")
    install_time_fields = ("install_datetime", "install_timestamp")
    click_time_fields = ("click_datetime", "click_timestamp")
    revenue_fields = ("revenue", "price", "ad_revenue")
    currency_fields = ("currency",)
    event_id_fields = ("transaction_id",)
    json_fields = ("event_json", "event_params")

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> ParsedPostback:
        parsed = super().parse(values)
        touch = (present(values.get("touch_type")) or "").lower()
        if touch:  # AppMetrica leaves click_id empty on unattributed postbacks
            return replace(parsed, partner_attributed=touch in ("click", "impression"))
        return parsed


class Branch(Adapter):
    partner = Partner.BRANCH
    click_id_fields = ("click_id", "~click_id")
    gaid_fields = ("aaid", "$aaid", "user_data.aaid")
    event_fields = ("name",)
    time_fields = ("event_timestamp", "timestamp")
    revenue_fields = ("revenue", "event_data.revenue")
    currency_fields = ("currency", "event_data.currency")
    event_id_fields = ("id",)
    attributed_fields = ("attributed",)
    json_fields = ("event_data", "custom_data")
    install_names = frozenset({"install"})
    reinstall_names = frozenset({"reinstall"})


class Singular(Adapter):
    partner = Partner.SINGULAR
    click_id_fields = ("cl",)
    gaid_fields = ("aifa",)
    event_fields = ("evtname",)
    time_fields = ("utcm",)
    revenue_fields = ("amount",)
    currency_fields = ("currency",)
    install_names = frozenset({"install", "__install__", "__start__"})

    @classmethod
    def is_reattribution(cls, values: Mapping[str, str], event_name: str) -> bool:
        return bool(parse_flag(values.get("is_re_eng")))


class Kochava(Adapter):
    partner = Partner.KOCHAVA
    click_id_fields = ("click_id",)
    gaid_fields = ("adid", "device_id", "android_adid")
    event_fields = ("event_name",)
    time_fields = ("event_time", "timestamp")
    install_time_fields = ("install_time",)
    revenue_fields = ("revenue", "event_revenue")
    currency_fields = ("currency",)
    json_fields = ("event_value", "event_data")
    install_names = frozenset({"_install", "install"})
    reinstall_names = frozenset({"_reinstall", "reinstall"})


class Tenjin(Adapter):
    partner = Partner.TENJIN
    click_id_fields = ("click_id",)
    gaid_fields = ("advertising_id",)
    event_fields = ("event",)
    time_fields = ("created_at",)
    revenue_fields = ("revenue",)
    currency_fields = ("currency",)


class MyTracker(Adapter):
    partner = Partner.MYTRACKER
    click_id_fields = ("clickid", "mt_sub1")
    gaid_fields = ("gaid", "mt_gaid", "mt_gaid_lc")
    event_fields = ("event",)
    time_fields = ("event-time", "event_ts")
    revenue_fields = ("revenue",)
    currency_fields = ("currency",)


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


def parse_postback(partner: Partner, values: Mapping[str, str]) -> ParsedPostback:
    return ADAPTERS[partner].parse(values)
