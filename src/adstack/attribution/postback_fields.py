"""A postback's fields as every partner's adapter reads them: the parsed postback, the partner's verdict, and the
tolerant readers of values (missing, null words and unreplaced macros; timestamps, revenue, currencies, flags and
JSON event values). The rules are listed in `adapters`, which applies them per partner."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import orjson

from adstack.core.vocabulary import Partner
from adstack.tracking.devices import Gaid

MAX_FIELDS = 100
MAX_VALUE_LENGTH = 2000
MAX_PARAM_VALUE_LENGTH = 500
# A billion units of any currency (10^15 micros): past any in-app purchase, and low enough that the reports' 64-bit
# sums of revenue micros cannot wrap below thousands of such conversions in one row (at 10^12 units, ten did).
MAX_REVENUE = Decimal(10) ** 9
MAX_REVENUE_PLACES = 12
MAX_JSON_DEPTH = 8
# Fields of ours in the postback URL: not the partner's data.
RESERVED_FIELDS = frozenset({"partner", "app", "sig"})

# Unreplaced macros in every syntax partners and ad servers use: {x} {{x}} ${...} (x) [X] __X__ %%X%% $x$ <#...>.
# `{...}` holds no quote or colon, so a JSON object is never taken for a macro.
_UNREPLACED = re.compile(
    r"^(\{\{[^{}]*\}\}|\{[^{}\":]*\}|\$\{.*\}|\([A-Za-z0-9_.?=\-]+\)|\[[A-Za-z0-9_.\-]+\]|__[A-Za-z0-9_.]+__"
    r"|%%[A-Za-z0-9_.\-]+%%|\$[A-Za-z0-9_.\-]+\$|<#.*>|%7[Bb].*%7[Dd])$"
)
_NULLS = frozenset({"", "null", "none", "nil", "undefined", "n/a", "na", "-"})
_LONGEST_NULL = max(map(len, _NULLS))
# Every form of `_UNREPLACED` starts with one of these: other values skip the expression (most of them).
_MACRO_STARTS = frozenset("{$([_%<")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d{1,2}$")  # 1,99: unambiguous; 1,999 could be thousands
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


class PartnerVerdict(StrEnum):
    """What the partner itself says about the conversion."""

    ATTRIBUTED = "attributed"  # to adstack
    ORGANIC = "organic"  # no paid touch, or not attributed to any network the partner names
    OTHER_NETWORK = "other_network"
    REJECTED = "rejected"  # the partner blocked or rejected it (fraud, validation rules)


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
    verdict: PartnerVerdict | None = None
    verdict_reason: str = ""
    touch_type: str = ""  # click | impression, as the partner reports the attributed touch
    unreadable: dict[str, str] = field(default_factory=dict)  # field → rule it broke
    notes: tuple[str, ...] = ()  # values read with a lenient rule, e.g. a decimal comma
    package: str = ""  # the app's package name, when the partner sends it
    event_params: tuple[tuple[str, str], ...] = ()  # the event's own parameters: two events may differ only here

    def identity(self, *, with_event_id: bool = True) -> list[Any]:
        """The fields that say which conversion this is: the partner's event id, the device, our click id,
        the event, its partner time and, when sent, its revenue and currency. A retry resends them as they were;
        anything else may differ between retries."""
        found: list[Any] = [
            self.partner.value, "install" if self.is_install else "event", self.event_name.lower(), self.click_id,
            self.gaid.value if self.gaid else "", self.occurred_at.isoformat() if self.occurred_at else "",
            list(self.event_params), self.partner_event_id if with_event_id else "",
        ]
        if self.revenue is not None and not self.revenue.is_zero():
            # Two purchases of one device in one second (Adjust's `created_at` and MyTracker's `mt_event_ts` are
            # whole seconds) differ by their revenue. Appended only for an amount, so a postback without one (or
            # with 0, which tells no two events apart) keeps the key it had before revenue counted, and its
            # retries still find it.
            found.append([revenue_text(self.revenue), self.currency])
        return found

    @property
    def dedupe_key(self) -> str:
        if self.partner_event_id:
            return f"{self.partner.value}:id:{self.partner_event_id}"[:128]
        # Identifying fields only: a retry that adds, drops or reorders other fields is the same event.
        digest = hashlib.sha256(orjson.dumps(self.identity())).hexdigest()[:40]
        return f"{self.partner.value}:h:{digest}"


def revenue_text(amount: Decimal) -> str:
    """An amount as its decimal value alone: 4.990, 4.99 and 0.499E1 are one amount."""
    if amount.is_zero():
        return "0"
    return format(amount.normalize(), "f")


def same_revenue(revenue: Decimal | None, currency: str, stored: str, stored_currency: str) -> bool:
    """Whether a postback's revenue may be a stored conversion's (`stored` as the conversion keeps it, "" for
    none): the same amount and currency, or either sent none (a retry that lost its revenue field)."""
    if revenue is None or not stored:
        return True
    try:
        return Decimal(stored) == revenue and stored_currency == currency
    except InvalidOperation:
        return True


# ---------- value readers ----------


def present(value: str | None) -> str | None:
    """The value, or None when it is empty, a null word or a macro the partner did not replace."""
    if value is None:
        return None
    text = value.strip()
    if not text or (len(text) <= _LONGEST_NULL and text.lower() in _NULLS) \
            or (text[0] in _MACRO_STARTS and _UNREPLACED.match(text)):
        return None
    return text


EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def parse_timestamp(value: str | None, field_name: str) -> datetime | None:
    text = present(value)
    return None if text is None else read_timestamp(text, field_name)


def _plausible(when: datetime, text: str, field_name: str) -> datetime:
    if not EARLIEST_TIME <= when < LATEST_TIME:
        raise PostbackError(field_name, "timestamp_range", f"{field_name} is not a plausible time (2000 to 2099): "
                                                           f"{text[:60]}")
    return when


def read_timestamp(text: str, field_name: str) -> datetime:
    """`parse_timestamp` of a value `present` has read: a unix time in seconds or milliseconds, or a date-time,
    between 2000 (reports start there) and 2100."""
    if text.isascii() and text.isdigit():  # the usual unix time: read as an integer, as exact as the Decimal
        whole = int(text)
        seconds_of = whole / 1000 if whole >= 100_000_000_000 else whole
        if not EARLIEST_TIME.timestamp() <= seconds_of < LATEST_TIME.timestamp():
            raise PostbackError(field_name, "timestamp_range", f"{field_name} is not a plausible time (2000 to "
                                                               f"2099): {text}")
        return datetime.fromtimestamp(seconds_of, UTC)
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is not None and number.is_finite():
        seconds = number / 1000 if abs(number) >= 100_000_000_000 else number  # ms from 1973 on
        # Compared as Decimal: 1e-400 is above zero, but a float of it is not, and was read as 1970.
        if not Decimal(int(EARLIEST_TIME.timestamp())) <= seconds < Decimal(int(LATEST_TIME.timestamp())):
            raise PostbackError(field_name, "timestamp_range", f"{field_name} is not a plausible time (2000 to "
                                                               f"2099): {text[:60]}")
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
    try:
        when = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # year 1 in a zone west of UTC
        raise PostbackError(field_name, "timestamp_range", f"{field_name} is not a plausible time (2000 to 2099): "
                                                           f"{text[:60]}") from None
    return _plausible(when, text, field_name)


def parse_revenue(value: str | None, field_name: str) -> Decimal | None:
    text = present(value)
    return None if text is None else _revenue(text, field_name)


def _revenue(text: str, field_name: str) -> Decimal:
    """`parse_revenue` of a value `present` has read."""
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
    return None if text is None else read_currency(text, field_name)


def read_currency(text: str, field_name: str) -> str:
    """`parse_currency` of a value `present` has read."""
    code = text.upper()
    if not _CURRENCY.match(code):
        raise PostbackError(field_name, "currency", f"{field_name} is not an ISO 4217 code: {text[:20]}")
    return code


def parse_flag(value: str | None) -> bool | None:
    if value is None:
        return None
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


def present_values(values: Mapping[str, str]) -> dict[str, str]:
    """The partner's fields `present` finds a value in (ours, `RESERVED_FIELDS`, left out), read once, in their
    order."""
    found: dict[str, str] = {}
    for key, value in values.items():
        if key in RESERVED_FIELDS:
            continue
        text = present(value)
        if text is not None:
            found[key] = text
    return found


def pick(found: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str | None]:
    """`Adapter.first` over `present_values`: the first name with a value."""
    for name in names:
        value = found.get(name)
        if value is not None:
            return name, value
    return (names[0] if names else ""), None


def json_object(text: str | None) -> dict[str, Any]:
    if not text or not text.lstrip().startswith("{"):
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

def tolerant(reader: Any, text: str | None, name: str, unreadable: dict[str, str]) -> Any:
    """One unreadable field must not lose the postback: it is left out and named. `text` is `present`'s."""
    if text is None:  # every reader reads nothing as None
        return None
    try:
        return reader(text, name)
    except PostbackError as exc:
        unreadable[exc.field] = exc.rule
        return None


def read_revenue(name: str, text: str | None, unreadable: dict[str, str], notes: list[str],
                  scale: Decimal | None = None) -> Decimal | None:
    """`text`: `present`'s."""
    if text is not None and "," in text and _DECIMAL_COMMA.match(text):
        text = text.replace(",", ".")
        notes.append(f"{name}:decimal_comma")
    amount = tolerant(_revenue, text, name, unreadable)
    return amount * scale if amount is not None and scale is not None else amount
