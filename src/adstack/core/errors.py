"""Domain errors. Services raise these; the API turns them into one JSON error shape.

Shape: {"error": {"code": "...", "message": "...", "fields": [{"field", "rule", "limit", "actual"}]}}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class FieldError:
    field: str
    rule: str
    message: str = ""
    limit: Any = None
    actual: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


class DomainError(Exception):
    code = "error"
    status = 400
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(self, message: str, *, fields: list[FieldError] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or []
        if code:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = [f.as_dict() for f in self.fields]
        return {"error": body}


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422

    @classmethod
    def single(cls, field: str, rule: str, message: str, *, limit: Any = None, actual: Any = None) -> ValidationFailed:
        return cls(message, fields=[FieldError(field=field, rule=rule, message=message, limit=limit, actual=actual)])


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Unauthenticated(DomainError):
    code = "unauthenticated"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


class InvalidState(DomainError):
    """The object is in a state where the operation is not allowed (e.g. approving a draft)."""

    code = "invalid_state"
    status = 409


class Unavailable(DomainError):
    """A store the request needs does not answer (e.g. Redis): briefly unavailable, not broken."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415


# ---------- the error body as OpenAPI documents it ----------

class FieldErrorBody(BaseModel):
    field: str = Field(description="The field at fault, dotted for nested ones (e.g. `targeting.countries.0`).")
    rule: str = Field(description="The rule it broke, e.g. `max_length`, `exists`, `active`.")
    message: str | None = None
    limit: Any = Field(default=None, description="The limit the value broke, where the rule has one.")
    actual: Any = Field(default=None, description="The value that broke it, where it helps.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable, e.g. `validation_error`, `not_found`, `conflict`.")
    message: str
    fields: list[FieldErrorBody] | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 503 answer has this shape."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (e.g. a body that is not JSON), or a rule the request breaks",
    401: "No credentials, or credentials that are invalid or expired",
    403: "Signed in, but not allowed to do this",
    404: "No such object, or not one the caller may see",
    409: "Conflicts with the object's state or with existing data",
    413: "The request body exceeds the route's limit",
    415: "The body is not in a format the route takes (e.g. a binary file where a text file is expected)",
    422: "Invalid fields: each names the field, the rule and the limit",
    429: "Too many attempts; retry after `Retry-After` seconds",
    503: "Briefly unavailable (database, event store or Redis busy); retry after `Retry-After` seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses=` entries for these error statuses, each with the error body's schema."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}
