"""The operator-editable copy of the creative formats, kept in the database.

formats.py ships the rules as the guide states them. Each migrate re-seeds the table from it: new formats are
added, formats the file dropped are removed, and every row's rules become the shipped ones with the operator's
edits laid over them again. An edit that no longer fits the shipped rules (its rule or attribute is gone, or the
result is not a valid rule) is dropped, so a release can never leave a format unreadable.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from adstack.creatives import formats
from adstack.creatives.formats import FormatSpec
from adstack.creatives.models import CreativeFormatRules
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

CREATIVE_FORMAT = "creative_format"


def apply_edits(shipped: FormatSpec, edits: dict[str, Any]) -> tuple[FormatSpec, list[FieldError]]:
    """The shipped spec with each edit laid over it, and a refusal for every edit that does not fit."""
    data = shipped.model_dump(mode="json")
    problems: list[FieldError] = []
    for rule_name, attributes in edits.items():
        field = f"edits.{rule_name}"
        if rule_name not in formats.RULE_FIELDS:
            problems.append(FieldError(field=field, rule="enum", message="not a rule of creative formats",
                                       limit=list(formats.RULE_FIELDS), actual=rule_name))
            continue
        rule = data.get(rule_name)
        if rule is None:
            problems.append(FieldError(field=field, rule="not_in_format", message="this format has no such rule",
                                       limit=[r for r in formats.RULE_FIELDS if data.get(r) is not None],
                                       actual=rule_name))
            continue
        if not isinstance(attributes, dict):
            problems.append(FieldError(field=field, rule="type", message="an object of attributes",
                                       actual=str(attributes)[:100]))
            continue
        candidate = {**rule, **attributes}
        try:
            checked = FormatSpec.model_validate({**data, rule_name: candidate})
        except ValidationError as exc:
            for error in exc.errors():
                location = ".".join(str(part) for part in error["loc"][1:]) or rule_name
                problems.append(FieldError(field=f"{field}.{location}", rule=error["type"], message=error["msg"],
                                           limit=(error.get("ctx") or {}).get("le"), actual=error.get("input")))
            continue
        new_rule = getattr(checked, rule_name)
        if new_rule.min_count > new_rule.max_count:
            problems.append(FieldError(field=f"{field}.min_count", rule="max", message="min_count over max_count",
                                       limit=new_rule.max_count, actual=new_rule.min_count))
            continue
        data[rule_name] = candidate
    return FormatSpec.model_validate(data), problems


def seed(session: Session) -> None:
    """Re-seed from formats.py, keeping the operator's edits that still fit."""
    rows = {row.code: row for row in session.scalars(select(CreativeFormatRules))}
    for code, row in rows.items():
        if code not in formats.SPECS_BY_CODE:
            session.delete(row)
    for spec in formats.FORMAT_SPECS:
        existing = rows.get(spec.code)
        edits = dict(existing.edits or {}) if existing is not None else {}
        effective, problems = apply_edits(spec, edits)
        for problem in problems:
            edits.pop(problem.field.split(".")[1], None)
        data = effective.model_dump(mode="json")
        if existing is None:
            session.add(CreativeFormatRules(code=spec.code, spec=data, edits=edits))
        elif existing.spec != data or existing.edits != edits:
            existing.spec, existing.edits = data, edits
    session.flush()


def _spec_of(row: CreativeFormatRules) -> FormatSpec | None:
    try:
        return FormatSpec.model_validate(row.spec)
    except ValidationError:  # a row written by another release: the shipped rules until the next migrate
        return formats.get_spec(row.code)


def all_specs(session: Session) -> tuple[FormatSpec, ...]:
    """The rules in force, in formats.py's order; a format not yet seeded has its shipped rules."""
    rows = {row.code: row for row in session.scalars(select(CreativeFormatRules))}
    out = []
    for shipped in formats.FORMAT_SPECS:
        row = rows.get(shipped.code)
        out.append((_spec_of(row) if row is not None else None) or shipped)
    return tuple(out)


def get_spec(session: Session, code: str) -> FormatSpec | None:
    shipped = formats.get_spec(code)
    if shipped is None:
        return None
    row = session.get(CreativeFormatRules, code)
    return (_spec_of(row) if row is not None else None) or shipped


def specs_for_placement(session: Session, placement_type: str) -> list[FormatSpec]:
    return formats.formats_for_placement(placement_type, all_specs(session))


def edits_of(session: Session, code: str) -> dict[str, Any]:
    row = session.get(CreativeFormatRules, code)
    return dict(row.edits or {}) if row is not None else {}


def edit_format(session: Session, principal: Principal, code: str, edits: dict[str, Any]) -> FormatSpec:
    """Replace the operator's edits of one format; {} restores the shipped rules. Platform admins only."""
    if not principal.can_manage_accounts:
        raise Forbidden("only platform admins edit creative format rules")
    shipped = formats.get_spec(code)
    if shipped is None:
        raise NotFound(f"creative format {code!r} not found")
    effective, problems = apply_edits(shipped, edits)
    if problems:
        raise ValidationFailed(f"{problems[0].field}: {problems[0].message}", fields=problems)
    row = session.get(CreativeFormatRules, code)
    before = {"spec": row.spec, "edits": row.edits} if row is not None else None
    data = effective.model_dump(mode="json")
    if row is None:
        row = CreativeFormatRules(code=code, spec=data, edits=edits)
        session.add(row)
    else:
        row.spec, row.edits = data, dict(edits)
    row.edited_by_user_id = principal.user_id
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=CREATIVE_FORMAT,
                 object_id=None, object_name=code, before=before, after={"spec": data, "edits": edits})
    return effective
