"""Postpay credit lines through the console: account managers grant, renew and settle; advertisers and agencies
see the lines of the accounts they may see, with the settlement statement and its CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import users
from adstack.accounts.models import Account, Role
from adstack.finance import service as finance
from adstack.finance.charges import apply_charge
from adstack.finance.models import CreditLine
from tests.console.support import csrf_from, post_form, register, sign_in
from tests.support import Api

USD = 1_000_000
LINES = "/console/finance/credit-lines"


def _advertiser(client: TestClient, session: Session, n: int, **overrides: str) -> int:
    assert register(client, n, **overrides).status_code == 303
    account_id = session.scalar(select(Account.id).where(Account.contact_email == f"ops{n}@example.com"))
    assert account_id is not None
    return account_id


def _account_manager(client: TestClient, session: Session, email: str) -> TestClient:
    users.create_admin(session, email=email, password="manager-password", role=Role.ACCOUNT_MANAGER)
    session.commit()
    staff = TestClient(client.app)
    assert sign_in(staff, email, "manager-password").status_code == 303
    return staff


def _singapore_today() -> date:
    # Registrations in these tests use Asia/Singapore; the period is set in the account's days.
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Singapore")).date()


def _grant(staff: TestClient, account_id: int, *, limit: str = "50", days_ago: tuple[int, int] = (30, 1)) -> str:
    """Grants a line through the form and returns its page's path."""
    today = _singapore_today()
    granted = post_form(
        staff,
        LINES,
        LINES,
        {
            "account_id": str(account_id),
            "limit": limit,
            "starts_on": (today - timedelta(days=days_ago[0])).isoformat(),
            "ends_on": (today - timedelta(days=days_ago[1])).isoformat(),
            "remarks": "contract 2024-17",
        },
    )
    assert granted.status_code == 303, granted.text[-2000:]
    location = granted.headers["location"]
    assert re.fullmatch(rf"{LINES}/\d+\?notice=created", location)
    return location.split("?")[0]


def _line_id(page: str) -> int:
    return int(page.rsplit("/", 1)[1])


def _list_row(html: str, line_id: int) -> str:
    return html.split(f'<tr data-credit-line="{line_id}"')[1].split("</tr>")[0]


def test_staff_grant_list_statement_settle_and_renew(client: TestClient, session: Session) -> None:
    account_id = _advertiser(client, session, 301, company_name="=1+2 Games Pte. Ltd.")
    staff = _account_manager(client, session, "credit301@example.org")
    assert 'id="grant"' in staff.get(LINES).text
    page = _grant(staff, account_id)
    line_id = _line_id(page)

    # Spend inside the ended period: 20 on campaign 77, 15 on campaign 78.
    during = datetime.now(UTC) - timedelta(days=10)
    for charge_id, campaign_id, amount in (("c-1", 77, 20 * USD), ("c-2", 78, 15 * USD)):
        apply_charge(
            session,
            charge_id=charge_id,
            account_id=account_id,
            campaign_id=campaign_id,
            ad_group_id=campaign_id * 10,
            creative_id=1,
            amount_micros=amount,
            kind="cpc",
            occurred_at=during,
        )
    session.commit()

    row = _list_row(staff.get(LINES).text, line_id)
    assert 'data-state="ended"' in row and "=1+2 Games Pte. Ltd." in row
    assert "$50.00" in row and '<td class="num" data-used>$35.00</td>' in row

    detail = staff.get(page).text
    assert 'id="settle-form"' in detail and 'id="renew-form"' in detail
    assert re.search(r'data-statement-campaign="77">.*?data-actual-cost>\$20\.00<', detail, re.S)
    assert re.search(r'id="statement-due">\$35\.00<', detail)
    assert f'href="{page}/statement.csv"' in detail

    exported = staff.get(f"{page}/statement.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["campaign_id"], r["actual_cost"]) for r in rows[:2]] == [("77", "20.000000"), ("78", "15.000000")]
    assert rows[0]["company_name"] == "'=1+2 Games Pte. Ltd."  # a spreadsheet must not run it as a formula
    assert {r["company_name"]: r["actual_cost"] for r in rows[2:]}["amount due"] == "35.000000"

    settled = post_form(staff, page, f"{page}/settle", {"settle_remarks": "paid by wire"})
    assert settled.status_code == 303 and settled.headers["location"] == f"{page}?notice=settled"
    assert finance.balance_micros(session, account_id) == 0
    after = staff.get(page).text
    assert 'data-status="settled"' in after and 'id="settle-form"' not in after
    again = post_form(staff, page, f"{page}/settle")
    assert again.status_code == 409 and 'data-error-for="settle"' in again.text

    renewed = post_form(
        staff, page, f"{page}/renew", {"ends_on": (_singapore_today() + timedelta(days=30)).isoformat()}
    )
    assert renewed.status_code == 303, renewed.text[-2000:]
    new_page = renewed.headers["location"].split("?")[0]
    new_html = staff.get(new_page).text
    assert 'data-status="active"' in new_html and f'href="{page}"' in new_html
    assert re.search(r"data-limit>\$50\.00<", new_html)  # the old line's limit by default
    assert f'data-renewed-as="{_line_id(new_page)}"' in staff.get(page).text


def test_advertiser_sees_only_its_own_lines_read_only(client: TestClient, session: Session) -> None:
    own = _advertiser(client, session, 311)
    stranger = TestClient(client.app)
    foreign = _advertiser(stranger, session, 312)
    staff = _account_manager(client, session, "credit311@example.org")
    own_page, foreign_page = _grant(staff, own), _grant(staff, foreign)

    listed = client.get(LINES).text
    assert f'data-credit-line="{_line_id(own_page)}"' in listed
    assert f'data-credit-line="{_line_id(foreign_page)}"' not in listed
    assert 'id="grant"' not in listed

    detail = client.get(own_page)
    assert detail.status_code == 200 and 'id="statement"' in detail.text
    assert 'id="settle-form"' not in detail.text and 'id="renew-form"' not in detail.text
    assert client.get(f"{own_page}/statement.csv").status_code == 200
    for url in (foreign_page, f"{foreign_page}/statement.csv", f"{LINES}/999999"):
        assert client.get(url).status_code == 404

    token = csrf_from(listed)
    assert client.post(f"{own_page}/settle", data={"csrf_token": token}, follow_redirects=False).status_code == 403
    assert (
        client.post(
            LINES,
            data={
                "csrf_token": token,
                "account_id": str(own),
                "limit": "999",
                "starts_on": "2030-01-01",
                "ends_on": "2030-01-31",
            },
            follow_redirects=False,
        ).status_code
        == 403
    )
    session.expire_all()
    assert len(session.scalars(select(CreditLine)).all()) == 2


def test_agency_sees_its_sub_accounts_line(client: TestClient, session: Session) -> None:
    api = Api(client, session)
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub_account = api.sub_account(agency, admin)
    other_agency = api.approved_account(admin, type="agency")
    others_sub = api.sub_account(other_agency, admin)
    staff = _account_manager(client, session, "credit321@example.org")
    sub_page, others_page = _grant(staff, sub_account), _grant(staff, others_sub)

    viewer = TestClient(client.app)
    assert sign_in(viewer, agency.email, "correct horse battery").status_code == 303
    listed = viewer.get(LINES).text
    assert f'data-credit-line="{_line_id(sub_page)}" data-account="{sub_account}"' in listed
    assert f'data-credit-line="{_line_id(others_page)}"' not in listed
    assert viewer.get(sub_page).status_code == 200
    assert viewer.get(others_page).status_code == 404


def test_refused_grants_name_the_field(client: TestClient, session: Session) -> None:
    account_id = _advertiser(client, session, 331)
    staff = _account_manager(client, session, "credit331@example.org")
    base = {"account_id": str(account_id), "starts_on": "2031-01-01", "ends_on": "2031-06-30"}
    for limit, field in (("lots", "limit"), ("", "limit"), ("0", "limit_micros"), ("2000000000", "limit")):
        refused = post_form(staff, LINES, LINES, {**base, "limit": limit})
        assert refused.status_code == 422, limit
        assert f'data-error-for="{field}"' in refused.text, limit
        assert f'name="limit" type="text" inputmode="decimal" value="{limit}"' in refused.text  # kept as typed
    backwards = post_form(staff, LINES, LINES, {**base, "limit": "10", "ends_on": "2030-12-31"})
    assert backwards.status_code == 422 and 'data-error-for="ends_on"' in backwards.text
    missing = post_form(staff, LINES, LINES, {"account_id": str(account_id), "limit": "10"})
    assert 'data-error-for="starts_on"' in missing.text and 'data-error-for="ends_on"' in missing.text

    page = _grant(staff, account_id)
    today = _singapore_today()
    overlap = post_form(
        staff,
        LINES,
        LINES,
        {
            "account_id": str(account_id),
            "limit": "10",
            "starts_on": (today - timedelta(days=5)).isoformat(),
            "ends_on": (today + timedelta(days=5)).isoformat(),
        },
    )
    assert overlap.status_code == 409 and 'data-error-for="starts_on"' in overlap.text
    bad_renewal = post_form(staff, page, f"{page}/renew", {"ends_on": "2031-12-31", "limit": "-3"})
    assert bad_renewal.status_code == 422 and 'data-error-for="limit"' in bad_renewal.text
    session.expire_all()
    assert len(session.scalars(select(CreditLine)).all()) == 1


def test_credit_line_posts_without_the_csrf_token_are_refused(client: TestClient, session: Session) -> None:
    account_id = _advertiser(client, session, 341)
    staff = _account_manager(client, session, "credit341@example.org")
    page = _grant(staff, account_id)
    refused = staff.post(
        LINES,
        data={"account_id": str(account_id), "limit": "10", "starts_on": "2031-01-01", "ends_on": "2031-01-31"},
        follow_redirects=False,
    )
    assert refused.status_code == 403 and 'data-error-status="403"' in refused.text
    for action, data in (("settle", {}), ("renew", {"ends_on": "2031-12-31"})):
        assert staff.post(f"{page}/{action}", data=data, follow_redirects=False).status_code == 403
    session.expire_all()
    lines = session.scalars(select(CreditLine)).all()
    assert len(lines) == 1 and lines[0].settled_at is None
