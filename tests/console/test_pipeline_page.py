"""The event pipeline page: platform staff see each consumer's lag; advertisers do not reach it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.accounts import users
from tests.console.support import register, sign_in


def test_staff_see_the_lag_of_every_consumer(client: TestClient, session: Session) -> None:
    users.create_admin(session, email="ops-admin@example.org", password="admin-password-long")
    session.commit()
    staff = TestClient(client.app)
    sign_in(staff, "ops-admin@example.org", "admin-password-long")
    pipeline = client.app.state.pipeline  # type: ignore[attr-defined]
    pipeline.stop()  # nothing applies the log while the page is read
    # Nor attribution, whose worker first catches the touchpoints consumer up to its watermark.
    client.app.state.postback_worker.stop()  # type: ignore[attr-defined]
    pipeline.append_many([{"id": "imp:waiting", "k": "imp", "ts": 1, "a": 1, "t": "x"}])
    page = staff.get("/console/admin/pipeline")
    assert page.status_code == 200 and 'id="pipeline-consumers"' in page.text
    for consumer in ("billing", "touchpoints", "events"):
        row = page.text.split(f'data-consumer="{consumer}"')[1].split("</tr>")[0]
        assert "<td>1</td>" in row  # the record appended above waits for each of them
    assert 'href="/console/admin/pipeline"' in page.text

    register(client, 77)
    assert client.get("/console/admin/pipeline").status_code in (403, 404)
    assert 'href="/console/admin/pipeline"' not in client.get("/console/").text
