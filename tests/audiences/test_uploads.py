"""Uploaded audiences over HTTP: streamed files, validation reports, refusals that leave nothing behind,
append and reduce, and the membership serving sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.audiences import service
from adstack.audiences.ids import device_key, sha256_device_key
from adstack.audiences.models import Audience, AudienceSegment, AudienceUpload
from adstack.core.settings import Settings
from tests.audiences.helpers import change, gaids, id_file, md5_hex, sha256_hex, upload
from tests.support import Api, expect, run_async

MB = 1024 * 1024


def _audience_rows(session: Session) -> tuple[int, int, int]:
    session.expire_all()
    return tuple(
        session.scalar(select(func.count()).select_from(t)) or 0  # type: ignore[return-value]
        for t in (Audience, AudienceSegment, AudienceUpload)
    )


def _files(root: Path) -> list[Path]:
    """Files an upload could leave; the event log and store (locks made as the pipeline starts) and the mail
    outbox (sign-up mail) are not its own."""
    others = (root / "events", root / "outbox")
    return (
        sorted(p for p in root.rglob("*") if p.is_file() and not any(o in p.parents for o in others))
        if root.exists()
        else []
    )


def test_raw_and_md5_files_of_the_same_devices_target_the_same_requests(api: Api, session: Session) -> None:
    adv = api.approved_account()
    devices = gaids(1500)
    # Advertisers' exports differ in case and whitespace; both normalise to the same devices.
    raw = upload(api, adv, id_file(f" {g.upper()}\r" if i % 2 else g for i, g in enumerate(devices)), name="Raw")
    md5 = upload(api, adv, id_file(md5_hex(g) for g in devices), name="Hashed", id_type="gaid_md5")
    sha = upload(api, adv, id_file(sha256_hex(g) for g in devices), name="Sha", id_type="sha256")
    assert raw["audience"]["size"] == md5["audience"]["size"] == sha["audience"]["size"] == 1500
    raw_id, md5_id, sha_id = (out["audience"]["id"] for out in (raw, md5, sha))

    index = service.load_audience_index(session)
    requests = [*devices[:300], *gaids(300, seed=99)]
    for gaid in requests:
        key = device_key(gaid)
        member = gaid in devices[:300]
        assert index.contains(raw_id, key) is member
        assert index.contains(md5_id, key) is member
        assert index.matches([raw_id], [], key) is index.matches([md5_id], [], key) is member
        assert index.contains(sha_id, key, sha256_device_key(gaid)) is member


def test_raw_gaids_are_never_stored(api: Api, session: Session, settings: Settings, database_url: str) -> None:
    adv = api.approved_account()
    devices = gaids(1200, seed=7)
    upload(api, adv, id_file(devices))
    if database_url.startswith("sqlite"):
        database_file = Path(database_url.removeprefix("sqlite:///"))
        stored = b"".join(p.read_bytes() for p in database_file.parent.glob(database_file.name + "*"))
        assert not any(g.encode() in stored for g in devices[:50])
        assert md5_hex(devices[0]).encode() not in stored  # not even the digest as text: only bitmaps
    assert not any(g.encode() in p.read_bytes() for p in _files(settings.data_dir) for g in devices[:50])


def test_validation_report_lists_invalid_examples_and_duplicates(api: Api) -> None:
    adv = api.approved_account()
    devices = gaids(1100)
    lines = [*devices, devices[5], devices[6].upper(), "", "not-a-gaid", "00000000-0000-0000-0000-000000000000"]
    report = upload(api, adv, id_file(lines), filename="payers.txt")["report"]
    assert {
        k: report[k]
        for k in (
            "lines",
            "valid_lines",
            "invalid_lines",
            "blank_lines",
            "duplicate_lines",
            "distinct_ids",
            "changed",
            "size_after",
            "source_name",
        )
    } == {
        "lines": 1105,
        "valid_lines": 1102,
        "invalid_lines": 2,
        "blank_lines": 1,
        "duplicate_lines": 2,
        "distinct_ids": 1100,
        "changed": 1100,
        "size_after": 1100,
        "source_name": "payers.txt",
    }
    assert [e["line"] for e in report["invalid_examples"]] == [1104, 1105]
    assert "limits ad tracking" in report["invalid_examples"][1]["reason"]


def test_999_valid_ids_are_refused_and_nothing_is_left(api: Api, session: Session) -> None:
    adv = api.approved_account()
    error = upload(api, adv, id_file([*gaids(999), "bad line"]), expected=422)["error"]
    assert error["fields"][0]["field"] == "file"
    assert error["fields"][0]["rule"] == "min_valid_ids"
    assert (error["fields"][0]["limit"], error["fields"][0]["actual"]) == (1000, 999)
    assert error["report"]["invalid_examples"][0]["value"] == "bad line"
    assert _audience_rows(session) == (0, 0, 0)
    assert upload(api, adv, id_file(gaids(1000)))["audience"]["size"] == 1000


def test_wrong_type_binary_and_misnamed_files_get_clear_4xx(api: Api, session: Session) -> None:
    adv = api.approved_account()
    devices = gaids(1200)
    error = upload(api, adv, id_file(md5_hex(g) for g in devices), id_type="gaid", expected=422)["error"]
    # 32 hex digits may be MD5 digests or GAIDs without hyphens: the refusal says both, not "choose MD5".
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("id_type", "md5_or_bare_gaid")
    assert "without hyphens" in error["message"]
    bare = upload(api, adv, id_file(g.replace("-", "") for g in devices), id_type="gaid", expected=422)["error"]
    assert bare["fields"][0]["rule"] == "md5_or_bare_gaid"
    error = upload(api, adv, id_file(sha256_hex(g) for g in devices), id_type="gaid", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("id_type", "matches_file")
    error = upload(api, adv, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 5000, expected=415)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("file", "text_file")
    error = upload(api, adv, id_file(devices), filename="ids.csv", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("filename", "file_extension")
    error = upload(api, adv, id_file(devices), region_code="XX", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("region_code", "known_region")
    assert _audience_rows(session) == (0, 0, 0)


def test_a_65_mb_file_is_refused_mid_stream_and_nothing_is_left(api: Api, session: Session, settings: Settings) -> None:
    """Streamed to the app chunk by chunk (the ASGI transport does not buffer the body): the server stops
    reading once the cap is passed and answers 413, long before the client has sent 65 MB."""
    adv = api.approved_account()
    files_before = _files(settings.data_dir)
    head = id_file(gaids(2000))
    # Then lines the reader counts as invalid without per-line work, to keep the test fast; the cap
    # counts bytes whatever they hold.
    block = id_file(["z" * 36] * 4096)
    produced = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        produced += len(head)
        yield head
        while produced < 65 * MB:
            produced += len(block)
            yield block

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post(
                "/api/v1/audiences/upload",
                headers=adv.headers,
                content=body(),
                params={"name": "Too big", "region_code": "IN", "id_type": "gaid"},
            )

    response = run_async(send)
    error = expect(response, 413)["error"]
    assert error["fields"][0] == {
        "field": "file",
        "rule": "max_size_bytes",
        "limit": 64 * MB,
        "actual": error["fields"][0]["actual"],
    }
    assert 64 * MB < produced <= 64 * MB + 2 * len(block) < 65 * MB
    assert _audience_rows(session) == (0, 0, 0)
    assert _files(settings.data_dir) == files_before


def test_declared_oversize_is_refused_before_reading(api: Api) -> None:
    adv = api.approved_account()
    response = api.client.post(
        "/api/v1/audiences/upload",
        headers={**adv.headers, "Content-Length": str(65 * MB)},
        params={"name": "Big", "region_code": "IN", "id_type": "gaid"},
        content=b"x",
    )
    assert expect(response, 413)["error"]["fields"][0]["rule"] == "max_size_bytes"


def test_multipart_form_upload(api: Api) -> None:
    adv = api.approved_account()
    response = api.client.post(
        "/api/v1/audiences/upload",
        headers=adv.headers,
        params={"name": "Form", "region_code": "RU", "id_type": "gaid"},
        data={"note": "ignored"},
        files={"file": ("ids.txt", id_file(gaids(1300)))},
    )
    assert expect(response, 201)["audience"]["size"] == 1300
    response = api.client.post(
        "/api/v1/audiences/upload",
        headers=adv.headers,
        params={"name": "Form2", "region_code": "RU", "id_type": "gaid"},
        files={"other": ("ids.txt", id_file(gaids(1300)))},
    )
    assert expect(response, 422)["error"]["fields"][0]["rule"] == "required"


def test_a_form_parts_own_filename_must_be_txt_and_is_recorded(api: Api, session: Session) -> None:
    adv = api.approved_account()

    def form(path: str, part_filename: str, expected: int, **params: str) -> Any:
        response = api.client.post(path, headers=adv.headers, params=params,
                                   files={"file": (part_filename, id_file(gaids(1000, seed=len(part_filename))))})
        return expect(response, expected)

    create = {"name": "Form", "region_code": "SG", "id_type": "gaid"}
    error = form("/api/v1/audiences/upload", "ids.csv", 422, **create)["error"]
    assert error["fields"][0] == {"field": "file", "rule": "file_extension", "message": "upload a .txt file",
                                  "limit": ".txt", "actual": "ids.csv"}
    assert _audience_rows(session) == (0, 0, 0)
    created = form("/api/v1/audiences/upload", "payers.TXT", 201, **create)
    assert created["report"]["source_name"] == "payers.TXT"

    path = f"/api/v1/audiences/{created['audience']['id']}/upload"
    error = form(path, "more.xlsx", 422, mode="append")["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("file", "file_extension")
    assert form(path, "more-payers.txt", 200, mode="append")["report"]["source_name"] == "more-payers.txt"
    # The filename parameter, when sent, names the file and is checked the same way.
    named = form(path, "more3.txt", 200, mode="append", filename="export-3.txt")
    assert named["report"]["source_name"] == "export-3.txt"


def test_a_thousand_lines_of_one_id_are_refused_as_one_device(api: Api, session: Session) -> None:
    # Source: Mi Ads usage guide, 6.1.1: imports "can't be less than 1000" ids; duplicates are one device each.
    adv = api.approved_account()
    one = gaids(1)[0]
    error = upload(api, adv, id_file([one] * 1000), expected=422)["error"]
    assert error["fields"][0]["field"] == "file" and error["fields"][0]["rule"] == "min_valid_ids"
    assert (error["fields"][0]["limit"], error["fields"][0]["actual"]) == (1000, 1)
    assert (error["report"]["valid_lines"], error["report"]["distinct_ids"]) == (1000, 1)
    assert _audience_rows(session) == (0, 0, 0)
    audience_id = upload(api, adv, id_file(gaids(1000)))["audience"]["id"]
    error = change(api, adv, audience_id, id_file([one] * 1000), mode="append", expected=422)["error"]
    assert (error["fields"][0]["rule"], error["fields"][0]["actual"]) == ("min_valid_ids", 1)


def test_append_and_reduce_with_later_files(api: Api, session: Session) -> None:
    adv = api.approved_account()
    first, second = gaids(1500, seed=1), gaids(1200, seed=2)
    created = upload(api, adv, id_file(first))["audience"]
    audience_id = created["id"]
    appended = change(api, adv, audience_id, id_file([*second, *first[:300]]), mode="append")
    assert appended["audience"]["size"] == 2700
    assert appended["report"]["changed"] == 1200
    assert appended["audience"]["version"] == created["version"] + 1
    reduced = change(api, adv, audience_id, id_file(first[:1000]), mode="reduce")
    assert reduced["audience"]["size"] == 1700
    assert reduced["report"]["changed"] == 1000

    index = service.load_audience_index(session)
    assert not index.contains(audience_id, device_key(first[0]))
    assert index.contains(audience_id, device_key(first[1200]))
    assert index.contains(audience_id, device_key(second[0]))
    assert service.audience_size(session, audience_id) == 1700 == index.size(audience_id)

    # The guide's minimum of 1,000 ids is for imports: ten devices are too few to append, not to remove.
    error = change(api, adv, audience_id, id_file(second[:10]), mode="append", expected=422)["error"]
    assert error["fields"][0]["rule"] == "min_valid_ids" and error["fields"][0]["limit"] == 1000
    opted_out = change(api, adv, audience_id, id_file(first[1200:1210]), mode="reduce")
    assert opted_out["audience"]["size"] == 1690 and opted_out["report"]["changed"] == 10
    assert not service.load_audience_index(session).contains(audience_id, device_key(first[1200]))
    error = change(api, adv, audience_id, b"not an id\n", mode="reduce", expected=422)["error"]
    assert error["fields"][0]["rule"] == "min_valid_ids" and error["fields"][0]["limit"] == 1
    reports = expect(api.client.get(f"/api/v1/audiences/{audience_id}/uploads", headers=adv.headers), 200)
    assert [(r["mode"], r["size_after"]) for r in reports] == [("create", 1500), ("append", 2700), ("reduce", 1700),
                                                               ("reduce", 1690)]
    log = expect(api.client.get("/api/v1/operation-logs", headers=adv.headers, params={"object_type": "audience"}), 200)
    assert [e["operation"] for e in log["items"]] == ["update", "update", "update", "create"]


def test_an_index_reload_reuses_unchanged_audiences(api: Api, session: Session) -> None:
    adv = api.approved_account()
    a = upload(api, adv, id_file(gaids(1000, seed=1)), name="A")["audience"]["id"]
    b = upload(api, adv, id_file(gaids(1000, seed=2)), name="B")["audience"]["id"]
    first = service.load_audience_index(session)
    change(api, adv, b, id_file(gaids(1000, seed=3)), mode="append")
    session.expire_all()
    second = service.load_audience_index(session, previous=first)
    assert second.get(a) is first.get(a)
    assert second.size(b) == 2000 and first.size(b) == 1000
