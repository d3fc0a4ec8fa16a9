"""/docs is Swagger UI from our own origin: no script, style or image from another host."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from adstack.app import SWAGGER_UI_DIR


def test_docs_reference_no_external_host(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "://" not in html and "//cdn" not in html, html
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert references and all(ref.startswith("/") and not ref.startswith("//") for ref in references), references
    assert '"validatorUrl": null' in html
    assert client.get("/redoc").status_code == 404  # ReDoc would load from CDNs


def test_swagger_ui_assets_are_served_locally(client: TestClient) -> None:
    assert (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file(), "run scripts/setup.sh to install swagger-ui-dist"
    for name, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ):
        answer = client.get(f"/docs/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"], name
    assert client.get("/openapi.json").status_code == 200
