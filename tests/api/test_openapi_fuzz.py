"""Fuzz every operation in the OpenAPI document: whatever the input, the answer is never a 5xx."""

from __future__ import annotations

import os

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.support import Api

MAX_EXAMPLES = int(os.environ.get("ADSTACK_FUZZ_EXAMPLES", "12"))
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_no_operation_answers_5xx(client: TestClient, api: Api) -> None:
    # The client fixture has entered the app's lifespan, so background services are running.
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    admin = api.admin()
    actors = (admin, api.approved_account(admin))
    failures: list[str] = []
    operations = 0

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            for actor in actors:
                response = case.call(headers={**(case.headers or {}), **actor.headers})
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} as {actor.email} -> "
                                    f"{response.status_code}: {response.text[:300]}")

        fuzz()

    assert operations > 10
    assert failures == [], "\n".join(sorted(set(failures))[:30])
