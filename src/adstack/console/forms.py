"""Reading HTML forms into the API's pydantic schemas, and turning refusals into per-field messages."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from adstack.core.errors import DomainError, FieldError, ValidationFailed
from adstack.core.http import validation_fields
from adstack.core.money import to_micros

SchemaT = TypeVar("SchemaT", bound=BaseModel)

MAX_FORM_TEXT = 10_000


class FormErrors(dict[str, list[dict[str, Any]]]):
    """Field name -> refusals (rule, limit, actual, message), as the API would report them."""

    def add(self, field: str, rule: str, message: str = "", *, limit: Any = None, actual: Any = None) -> None:
        """Kept under the field without list positions ("materials.images.1" -> "materials.images"), so the
        message shows beside the input; the full name stays in the item."""
        item = {"field": field, "rule": rule, "message": message, "limit": limit, "actual": actual}
        self.setdefault(re.sub(r"(\.\d+)+$", "", field), []).append(item)

    def first(self, field: str) -> dict[str, Any] | None:
        items = self.get(field)
        return items[0] if items else None

    @classmethod
    def from_validation(cls, exc: ValidationError) -> FormErrors:
        errors = cls()
        for item in validation_fields(list(exc.errors())):
            errors.add(item["field"], item["rule"], item.get("message", ""), limit=item.get("limit"))
        return errors

    @classmethod
    def from_domain(cls, exc: DomainError, *, default_field: str = "form") -> FormErrors:
        errors = cls()
        for item in exc.fields:
            errors.add(item.field, item.rule, item.message or exc.message, limit=item.limit, actual=item.actual)
        if not exc.fields:
            errors.add(default_field, exc.code, exc.message)
        return errors


# While a form is read inside `collecting()`, a badly typed amount or number is noted here and read as empty,
# so the page can show every refusal at once instead of the first one.
_collector: ContextVar[FormErrors | None] = ContextVar("form_errors_collector", default=None)


@contextmanager
def collecting() -> Iterator[FormErrors]:
    errors = FormErrors()
    token = _collector.set(errors)
    try:
        yield errors
    finally:
        _collector.reset(token)


def _refuse(exc: ValidationFailed) -> None:
    errors = _collector.get()
    if errors is None:
        raise exc
    for item in exc.fields:
        errors.add(item.field, item.rule, item.message or exc.message, limit=item.limit, actual=item.actual)


def merge(typed: FormErrors, validated: FormErrors) -> FormErrors:
    """Errors of typed values first; a schema's complaint about the same input (its `_micros` twin read as empty)
    is left out, so each input shows one message."""
    merged = FormErrors()
    for items in typed.values():
        for item in items:
            merged.add(item["field"], item["rule"], item["message"], limit=item["limit"], actual=item["actual"])
    flagged = {key.removesuffix("_micros") for key in typed}
    for key, items in validated.items():
        if key.removesuffix("_micros") in flagged:
            continue
        for item in items:
            merged.add(item["field"], item["rule"], item["message"], limit=item["limit"], actual=item["actual"])
    return merged


def text(form: FormData | Mapping[str, Any], name: str, default: str = "") -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return default
    return value.strip()[:MAX_FORM_TEXT]


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip()[:MAX_FORM_TEXT] for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    if isinstance(value, UploadFile) and value.filename:
        return value
    return None


def uploads(form: FormData, name: str) -> list[UploadFile]:
    return [v for v in form.getlist(name) if isinstance(v, UploadFile) and v.filename]


def checkbox(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "true", "1", "yes")


# A comma or a space only separates thousands (one kind per amount, groups of three digits); the decimal mark is a
# point. Dropping any comma read a decimal comma ("1,5") as fifteen.
# The first group has no leading zero: "0,015" is a decimal comma, not fifteen.
_GROUPED = re.compile(r"[1-9]\d{0,2}(?P<sep>[, ])\d{3}(?:(?P=sep)\d{3})*(?:\.\d*)?")


def money(form: FormData, name: str, *, required: bool = False) -> int | None:
    """A decimal amount typed by a person ("12.50", "1,000", "1,500.25") into integer micros."""
    typed = text(form, name)
    if not typed:
        if required:
            _refuse(ValidationFailed.single(name, "required", "an amount is required"))
        return None
    if ("," in typed or " " in typed) and not _GROUPED.fullmatch(typed):
        _refuse(ValidationFailed.single(
            name, "decimal", "not a number: the decimal mark is a point, and a comma only separates groups of "
            "three digits", actual=typed))
        return None
    raw = typed.replace(",", "").replace(" ", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        _refuse(ValidationFailed.single(name, "decimal", "not a number", actual=raw))
        return None
    if not value.is_finite() or value < 0 or value > Decimal(10**9):
        _refuse(ValidationFailed.single(name, "range", "the amount is out of range", limit=[0, 10**9], actual=raw))
        return None
    return to_micros(value)


def integer(form: FormData | Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = 2**63 - 1
            ) -> int | None:
    raw = text(form, name)
    if not raw:
        return None
    if not raw.isdecimal() or not minimum <= int(raw) <= maximum:
        _refuse(ValidationFailed(
            "not a valid number", fields=[FieldError(field=name, rule="integer", limit=[minimum, maximum], actual=raw)]
        ))
        return None
    return int(raw)


def parse(schema: type[SchemaT], data: Mapping[str, Any]) -> SchemaT:
    """Validate like the API does; raises pydantic's ValidationError for the page to show per field."""
    return schema.model_validate(dict(data))
