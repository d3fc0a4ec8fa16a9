"""A request's place at the database gate is given back while its upload body arrives (deps.without_session):
as many slow uploads as there are places no longer lock every other tenant out."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session

from adstack.app import create_app
from adstack.core.settings import Settings
from tests.core.live_server import serving
from tests.media.samples import png
from tests.support import Api, expect

MEDIA_HEAD = ("POST /api/v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
              "Content-Type: multipart/form-data; boundary=BB\r\nContent-Length: 1000000\r\n\r\n"
              "--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n")
AUDIENCE_HEAD = ("POST /api/v1/audiences/upload?name=slow&region_code=RU&id_type=gaid HTTP/1.1\r\nHost: x\r\n"
                 "Authorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
                 "0123")


def test_slow_uploads_leave_the_api_to_other_tenants(settings: Settings, session: Session) -> None:
    live = settings.model_copy(update={"db_pool_size": 3, "db_pool_timeout_s": 1.0})
    with serving(create_app(live)) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        api = Api(client, session)  # type: ignore[arg-type]
        admin = api.admin()
        attacker, victim = api.approved_account(admin), api.approved_account(admin)
        address = urlsplit(base_url)
        stalls = []
        for head in (MEDIA_HEAD, MEDIA_HEAD, AUDIENCE_HEAD):
            stall = socket.create_connection((address.hostname, address.port))
            stall.sendall(head.format(token=attacker.token).encode())
            stalls.append(stall)  # ...and the rest of the body never comes
        time.sleep(1)
        try:
            for path in ("/api/v1/media", "/api/v1/audiences"):
                answer = client.get(path, headers=victim.headers, timeout=5)
                assert answer.status_code == 200, answer.text
        finally:
            for stall in stalls:
                stall.close()
        # A body that does arrive is still stored: the request takes its place again to store it.
        stored = expect(client.post("/api/v1/media", headers=attacker.headers,  # type: ignore[arg-type]
                                    files={"file": ("a.png", png(3, 2), "image/png")}), 201)
        assert (stored["width"], stored["height"]) == (3, 2)
