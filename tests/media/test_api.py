"""Uploads are identified from their bytes, capped while streaming, and scoped by tenant."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adstack.app import create_app
from adstack.core.settings import Settings
from tests.media.samples import image_bytes, jpeg, mp4, png
from tests.support import Actor, Api, expect


def upload(api: Api, actor: Actor, content: bytes, filename: str, **fields: str | int) -> dict:
    response = api.client.post(
        "/api/v1/media",
        headers=actor.headers,
        files={"file": (filename, content)},
        data={k: str(v) for k, v in fields.items()},
    )
    return {"status": response.status_code, "body": response.json()}


def field_error(body: dict) -> dict:
    [error] = body["error"]["fields"]
    return error


def test_png_is_measured_from_its_pixels_and_served_by_its_key(api: Api) -> None:
    adv = api.approved_account()
    content = png(1200, 628)
    out = upload(api, adv, content, "banner.png")
    assert out["status"] == 201, out
    asset = out["body"]
    assert (asset["kind"], asset["format"], asset["width"], asset["height"]) == ("image", "png", 1200, 628)
    assert asset["size_bytes"] == len(content)
    assert asset["size_kb"] == -(-len(content) // 1024)
    assert asset["sha256"] == hashlib.sha256(content).hexdigest()
    assert asset["account_id"] == adv.account_id and asset["original_filename"] == "banner.png"

    served = api.client.get(asset["url"])  # no sign-in: ad devices load it
    assert served.status_code == 200
    assert served.content == content
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert api.client.get("/media/" + "x" * 32).status_code == 404


def test_client_names_and_types_are_not_trusted(api: Api) -> None:
    adv = api.approved_account()
    # A JPEG named .png with a PNG content type is stored as the JPEG it is.
    response = api.client.post(
        "/api/v1/media", headers=adv.headers, files={"file": ("photo.png", jpeg(600, 500), "image/png")}
    )
    assert expect(response, 201)["format"] == "jpeg"

    # A PNG renamed .mp4 claims to be a video: refused, naming what it really is.
    renamed = upload(api, adv, png(64, 64), "clip.mp4")
    assert renamed["status"] == 422
    error = field_error(renamed["body"])
    assert (error["field"], error["rule"], error["actual"], error["limit"]) == ("file", "file_format", "png", "video")

    # The same when the client says kind=video explicitly.
    declared = upload(api, adv, png(64, 64), "upload.bin", kind="video")
    assert field_error(declared["body"])["actual"] == "png"

    # Neither an image nor a video at all.
    text = upload(api, adv, b"just some text, not an image\n" * 20, "notes.jpg")
    assert text["status"] == 422
    assert field_error(text["body"])["rule"] == "file_format"

    # An image format Pillow knows but no ad format accepts.
    webp = upload(api, adv, image_bytes(32, 32, "WEBP"), "a.webp")
    assert (field_error(webp["body"])["rule"], field_error(webp["body"])["actual"]) == ("file_format", "webp")

    # A PNG cut short is refused as corrupt rather than stored.
    whole = png(300, 300, noise=True)
    truncated = upload(api, adv, whole[: len(whole) // 2], "cut.png")
    assert (truncated["status"], field_error(truncated["body"])["rule"]) == (422, "corrupt_file")

    empty = upload(api, adv, b"", "empty.png")
    assert (empty["status"], field_error(empty["body"])["rule"]) == (422, "required")


def test_mp4_duration_codec_and_dimensions_come_from_the_container(api: Api) -> None:
    adv = api.approved_account()
    out = upload(api, adv, mp4(3.0, 128, 72), "promo.mov")  # the name says MOV; the content is MP4
    assert out["status"] == 201, out
    video = out["body"]
    assert (video["kind"], video["format"], video["width"], video["height"]) == ("video", "mp4", 128, 72)
    assert video["duration_ms"] == 3000
    assert video["video_codec"] == "AVC"
    served = api.client.get(video["url"])
    assert served.headers["content-type"] == "video/mp4"


def test_gif_is_accepted(api: Api) -> None:
    adv = api.approved_account()
    out = upload(api, adv, image_bytes(640, 100, "GIF"), "banner.gif")
    assert (out["status"], out["body"]["format"], out["body"]["width"]) == (201, "gif", 640)


def test_not_multipart_is_refused(api: Api) -> None:
    adv = api.approved_account()
    response = api.client.post(
        "/api/v1/media",
        headers=adv.headers,
        content=png(8, 8),
        params={},
    )
    assert response.status_code == 415
    missing = api.client.post(
        "/api/v1/media", headers=adv.headers, data={"kind": "image"}, files={"other": ("x.png", png(8, 8))}
    )
    assert missing.status_code == 422
    assert field_error(missing.json())["field"] == "file"
    bad_kind = upload(api, adv, png(8, 8), "x.png", kind="audio")
    assert (bad_kind["status"], field_error(bad_kind["body"])["field"]) == (422, "kind")
    bad_account = upload(api, adv, png(8, 8), "x.png", account_id="99999999999999999999")
    assert (bad_account["status"], field_error(bad_account["body"])["field"]) == (422, "account_id")


@pytest.fixture
def small_cap_client(settings: Settings) -> Iterator[TestClient]:
    capped = settings.model_copy(update={"max_upload_bytes": 4096})
    with TestClient(create_app(capped), raise_server_exceptions=False) as client:
        yield client


def test_upload_cap_is_enforced_while_streaming(api: Api, small_cap_client: TestClient, settings: Settings) -> None:
    adv = api.approved_account()
    big = png(200, 200, noise=True)
    assert len(big) > 4096

    def chunked() -> Iterator[bytes]:  # no Content-Length: the cap must hold while bytes arrive
        boundary = b"capboundary"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]
        yield b"\r\n--" + boundary + b"--\r\n"

    response = small_cap_client.post(
        "/api/v1/media",
        headers={**adv.headers, "Content-Type": "multipart/form-data; boundary=capboundary"},
        content=chunked(),
    )
    assert response.status_code == 413, response.text
    error = field_error(response.json())
    assert (error["field"], error["rule"], error["limit"]) == ("file", "max_size_bytes", 4096)
    assert error["actual"] > 4096
    assert not list((Path(settings.data_dir) / "media" / "staging").glob("*")), "partial upload left behind"

    # With a Content-Length the refusal comes before reading.
    declared = small_cap_client.post(
        "/api/v1/media", headers=adv.headers, files={"file": ("big.png", png(600, 600, noise=True))}
    )
    assert declared.status_code == 413
    assert field_error(declared.json())["limit"] == 4096

    small = small_cap_client.post("/api/v1/media", headers=adv.headers, files={"file": ("s.png", png(16, 16))})
    assert small.status_code == 201


def test_media_is_scoped_by_tenant(api: Api) -> None:
    admin = api.admin()
    owner = api.approved_account(admin)
    other = api.approved_account(admin)
    asset = upload(api, owner, png(84, 84), "icon.png")["body"]

    assert api.client.get(f"/api/v1/media/{asset['id']}", headers=other.headers).status_code == 404
    assert expect(api.client.get("/api/v1/media", headers=other.headers), 200)["total"] == 0
    mine = expect(api.client.get("/api/v1/media", headers=owner.headers), 200)
    assert [m["id"] for m in mine["items"]] == [asset["id"]]
    assert expect(api.client.get(f"/api/v1/media/{asset['id']}", headers=admin.headers), 200)["id"] == asset["id"]

    # Uploading into someone else's account answers like a missing account.
    assert owner.account_id is not None
    foreign = upload(api, other, png(84, 84), "icon.png", account_id=owner.account_id)
    assert foreign["status"] == 404
    assert api.client.get(f"/api/v1/media?account_id={owner.account_id}", headers=other.headers).status_code == 404


def test_agency_uploads_into_its_sub_account_and_filters(api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub_account = api.sub_account(agency, admin)
    image = upload(api, agency, png(84, 84), "icon.png", account_id=sub_account)
    assert (image["status"], image["body"]["account_id"]) == (201, sub_account)
    upload(api, agency, mp4(1.0), "v.mp4", account_id=sub_account)
    videos = expect(api.client.get(f"/api/v1/media?account_id={sub_account}&kind=video", headers=agency.headers), 200)
    assert [v["kind"] for v in videos["items"]] == ["video"]
    by_name = expect(api.client.get("/api/v1/media?q=icon", headers=agency.headers), 200)
    assert [m["id"] for m in by_name["items"]] == [image["body"]["id"]]

    log = expect(api.client.get("/api/v1/operation-logs?object_type=media_asset", headers=agency.headers), 200)
    assert log["total"] == 2
    created = {c["field"]: c["new"] for c in log["items"][-1]["changes"]}
    assert created["width"] == 84 and created["format"] == "png"


def test_identical_bytes_are_stored_once(api: Api, settings: Settings) -> None:
    admin = api.admin()
    first, second = api.approved_account(admin), api.approved_account(admin)
    content = png(120, 120)
    a = upload(api, first, content, "a.png")["body"]
    b = upload(api, second, content, "b.png")["body"]
    assert a["sha256"] == b["sha256"] and a["url"] != b["url"]
    stored = list((Path(settings.data_dir) / "media" / "assets").rglob("*"))
    assert len([p for p in stored if p.is_file()]) == 1


def test_service_upload_from_a_stream(api: Api, settings: Settings) -> None:
    from adstack.accounts import auth
    from adstack.accounts.models import User
    from adstack.media import service as media

    adv = api.approved_account()
    user = api.session.get(User, adv.user_id)
    assert user is not None
    principal = auth.principal_for(user, "console")
    asset = media.upload(
        api.session,
        principal,
        stream=io.BytesIO(jpeg(320, 50)),
        filename="b.jpg",
        media_dir=settings.media_dir,
        max_bytes=1 << 20,
    )
    assert (asset.format, asset.width, asset.height, asset.account_id) == ("jpeg", 320, 50, adv.account_id)
    assert media.file_path(asset, settings.media_dir).read_bytes()[:3] == b"\xff\xd8\xff"
