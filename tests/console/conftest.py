"""Browser fixtures: a real uvicorn server on a free port, for Debian's Chromium (`playwright_browser`, in
tests/conftest.py) to open."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from adstack.app import create_app
from adstack.console.api import VENDOR_DIR, missing_vendor_assets
from adstack.core.settings import Settings

# Screenshots of every page, in both languages (git-ignored).
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The whole application, served by uvicorn in a thread, against the test database."""
    # Without htmx and Chart.js (git-ignored, installed by scripts/setup.sh) the pages answer, but what their
    # scripts draw never comes: a test would wait out its whole timeout and blame the page.
    if missing := missing_vendor_assets():
        pytest.fail(f"the console's browser assets are not installed ({', '.join(missing)} missing under "
                    f"{VENDOR_DIR}): run scripts/setup.sh", pytrace=False)
    port = _free_port()
    live = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    server = uvicorn.Server(
        uvicorn.Config(create_app(live), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="console-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    folder = SCREENSHOT_DIR / os.environ.get("ADSTACK_SCREENSHOT_RUN", "latest")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
