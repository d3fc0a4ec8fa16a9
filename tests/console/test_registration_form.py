"""A refused registration keeps what was typed: every field but the password, and the chosen documents by
reference, so the next attempt needs only the correction."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Account, AccountDocument
from adstack.core.settings import Settings
from tests.console.support import csrf_from, png_bytes, registration_form

KEPT = re.compile(r'name="document_ref" value="([^"]+)"')


def _post(client: TestClient, form: dict[str, str], files: dict[str, tuple[str, bytes, str]] | None = None):
    token = csrf_from(client.get("/console/register").text)
    return client.post(
        "/console/register", data={**form, "csrf_token": token}, files=files or {}, follow_redirects=False
    )


def test_a_refused_registration_keeps_its_fields_and_document_but_not_the_password(
    client: TestClient, session: Session, settings: Settings
):
    form = registration_form(7, password="short", document_kind="industry_qualification")
    refused = _post(client, form, {"document": ("licence.png", png_bytes(40, 40), "image/png")})
    assert refused.status_code == 422
    page = refused.text
    assert 'data-error-for="password"' in page
    assert form["company_name"] in page and form["contact_email"] in page and form["email"] in page
    assert re.search(r'<option value="industry_qualification" selected', page)
    assert "short" not in re.findall(r'<input id="password"[^>]*>', page)[0]
    assert 'data-kept="document"' in page and "licence.png" in page
    reference = KEPT.search(page)
    assert reference, "the chosen document is not kept"

    # The second attempt sends only the correction and the kept reference: no file is chosen again.
    accepted = _post(client, {**form, "password": "correct horse battery", "document_ref": reference.group(1)})
    assert accepted.status_code == 303, accepted.text[-1500:]
    account = session.scalars(select(Account).where(Account.company_name == form["company_name"])).one()
    documents = session.scalars(select(AccountDocument).where(AccountDocument.account_id == account.id)).all()
    assert [(d.filename, d.kind, d.content_type) for d in documents] == [
        ("licence.png", "industry_qualification", "image/png")
    ]
    # Once used, the held copy is gone: the account's document is the only one kept.
    assert not any((settings.data_dir / "held-uploads").iterdir())


def test_an_unknown_reference_keeps_nothing(client: TestClient):
    form = registration_form(8)
    refused = _post(client, {**form, "document_ref": "not-a-held-file"})
    assert refused.status_code == 422
    assert 'data-error-for="document"' in refused.text
    assert 'data-kept="document"' not in refused.text
