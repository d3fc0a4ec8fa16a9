"""Helpers for driving the console over HTTP the way a browser's forms do."""

from __future__ import annotations

import io
import random
import re

from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image

CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_PATTERN.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def png_bytes(width: int, height: int, *, noise: bool = False) -> bytes:
    """A real PNG; with noise it compresses badly, so size can be pushed over a limit."""
    image = Image.new("RGB", (width, height), (245, 106, 0))
    if noise:
        image = Image.frombytes("RGB", (width, height), random.Random(width * height).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def registration_form(n: int, **overrides: str) -> dict[str, str]:
    form = {
        "type": "advertiser",
        "company_name": f"Example Games (Singapore) Pte. Ltd. {n}",
        "contact_name": "Li Wei",
        "contact_email": f"ops{n}@example.com",
        "contact_phone": "+65 6000 0000",
        "country": "ID",
        "settlement": "Xiaomi Singapore|USD",
        "time_zone": "Asia/Singapore",
        "email": f"user{n}@example.com",
        "password": "correct horse battery",
        "accept_agreement": "on",
        "document_kind": "business_license",
    }
    form.update(overrides)
    return form


def register(client: TestClient, n: int, **overrides: str) -> Response:
    """Register, then sign in: registration answers alike for every address and starts no session."""
    page = client.get("/console/register")
    form = {**registration_form(n, **overrides), "csrf_token": csrf_from(page.text)}
    response = client.post(
        "/console/register",
        data=form,
        files={"document": ("licence.png", png_bytes(40, 40), "image/png")},
        follow_redirects=False,
    )
    if response.status_code == 303:
        sign_in(client, form["email"], form["password"])
    return response


def sign_in(client: TestClient, email: str, password: str) -> Response:
    page = client.get("/console/sign-in")
    return client.post(
        "/console/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )


def post_form(client: TestClient, page_url: str, action: str, data: dict[str, str] | None = None) -> Response:
    """Open a page, take its CSRF token, and post a form to `action` as the browser would."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text[:500]
    return client.post(action, data={**(data or {}), "csrf_token": csrf_from(page.text)}, follow_redirects=False)
