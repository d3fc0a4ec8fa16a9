from __future__ import annotations

import io

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Role
from adstack.oplog.models import ChangeEvent
from tests.support import MINIMAL_PDF, Api, expect


def test_register_submit_approve_and_company_name_kept_verbatim(api: Api) -> None:
    admin = api.admin()
    name = "Ａｃｍｅ（Beijing）Network co., LTD"
    advertiser = api.register(company_name=name)
    account = expect(api.client.get(f"/api/v1/accounts/{advertiser.account_id}", headers=advertiser.headers), 200)
    assert account["company_name"] == name
    assert account["review_status"] == "to_be_submitted"
    api.upload_document(advertiser, advertiser.account_id)
    submitted = expect(
        api.client.post(f"/api/v1/accounts/{advertiser.account_id}/submit", headers=advertiser.headers), 200
    )
    assert submitted["review_status"] == "under_review"
    assert submitted["expected_review_at"] is not None
    queue = expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
    assert [(i["object_type"], i["object_id"]) for i in queue] == [("account", advertiser.account_id)]
    approved = expect(
        api.client.post(
            f"/api/v1/accounts/{advertiser.account_id}/review", headers=admin.headers, json={"decision": "approve"}
        ),
        200,
    )
    assert approved["review_status"] == "approved"


def test_reject_needs_reason_then_edit_and_resubmit(api: Api) -> None:
    admin = api.admin()
    adv = api.register()
    url = f"/api/v1/accounts/{adv.account_id}"
    api.upload_document(adv, adv.account_id)
    expect(api.client.post(f"{url}/submit", headers=adv.headers), 200)
    error = expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "reject"}), 422)
    assert error["error"]["code"] == "validation_error"
    rejected = expect(
        api.client.post(
            f"{url}/review", headers=admin.headers, json={"decision": "reject", "reasons": ["license is blurred"]}
        ),
        200,
    )
    assert rejected["review_status"] == "rejected"
    assert rejected["rejection_reasons"] == "license is blurred"
    expect(api.client.patch(url, headers=adv.headers, json={"contact_phone": "+65 6111 1111"}), 200)
    assert expect(api.client.post(f"{url}/submit", headers=adv.headers), 200)["review_status"] == "under_review"
    history = expect(api.client.get(f"/api/v1/review/history/account/{adv.account_id}", headers=adv.headers), 200)
    assert [h["action"] for h in history] == ["submit", "reject", "submit"]


def test_editing_approved_account_sends_it_back_to_review_with_notice(api: Api) -> None:
    adv = api.approved_account()
    out = expect(
        api.client.patch(
            f"/api/v1/accounts/{adv.account_id}", headers=adv.headers, json={"company_name": "Renamed Ltd"}
        ),
        200,
    )
    assert out["review_status"] == "under_review"
    assert "back to review" in out["notice"]
    # A setting that is not reviewed does not.
    adv2 = api.approved_account()
    out2 = expect(
        api.client.patch(
            f"/api/v1/accounts/{adv2.account_id}", headers=adv2.headers, json={"time_zone": "Asia/Jakarta"}
        ),
        200,
    )
    assert out2["review_status"] == "approved" and out2["notice"] is None


def test_a_new_or_replaced_document_sends_an_approved_account_back_to_review(api: Api, session: Session) -> None:
    """Source: Mi Ads usage guide, 1.4 Edit Account Information: "After you edit again, the account will re-enter
    the review stage." The documents are what the review approved: swapping the licence kept the approval."""
    admin = api.admin()
    for replace in (True, False):
        adv = api.approved_account(admin)
        url = f"/api/v1/accounts/{adv.account_id}"
        [licence] = expect(api.client.get(f"{url}/documents", headers=adv.headers), 200)
        upload = {"file": ("other.pdf", io.BytesIO(MINIMAL_PDF + b"% another company\n"), "application/pdf")}
        if replace:
            out = expect(api.client.put(f"{url}/documents/{licence['id']}", headers=adv.headers, files=upload), 200)
        else:
            out = expect(api.client.post(f"{url}/documents", headers=adv.headers, files=upload,
                                         data={"kind": "industry_qualification"}), 201)
        assert "back to review" in out["notice"]
        assert expect(api.client.get(url, headers=adv.headers), 200)["review_status"] == "under_review"
        history = expect(api.client.get(f"/api/v1/review/history/account/{adv.account_id}", headers=adv.headers),
                         200)
        assert [h["action"] for h in history][-1] == "edit_reviewed_field"
        queue = expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
        assert ("account", adv.account_id) in [(i["object_type"], i["object_id"]) for i in queue]
        session.expire_all()
        logged = session.scalars(select(ChangeEvent).where(ChangeEvent.object_type == "account",
                                                           ChangeEvent.object_id == adv.account_id)
                                 .order_by(ChangeEvent.id.desc())).first()
        assert logged is not None and logged.operation == "update"
        assert [(c["field"], c["old"], c["new"]) for c in logged.changes] == [
            ("review_status", "approved", "under_review")]
        # Under review already, another document changes nothing more.
        again = expect(api.client.post(f"{url}/documents", headers=adv.headers, data={"kind": "other"},
                                       files={"file": ("x.pdf", io.BytesIO(MINIMAL_PDF), "application/pdf")}), 201)
        assert again["notice"] is None


def test_settlement_rules_follow_country(api: Api) -> None:
    error = expect(
        api.client.post(
            "/api/v1/auth/register",
            json=api.registration(country="IN", currency="USD", settlement_entity="Xiaomi India"),
        ),
        422,
    )
    assert error["error"]["fields"][0]["field"] == "currency"
    assert error["error"]["fields"][0]["limit"] == ["Xiaomi India/INR"]
    error = expect(api.client.post("/api/v1/auth/register", json=api.registration(country="RU")), 422)
    assert error["error"]["fields"][0] == {
        "field": "settlement_entity",
        "rule": "allowed_for_country",
        "message": "settlement entity 'Xiaomi Singapore' is not available for RU",
        "limit": ["Hong Kong iValley"],
        "actual": "Xiaomi Singapore",
    }
    api.register(country="CN", currency="CNY", settlement_entity="Xiaomi Singapore", time_zone="Asia/Shanghai")
    api.register(country="BR", currency="INR", settlement_entity="Xiaomi India")


def test_registration_field_errors_name_field_and_rule(api: Api) -> None:
    body = api.registration(company_name="x" * 201, accept_agreement=False, time_zone="Mars/Olympus")
    error = expect(api.client.post("/api/v1/auth/register", json=body), 422)["error"]
    fields = {f["field"]: f for f in error["fields"]}
    assert fields["company_name"]["rule"] == "string_too_long" and fields["company_name"]["limit"] == 200
    assert "accept_agreement" in fields and "time_zone" in fields


def test_login_and_api_keys(api: Api) -> None:
    adv = api.register(password="secret password 1")
    wrong = api.client.post("/api/v1/auth/login", json={"email": adv.email, "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    key = expect(api.client.post("/api/v1/auth/api-keys", headers=adv.headers, json={"name": "ci"}), 201)
    me = expect(api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key['key']}"}), 200)
    assert me["id"] == adv.user_id
    expect(api.client.delete(f"/api/v1/auth/api-keys/{key['id']}", headers=adv.headers), 200)
    assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401
    assert api.client.get("/api/v1/auth/me").status_code == 401


def test_agency_sees_only_its_sub_accounts(api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    other_agency = api.approved_account(admin, type="agency")
    mine = api.sub_account(agency, admin)
    theirs = api.sub_account(other_agency, admin)
    listed = {a["id"] for a in expect(api.client.get("/api/v1/accounts", headers=agency.headers), 200)}
    assert listed == {agency.account_id, mine}
    assert api.client.get(f"/api/v1/accounts/{theirs}", headers=agency.headers).status_code == 404
    assert (
        api.client.patch(f"/api/v1/accounts/{theirs}", headers=agency.headers, json={"contact_phone": "1"}).status_code
        == 404
    )


def test_advertiser_cannot_review_or_create_accounts(api: Api) -> None:
    adv = api.register()
    api.upload_document(adv, adv.account_id)
    expect(api.client.post(f"/api/v1/accounts/{adv.account_id}/submit", headers=adv.headers), 200)
    denied = api.client.post(
        f"/api/v1/accounts/{adv.account_id}/review", headers=adv.headers, json={"decision": "approve"}
    )
    assert denied.status_code == 403
    body = api.registration()
    for key in ("email", "password", "accept_agreement"):
        body.pop(key)
    assert api.client.post("/api/v1/accounts", headers=adv.headers, json=body).status_code == 403
    reviewer = api.admin(Role.REVIEWER)
    assert (
        api.client.post(
            f"/api/v1/accounts/{adv.account_id}/review", headers=reviewer.headers, json={"decision": "approve"}
        ).status_code
        == 200
    )


def test_documents_are_sniffed_and_capped(api: Api, settings) -> None:  # type: ignore[no-untyped-def]
    adv = api.register()
    url = f"/api/v1/accounts/{adv.account_id}/documents"
    pdf = b"%PDF-1.4\n" + b"0" * 1000
    ok = expect(
        api.client.post(
            url,
            headers=adv.headers,
            files={"file": ("license.pdf", pdf, "application/pdf")},
            data={"kind": "business_license"},
        ),
        201,
    )
    assert ok["content_type"] == "application/pdf" and ok["size_bytes"] == len(pdf)
    exe = b"MZ\x90\x00exe"
    fake = api.client.post(url, headers=adv.headers, files={"file": ("license.pdf", exe, "application/pdf")})
    assert fake.status_code == 422 and fake.json()["error"]["fields"][0]["rule"] == "file_type"
    big = io.BytesIO(b"%PDF-" + b"0" * (settings.max_document_bytes + 1))
    too_big = api.client.post(url, headers=adv.headers, files={"file": ("big.pdf", big, "application/pdf")})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["fields"][0]["rule"] == "max_size_bytes"
    assert len(expect(api.client.get(url, headers=adv.headers), 200)) == 1


def test_currency_is_fixed_once_the_account_holds_money(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, country="TH")  # "other countries": Xiaomi Singapore settles USD or CNY
    url = f"/api/v1/accounts/{adv.account_id}"
    expect(
        api.client.post(
            "/api/v1/finance/top-ups",
            headers=admin.headers,
            json={"account_id": adv.account_id, "amount_micros": 5_000_000},
        ),
        201,
    )
    refused = expect(api.client.patch(url, headers=adv.headers, json={"currency": "CNY"}), 422)
    assert refused["error"]["fields"][0]["rule"] == "fixed_once_funded"
