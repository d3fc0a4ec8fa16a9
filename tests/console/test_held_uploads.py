"""What a refused registration keeps is bounded: anyone may post the form, so only documents are held, only
within the registration limit, and only up to caps per visitor and in all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adstack.app import create_app
from adstack.core.settings import Settings
from tests.console.support import csrf_from, png_bytes, registration_form
from tests.console.test_registration_form import KEPT


def _held(settings: Settings) -> list[Path]:
    folder = settings.data_dir / "held-uploads"
    return [p for p in folder.iterdir() if p.suffix != ".json"] if folder.is_dir() else []


def _refused(client: TestClient, n: int, files: dict[str, tuple[str, bytes, str]]):
    token = csrf_from(client.get("/console/register").text)
    form = {**registration_form(n), "password": "x", "csrf_token": token}  # too short: refused
    return client.post("/console/register", data=form, files=files, follow_redirects=False)


@pytest.fixture
def make_client(settings: Settings) -> Iterator[object]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> tuple[TestClient, Settings]:
        live = settings.model_copy(update=overrides)
        client = TestClient(create_app(live), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client, live

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_files_that_are_not_documents_are_not_held(client: TestClient, settings: Settings):
    junk = os.urandom(256 * 1024)
    for n in range(3):
        answer = _refused(client, n, {"document": ("a.pdf", junk, "application/pdf"),
                                      "shop_screenshot": ("b.png", junk, "image/png")})
        assert answer.status_code == 422
        assert 'data-error-for="document"' in answer.text and 'data-kept="document"' not in answer.text
    assert _held(settings) == []


def test_nothing_is_held_past_the_registration_limit(make_client):
    client, live = make_client(rate_limit_register_ip="2/hour")
    statuses = [_refused(client, n, {"document": ("a.png", png_bytes(20, 20), "image/png")}).status_code
                for n in range(4)]
    assert statuses == [422, 422, 429, 429]
    assert len(_held(live)) == 2


def test_a_visitor_holds_at_most_its_cap(make_client):
    client, live = make_client(held_upload_files_per_visitor=2)
    pages = [_refused(client, n, {"document": ("a.png", png_bytes(20, 20), "image/png")}) for n in range(4)]
    assert [bool(KEPT.search(p.text)) for p in pages] == [True, True, False, False]
    assert len(_held(live)) == 2
    # A file already held stays held when the form comes back with its reference.
    reference = KEPT.search(pages[0].text)
    assert reference is not None
    token = csrf_from(client.get("/console/register").text)
    again = client.post("/console/register", data={**registration_form(9), "password": "x", "csrf_token": token,
                                                   "document_ref": reference.group(1)}, follow_redirects=False)
    assert KEPT.search(again.text) and KEPT.search(again.text).group(1) == reference.group(1)  # type: ignore[union-attr]


def test_a_visitor_holds_at_most_its_bytes(make_client):
    big = png_bytes(300, 300, noise=True)
    client, live = make_client(held_upload_bytes_per_visitor=len(big) * 2 + 10)
    for n in range(4):
        _refused(client, n, {"document": ("a.png", big, "image/png")})
    assert len(_held(live)) == 2


def test_everyone_together_holds_at_most_the_total(make_client):
    client, live = make_client(held_upload_files_total=3, held_upload_files_per_visitor=100)
    for n in range(2):
        _refused(client, n, {"document": ("a.png", png_bytes(20, 20), "image/png"),
                             "shop_screenshot": ("b.png", png_bytes(21, 21), "image/png")})
    assert len(_held(live)) == 3
    big = png_bytes(200, 200, noise=True)
    client2, live2 = make_client(held_upload_bytes_total=len(big) + 10, held_upload_bytes_per_visitor=10**9,
                                 data_dir=live.data_dir.parent / "other")
    for n in range(3):
        _refused(client2, n, {"document": ("a.png", big, "image/png")})
    assert len(_held(live2)) == 1
