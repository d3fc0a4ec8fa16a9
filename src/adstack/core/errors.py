"""Domain errors. Services raise these; the API turns them into one JSON error shape.

Shape: {"error": {"code": "...", "message": "...", "fields": [{"field", "rule", "limit", "actual"}]}}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
