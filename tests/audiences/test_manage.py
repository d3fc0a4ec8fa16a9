"""Server-side URL imports, search and filters, tenancy, batch delete against ad group use, reach, the
operator lists, and exclusion beating inclusion at serving time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adstack.audiences import service
from adstack.audiences.ids import device_key
from adstack.core.settings import Settings
from tests.audiences.helpers import gaids, id_file, md5_hex, upload
from tests.campaigns.helpers import ad_group, campaign
from tests.support import Actor, Api, expect


class FileServer:
    """A plain HTTP server and a WebHDFS namenode that redirects to a datanode, both on loopback."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.declared_lengths: dict[str, int] = {}
        self.requests: list[str] = []
        files, requests, declared = self.files, self.requests, self.declared_lengths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                path, _, query = self.path.partition("?")
                if path.startswith("/webhdfs/v1/"):
                    assert "op=OPEN" in query.split("&")
                    self.send_response(307)
                    self.send_header("Location", "/datanode/" + path.removeprefix("/webhdfs/v1/"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                name = path.removeprefix("/datanode/").removeprefix("/")
                if name in declared:
                    self.send_response(200)
                    self.send_header("Content-Length", str(declared[name]))
                    self.end_headers()
                    return
                if name not in files:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(files[name])))
                self.end_headers()
                self.wfile.write(files[name])

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def file_server(settings: Settings) -> Iterator[FileServer]:
    # Imports refuse loopback unless the operator allows it: this stand-in lives there.
    settings.outbound_allowed_networks = "127.0.0.1/32"
    with FileServer() as server:
        yield server


def _import(api: Api, actor: Actor, url: str, expected: int = 201, **overrides: Any) -> Any:
    body = {"name": "Imported", "region_code": "RU", "id_type": "gaid", "url": url, **overrides}
    return expect(api.client.post("/api/v1/audiences/import", headers=actor.headers, json=body), expected)


def test_import_from_http_and_webhdfs_urls(api: Api, session: Session, file_server: FileServer) -> None:
    adv = api.approved_account()
    devices = gaids(1400)
    file_server.files["ids.txt"] = id_file(devices)
    file_server.files["user/ads/md5.txt"] = id_file(md5_hex(g) for g in devices)
    base = f"127.0.0.1:{file_server.port}"

    over_http = _import(api, adv, f"http://{base}/ids.txt")
    assert over_http["audience"]["size"] == 1400
    assert over_http["report"]["source"] == "url"
    assert over_http["report"]["source_name"] == f"http://{base}/ids.txt"
    over_hdfs = _import(
        api, adv, f"webhdfs://{base}/user/ads/md5.txt?user.name=ads", name="From HDFS", id_type="gaid_md5"
    )
    assert over_hdfs["audience"]["size"] == 1400
    assert over_hdfs["report"]["source_name"] == f"webhdfs://{base}/user/ads/md5.txt"
    assert "/webhdfs/v1/user/ads/md5.txt?op=OPEN&user.name=ads" in file_server.requests

    index = service.load_audience_index(session)
    ids = (over_http["audience"]["id"], over_hdfs["audience"]["id"])
    assert all(index.contains(a, device_key(devices[0])) for a in ids)

    file_server.files["more.txt"] = id_file(gaids(1000, seed=5))
    appended = expect(
        api.client.post(
            f"/api/v1/audiences/{ids[0]}/import",
            headers=adv.headers,
            json={"url": f"http://{base}/more.txt", "mode": "append"},
        ),
        200,
    )
    assert appended["audience"]["size"] == 2400


def test_url_imports_follow_the_upload_rules(api: Api, session: Session, file_server: FileServer) -> None:
    adv = api.approved_account()
    base = f"http://127.0.0.1:{file_server.port}"
    file_server.files["few.txt"] = id_file(gaids(999))
    file_server.declared_lengths["huge.txt"] = 65 * 1024 * 1024
    error = _import(api, adv, f"{base}/few.txt", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("url", "min_valid_ids")
    error = _import(api, adv, f"{base}/huge.txt", expected=413)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("url", "max_size_bytes")
    error = _import(api, adv, f"{base}/missing.txt", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("url", "fetchable")
    error = _import(api, adv, "ftp://127.0.0.1/ids.txt", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("url", "scheme")
    error = _import(api, adv, "http://169.254.169.254/latest/meta-data", expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("url", "fetchable")
    assert expect(api.client.get("/api/v1/audiences", headers=adv.headers), 200)["total"] == 0


def test_exclusion_beats_inclusion(api: Api, session: Session) -> None:
    adv = api.approved_account()
    devices = gaids(2500)
    payers = upload(api, adv, id_file(devices[:1500]), name="Payers")["audience"]["id"]
    churned = upload(api, adv, id_file(devices[1000:]), name="Churned")["audience"]["id"]
    index = service.load_audience_index(session)

    only_payer, both, only_churned = (device_key(devices[i]) for i in (100, 1200, 2000))
    stranger = device_key(gaids(1, seed=42)[0])
    assert index.matches([payers], [churned], only_payer)
    assert not index.matches([payers], [churned], both)  # in both: exclusion wins
    assert not index.matches([payers, churned], [churned], only_churned)
    assert not index.matches([payers], [churned], stranger)
    assert index.matches([], [churned], stranger)  # no inclusion named: everyone not excluded
    assert not index.matches([], [churned], both)
    assert not index.matches([999_999], [], only_payer)  # an unknown audience contains nobody
    batch = index.contains_many(payers, [only_payer, both, only_churned, stranger])
    assert set(batch) == {only_payer, both}

    reach = expect(
        api.client.get(
            "/api/v1/audiences/reach", headers=adv.headers, params={"include": [payers], "exclude": [churned]}
        ),
        200,
    )
    assert reach == {"size": 1000, "exact": True}
    assert index.reach([payers], [churned]) == 1000


def test_search_filter_and_tenancy(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    other = api.approved_account(admin)
    first = upload(api, adv, id_file(gaids(1000)), name="Lapsed payers", region_code="IN")["audience"]
    second = upload(
        api, adv, id_file(md5_hex(g) for g in gaids(1000)), name="Top spenders", id_type="gaid_md5", region_code="RU"
    )["audience"]
    upload(api, other, id_file(gaids(1000)), name="Lapsed payers")

    def names(**params: Any) -> list[str]:
        page = expect(api.client.get("/api/v1/audiences", headers=adv.headers, params=params), 200)
        return [a["name"] for a in page["items"]]

    assert names() == ["Top spenders", "Lapsed payers"]
    assert names(q="lapsed") == ["Lapsed payers"]
    assert names(q=str(second["id"])) == ["Top spenders"]
    assert names(region_code="RU") == ["Top spenders"]
    assert names(id_type="gaid") == ["Lapsed payers"]
    assert names(type="label") == []
    assert names(status="ready") == ["Top spenders", "Lapsed payers"]
    assert expect(api.client.get("/api/v1/audiences", headers=admin.headers), 200)["total"] == 3

    expect(api.client.get(f"/api/v1/audiences/{first['id']}", headers=other.headers), 404)
    expect(api.client.post("/api/v1/audiences/batch-delete", headers=other.headers, json={"ids": [first["id"]]}), 200)
    expect(api.client.get(f"/api/v1/audiences/{first['id']}", headers=adv.headers), 200)
    error = upload(api, adv, id_file(gaids(1000)), name="Lapsed payers", expected=409)["error"]
    assert error["fields"][0] == {
        "field": "name",
        "rule": "unique",
        "message": "unique within the account",
        "actual": "Lapsed payers",
    }


def test_batch_delete_refuses_audiences_enabled_ad_groups_use(api: Api, session: Session) -> None:
    adv = api.approved_account()
    used = upload(api, adv, id_file(gaids(1000, seed=1)), name="Used")["audience"]["id"]
    excluded = upload(api, adv, id_file(gaids(1000, seed=2)), name="Excluded")["audience"]["id"]
    free = upload(api, adv, id_file(gaids(1000, seed=3)), name="Free")["audience"]["id"]
    group = ad_group(
        api,
        adv,
        campaign(api, adv)["id"],
        targeting={"countries": ["ID"], "include_audience_ids": [used], "exclude_audience_ids": [excluded]},
    )
    assert group["status"] == "enabled"

    refused = expect(
        api.client.post("/api/v1/audiences/batch-delete", headers=adv.headers, json={"ids": [used, excluded, free]}),
        200,
    )
    assert refused["deleted"] == []
    assert {(f["id"], f["code"], tuple(f["ad_group_ids"])) for f in refused["failures"]} == {
        (used, "in_use", (group["id"],)),
        (excluded, "in_use", (group["id"],)),
    }
    checked = expect(
        api.client.post(
            "/api/v1/audiences/batch-delete", headers=adv.headers, json={"ids": [free], "validate_only": True}
        ),
        200,
    )
    assert checked["deleted"] == [free]
    expect(api.client.get(f"/api/v1/audiences/{free}", headers=adv.headers), 200)

    partial = expect(
        api.client.post(
            "/api/v1/audiences/batch-delete", headers=adv.headers, json={"ids": [used, free], "partial_failure": True}
        ),
        200,
    )
    assert partial["deleted"] == [free] and [f["id"] for f in partial["failures"]] == [used]
    expect(api.client.delete(f"/api/v1/audiences/{used}", headers=adv.headers), 409)
    # Paused, the ad group still targets them: re-enabled, it would exclude nobody and include nobody.
    expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers, json={"status": "paused"}), 200)
    expect(api.client.delete(f"/api/v1/audiences/{excluded}", headers=adv.headers), 409)
    expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers, json={"status": "enabled"}), 200)

    expect(
        api.client.patch(
            f"/api/v1/ad-groups/{group['id']}", headers=adv.headers, json={"targeting": {"countries": ["ID"]}}
        ),
        200,
    )
    done = expect(
        api.client.post("/api/v1/audiences/batch-delete", headers=adv.headers, json={"ids": [used, excluded]}), 200
    )
    assert done == {"deleted": [used, excluded], "failures": [], "validate_only": False}
    assert len(service.load_audience_index(session)) == 0
    log = expect(
        api.client.get(
            "/api/v1/operation-logs", headers=adv.headers, params={"object_type": "audience", "operation": "delete"}
        ),
        200,
    )
    assert sorted(e["object_id"] for e in log["items"]) == sorted([free, used, excluded])


def test_regions_and_package_categories_are_operator_editable(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    regions = expect(api.client.get("/api/v1/audiences/regions", headers=adv.headers), 200)
    assert {r["code"] for r in regions} == {"IN", "RU", "SG"}
    expect(
        api.client.post("/api/v1/audiences/regions", headers=adv.headers, json={"code": "ID", "name": "Indonesia"}), 403
    )
    added = expect(
        api.client.post("/api/v1/audiences/regions", headers=admin.headers, json={"code": "ID", "name": "Indonesia"}),
        201,
    )
    upload(api, adv, id_file(gaids(1000)), region_code="ID")
    expect(api.client.delete(f"/api/v1/audiences/regions/{added['id']}", headers=admin.headers), 409)

    expect(
        api.client.put(
            "/api/v1/audiences/package-categories",
            headers=adv.headers,
            json={"package": "com.example.game", "category": "games"},
        ),
        403,
    )
    row = expect(
        api.client.put(
            "/api/v1/audiences/package-categories",
            headers=admin.headers,
            json={"package": "com.example.game", "category": "games"},
        ),
        200,
    )
    again = expect(
        api.client.put(
            "/api/v1/audiences/package-categories",
            headers=admin.headers,
            json={"package": "com.example.game", "category": "puzzle"},
        ),
        200,
    )
    assert again["id"] == row["id"] and again["category"] == "puzzle"
    listed = expect(
        api.client.get("/api/v1/audiences/package-categories", headers=adv.headers, params={"category": "puzzle"}), 200
    )
    assert [r["package"] for r in listed] == ["com.example.game"]


def test_searches_take_percent_and_underscore_literally(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    for seed, name in enumerate(("50% off", "500 off", "win_back", "winxback"), start=1):
        upload(api, adv, id_file(gaids(1000, seed=seed)), name=name)

    def names(q: str) -> list[str]:
        page = expect(api.client.get("/api/v1/audiences", headers=adv.headers, params={"q": q}), 200)
        return sorted(a["name"] for a in page["items"])

    assert names("50%") == ["50% off"]
    assert names("n_b") == ["win_back"]
    assert names("%") == ["50% off"]

    for package in ("com.example.my_game", "com.example.myxgame"):
        body = {"package": package, "category": "games"}
        expect(api.client.put("/api/v1/audiences/package-categories", headers=admin.headers, json=body), 200)

    def packages(q: str) -> list[str]:
        rows = expect(api.client.get("/api/v1/audiences/package-categories", headers=adv.headers, params={"q": q}), 200)
        return [r["package"] for r in rows]

    assert packages("my_g") == ["com.example.my_game"]
    assert packages("%") == []


def test_refusals_name_the_field_the_rule_and_the_limit(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    uploaded = upload(api, adv, id_file(gaids(1000)), name="Payers")["audience"]["id"]
    group = ad_group(api, adv, campaign(api, adv)["id"],
                     targeting={"countries": ["ID"], "exclude_audience_ids": [uploaded]})
    error = expect(api.client.delete(f"/api/v1/audiences/{uploaded}", headers=adv.headers), 409)["error"]
    assert error["code"] == "in_use"
    assert [(f["field"], f["rule"], f["limit"], f["actual"]) for f in error["fields"]] == [
        ("audience_id", "in_use", [group["id"]], uploaded)
    ]

    error = expect(api.client.post(f"/api/v1/audiences/{uploaded}/refresh", headers=adv.headers), 409)["error"]
    assert error["code"] == "invalid_state"
    assert [(f["field"], f["rule"], f["limit"], f["actual"]) for f in error["fields"]] == [
        ("audience_id", "label_audience_only", "label", "uploaded")
    ]
    body = {"name": "Gamers", "region_code": "IN",
            "rule": {"conditions": [{"kind": "installed_apps", "packages": ["com.example.game"]}]}}
    label = expect(api.client.post("/api/v1/audiences/labels", headers=adv.headers, json=body), 201)["id"]
    error = expect(api.client.post(f"/api/v1/audiences/{label}/upload", headers=adv.headers, content=b"x"), 409)
    assert [(f["field"], f["rule"], f["limit"], f["actual"]) for f in error["error"]["fields"]] == [
        ("audience_id", "uploaded_audience_only", "uploaded", "label")
    ]

    regions = expect(api.client.get("/api/v1/audiences/regions", headers=adv.headers), 200)
    (singapore,) = [r["id"] for r in regions if r["code"] == "SG"]
    error = expect(api.client.delete(f"/api/v1/audiences/regions/{singapore}", headers=admin.headers), 409)["error"]
    assert [(f["field"], f["rule"], f["actual"]) for f in error["fields"]] == [("region_id", "in_use", 1)]

    # An agency naming an account that is not its own: the same 404 as a missing account, naming the field.
    agency = api.approved_account(admin, type="agency")
    for account_id in (adv.account_id, 999_999):
        error = upload(api, agency, id_file(gaids(1000)), name="Theirs", account_id=account_id, expected=404)["error"]
        assert error["fields"] == [{"field": "account_id", "rule": "exists", "message": f"account {account_id} not "
                                    "found", "actual": account_id}]
