"""Batch mutate over campaigns, ad groups and creatives, as Google Ads' mutate does: each operation in its
own savepoint; `partial_failure` keeps the ones that worked, otherwise one failure undoes all;
`validate_only` runs every rule and then undoes everything."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.campaigns import service
from adstack.campaigns.enums import StatusAction
from adstack.campaigns.models import (
    AdGroupCreate,
    AdGroupUpdate,
    CampaignCreate,
    CampaignUpdate,
    MutateIn,
    MutateOperation,
    MutateResult,
)
from adstack.core.errors import DomainError, FieldError, ValidationFailed
from adstack.core.http import validation_fields

# Body fields that may carry a temporary (negative) id of an object created earlier in the same batch.
_REFERENCE_FIELDS = ("campaign_id", "ad_group_id")


class BatchFailed(ValidationFailed):
    """An all-or-nothing batch in which an operation failed: nothing was written."""

    code = "batch_failed"


class _OperationError(Exception):
    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("message", ""))
        self.error = error


def _parse(model: type[BaseModel], body: dict[str, Any] | None) -> Any:
    try:
        return model.model_validate(body or {})
    except ValidationError as exc:
        fields = [dict(f, field=f"body.{f['field']}") for f in validation_fields(list(exc.errors()))]
        raise _OperationError({"code": "validation_error", "message": "the operation body has invalid fields",
                               "fields": fields}) from None


def _domain_error(exc: DomainError) -> dict[str, Any]:
    error = exc.as_dict()["error"]
    if error.get("fields"):
        error["fields"] = [dict(f, field=f"body.{f['field']}") if f["field"] != "id" else f for f in error["fields"]]
    return error


def _resolve(value: int | None, temp_ids: dict[int, int], field: str) -> int | None:
    if value is None or value > 0:
        return value
    if value in temp_ids:
        return temp_ids[value]
    raise _OperationError({"code": "validation_error", "message": f"{field} {value} names no earlier create",
                           "fields": [FieldError(field, "temporary_id", "no earlier create has this temporary id",
                                                 actual=value).as_dict()]})


def _require_id(op: MutateOperation, temp_ids: dict[int, int]) -> int:
    object_id = _resolve(op.id, temp_ids, "id")
    if object_id is None:
        raise _OperationError({"code": "validation_error", "message": f"{op.action} needs an id",
                               "fields": [FieldError("id", "required", f"{op.action} needs an id").as_dict()]})
    return object_id


def _run(session: Session, principal: Principal, op: MutateOperation, temp_ids: dict[int, int]) -> int:
    body = dict(op.body or {})
    for field in _REFERENCE_FIELDS:
        if isinstance(body.get(field), int) and body[field] < 0:
            body[field] = _resolve(body[field], temp_ids, f"body.{field}")
    if op.action == "create":
        if op.id is not None and op.id > 0:
            raise _OperationError({"code": "validation_error", "message": "create takes no id, or a negative one",
                                   "fields": [FieldError("id", "temporary_id", "use a negative temporary id",
                                                         actual=op.id).as_dict()]})
        created = _create(session, principal, op.object_type, body)
        if op.id is not None:
            temp_ids[op.id] = created
        return created
    object_id = _require_id(op, temp_ids)
    if op.action == "update":
        return _update(session, principal, op.object_type, object_id, body)
    return _set_status(session, principal, op.object_type, object_id, StatusAction(op.action))


def _create(session: Session, principal: Principal, object_type: str, body: dict[str, Any]) -> int:
    if object_type == "campaign":
        return service.create_campaign(session, principal, _parse(CampaignCreate, body)).id
    if object_type == "ad_group":
        return service.create_ad_group(session, principal, _parse(AdGroupCreate, body)).id
    from adstack.creatives import models as creative_models
    from adstack.creatives import service as creatives

    return int(creatives.create_creative(session, principal, _parse(creative_models.CreativeCreate, body)).id)


def _update(session: Session, principal: Principal, object_type: str, object_id: int, body: dict[str, Any]) -> int:
    if object_type == "campaign":
        return service.update_campaign(session, principal, object_id, _parse(CampaignUpdate, body))[0].id
    if object_type == "ad_group":
        return service.update_ad_group(session, principal, object_id, _parse(AdGroupUpdate, body))[0].id
    from adstack.creatives import models as creative_models
    from adstack.creatives import service as creatives

    result = creatives.update_creative(session, principal, object_id, _parse(creative_models.CreativeUpdate, body))
    creative = result[0] if isinstance(result, tuple) else result
    return int(creative.id)


_STATUS_OF_ACTION = {StatusAction.ENABLE: "enabled", StatusAction.PAUSE: "paused", StatusAction.DELETE: "deleted"}


def _set_status(session: Session, principal: Principal, object_type: str, object_id: int,
                action: StatusAction) -> int:
    if object_type == "campaign":
        return service.set_campaign_status(session, principal, object_id, action).id
    if object_type == "ad_group":
        return service.set_ad_group_status(session, principal, object_id, action).id
    from adstack.creatives import service as creatives

    return int(creatives.set_creative_status(session, principal, object_id, _STATUS_OF_ACTION[action]).id)


def mutate(session: Session, principal: Principal, request: MutateIn) -> list[MutateResult]:
    """Run the operations in order. Raises BatchFailed (nothing written) when one fails and
    partial_failure is off; otherwise returns one result per operation."""
    results: list[MutateResult] = []
    temp_ids: dict[int, int] = {}
    batch = session.begin_nested()
    for index, op in enumerate(request.operations):
        try:
            with session.begin_nested():
                object_id = _run(session, principal, op, temp_ids)
            results.append(MutateResult(index=index, object_type=op.object_type, action=op.action, ok=True,
                                        id=None if request.validate_only else object_id))
        except _OperationError as exc:
            results.append(MutateResult(index=index, object_type=op.object_type, action=op.action, ok=False,
                                        error=exc.error))
        except DomainError as exc:
            results.append(MutateResult(index=index, object_type=op.object_type, action=op.action, ok=False,
                                        error=_domain_error(exc)))
    failed = [r for r in results if not r.ok]
    if request.validate_only or (failed and not request.partial_failure):
        batch.rollback()
    else:
        batch.commit()
    if failed and not request.partial_failure:
        fields = []
        for result in failed:
            error = result.error or {}
            prefix = f"operations.{result.index}"
            fields.extend([dict(f, field=f"{prefix}.{f['field']}") for f in error.get("fields", [])]
                          or [{"field": prefix, "rule": error.get("code", "error"), "message": error.get("message")}])
        raise BatchFailed(f"{len(failed)} of {len(results)} operations failed; nothing was written",
                          fields=[FieldError(**f) for f in fields])
    return results
