"""Takedowns and batch decisions: a reviewer suspends an approved account, ad group or creative, it stops
serving, and only a reviewer lifts it; staff pauses hold against the advertiser; the queue decides in batches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from adstack.accounts.models import Role
from adstack.campaigns.models import AdGroup
from tests.campaigns.helpers import ad_group, approved_ad_group, campaign, creative, ledger
from tests.console.support import csrf_from, sign_in
from tests.support import Actor, Api, expect


def _serving(api: Api, adv: Actor, group_id: int) -> dict[str, Any]:
    return expect(api.client.get(f"/api/v1/ad-groups/{group_id}", headers=adv.headers), 200)


def test_reviewer_suspends_an_ad_group_the_advertiser_cannot_lift_it_the_reviewer_does(api: Api) -> None:
    admin = api.admin()
    reviewer = api.admin(Role.REVIEWER)
    adv = api.approved_account(admin)
    ledger(api.session, adv.account_id, 100_000_000)
    group = approved_ad_group(api, adv, admin, campaign(api, adv)["id"])
    url = f"/api/v1/review/ad_group/{group['id']}"
    assert _serving(api, adv, group["id"])["serving_status"] != "suspended"

    # A reason is required, and the advertiser cannot suspend or lift anything.
    expect(api.client.post(f"{url}/suspend", headers=reviewer.headers, json={"reason": ""}), 422)
    expect(api.client.post(f"{url}/suspend", headers=adv.headers, json={"reason": "mine"}), 403)
    out = expect(
        api.client.post(
            f"{url}/suspend", headers=reviewer.headers, json={"reason": "Misleading claims in the landing page"}
        ),
        200,
    )
    assert out["review_status"] == "suspended"
    shown = _serving(api, adv, group["id"])
    assert shown["serving_status"] == "suspended"
    assert "Misleading claims in the landing page" in shown["serving_reason"]

    # The advertiser's pause and resume, resubmitting and edits do not undo it.
    base = f"/api/v1/ad-groups/{group['id']}"
    expect(api.client.patch(base, headers=adv.headers, json={"status": "paused"}), 200)
    expect(api.client.patch(base, headers=adv.headers, json={"status": "enabled"}), 200)
    expect(api.client.post(f"{base}/submit", headers=adv.headers), 409)
    edited = expect(api.client.patch(base, headers=adv.headers, json={"targeting": {"countries": ["IN"]}}), 200)
    assert edited["review_status"] == "suspended" and edited["serving_status"] == "suspended"
    expect(api.client.post(f"{url}/lift-suspension", headers=adv.headers), 403)
    # Nor can a plain approval of the queue: a suspended object is not waiting for review.
    expect(api.client.post(f"{base}/review", headers=reviewer.headers, json={"decision": "approve"}), 409)
    history = expect(api.client.get(f"/api/v1/review/history/ad_group/{group['id']}", headers=adv.headers), 200)
    assert history[-1]["action"] == "suspend" and history[-1]["reasons"] == ["Misleading claims in the landing page"]

    lifted = expect(api.client.post(f"{url}/lift-suspension", headers=reviewer.headers), 200)
    assert lifted["review_status"] == "approved"
    assert _serving(api, adv, group["id"])["serving_status"] not in ("suspended", "under_review")


def test_only_approved_objects_are_suspended_and_accounts_and_creatives_too(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    draft = ad_group(api, adv, campaign(api, adv)["id"])
    expect(
        api.client.post(f"/api/v1/review/ad_group/{draft['id']}/suspend", headers=admin.headers, json={"reason": "x"}),
        409,
    )
    expect(api.client.post("/api/v1/review/ad_group/999999/suspend", headers=admin.headers, json={"reason": "x"}), 404)
    group = approved_ad_group(api, adv, admin, campaign(api, adv, name="Second")["id"])
    made = creative(api, adv, group["id"])
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=adv.headers), 200)
    expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )
    expect(
        api.client.post(
            f"/api/v1/review/creative/{made['id']}/suspend", headers=admin.headers, json={"reason": "Counterfeit brand"}
        ),
        200,
    )
    got = expect(api.client.get(f"/api/v1/creatives/{made['id']}", headers=adv.headers), 200)
    assert (got["review_status"], got["serving_status"]) == ("suspended", "suspended")
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=adv.headers), 409)

    expect(
        api.client.post(
            f"/api/v1/review/account/{adv.account_id}/suspend",
            headers=admin.headers,
            json={"reason": "Unpaid invoices"},
        ),
        200,
    )
    served = _serving(api, adv, group["id"])
    assert (served["serving_status"], served["serving_reason"]) == (
        "account_suspended",
        "the account was suspended by the platform: Unpaid invoices",
    )
    expect(api.client.post(f"/api/v1/accounts/{adv.account_id}/submit", headers=adv.headers), 409)
    expect(api.client.post(f"/api/v1/review/account/{adv.account_id}/lift-suspension", headers=admin.headers), 200)
    assert _serving(api, adv, group["id"])["serving_status"] not in ("account_suspended", "account_under_review")


def test_a_platform_pause_is_not_undone_by_the_advertiser(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    group = approved_ad_group(api, adv, admin, campaign(api, adv)["id"])
    base = f"/api/v1/ad-groups/{group['id']}"
    expect(api.client.patch(base, headers=admin.headers, json={"status": "paused"}), 200)
    refused = expect(api.client.patch(base, headers=adv.headers, json={"status": "enabled"}), 409)
    assert refused["error"]["code"] == "paused_by_platform"
    batch = expect(
        api.client.post(
            "/api/v1/ad-groups/batch-status", headers=adv.headers, json={"ids": [group["id"]], "action": "enable"}
        ),
        200,
    )
    assert batch["results"][0]["ok"] is False
    api.session.expire_all()
    assert api.session.scalars(select(AdGroup.status).where(AdGroup.id == group["id"])).one() == "paused"
    # The advertiser's own pause and resume work as before once staff resume it.
    expect(api.client.patch(base, headers=admin.headers, json={"status": "enabled"}), 200)
    expect(api.client.patch(base, headers=adv.headers, json={"status": "paused"}), 200)
    assert expect(api.client.patch(base, headers=adv.headers, json={"status": "enabled"}), 200)["status"] == "enabled"


def _submitted_groups(api: Api, adv: Actor, count: int) -> list[dict[str, Any]]:
    camp = campaign(api, adv)
    groups = []
    for n in range(count):
        group = ad_group(api, adv, camp["id"], name=f"Batch {n}")
        expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=adv.headers), 200)
        groups.append(group)
    return groups


def test_batch_review_through_the_api(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    first, second, third = _submitted_groups(api, adv, 3)
    items = [{"object_type": "ad_group", "object_id": g["id"]} for g in (first, second)]
    expect(
        api.client.post("/api/v1/review/batch", headers=adv.headers, json={"items": items, "decision": "approve"}), 403
    )
    refused = expect(
        api.client.post("/api/v1/review/batch", headers=admin.headers, json={"items": items, "decision": "reject"}), 422
    )
    assert "reasons" in str(refused["error"])
    approved = expect(
        api.client.post("/api/v1/review/batch", headers=admin.headers, json={"items": items, "decision": "approve"}),
        200,
    )
    assert [(r["object_id"], r["ok"], r["status"]) for r in approved] == [
        (first["id"], True, "approved"),
        (second["id"], True, "approved"),
    ]
    # One that is no longer waiting fails alone; the rest are decided.
    mixed = expect(
        api.client.post(
            "/api/v1/review/batch",
            headers=admin.headers,
            json={
                "items": [
                    {"object_type": "ad_group", "object_id": first["id"]},
                    {"object_type": "ad_group", "object_id": third["id"]},
                ],
                "decision": "reject",
                "reasons": ["Wrong country"],
            },
        ),
        200,
    )
    assert [(r["ok"], r["status"]) for r in mixed] == [(False, None), (True, "rejected")]
    assert mixed[0]["error"]["code"] == "invalid_state"
    assert _serving(api, adv, third["id"])["rejection_reasons"] == "Wrong country"


def test_batch_review_and_suspension_in_the_console(api: Api) -> None:
    reviewer = api.admin(Role.REVIEWER)
    adv = api.approved_account()
    first, second = _submitted_groups(api, adv, 2)
    assert sign_in(api.client, reviewer.email, "admin-password").status_code == 303
    page = api.client.get("/console/admin/review")
    assert page.status_code == 200 and 'id="batch-review"' in page.text
    for group in (first, second):
        assert f'value="ad_group:{group["id"]}"' in page.text
    response = api.client.post(
        "/console/admin/review/batch",
        data={
            "csrf_token": csrf_from(page.text),
            "decision": "reject",
            "reasons": ["The landing page cannot be opened"],
            "items": [f"ad_group:{first['id']}", f"ad_group:{second['id']}"],
        },
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"].endswith("notice=batch_done")
    for group in (first, second):
        assert _serving(api, adv, group["id"])["review_status"] == "rejected"

    approved = approved_ad_group(api, adv, api.admin(), campaign(api, adv, name="Live")["id"])
    page = api.client.get("/console/admin/review")
    response = api.client.post(
        "/console/admin/review/suspend",
        data={
            "csrf_token": csrf_from(page.text),
            "object_type": "ad_group",
            "object_id": str(approved["id"]),
            "reason_text": "Gambling content",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = api.client.get(response.headers["location"])
    assert f'data-suspended-row="ad_group-{approved["id"]}"' in page.text
    response = api.client.post(
        f"/console/admin/review/ad_group/{approved['id']}/lift",
        data={"csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _serving(api, adv, approved["id"])["review_status"] == "approved"
