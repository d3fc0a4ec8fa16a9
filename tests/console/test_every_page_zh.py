"""Every console page for every role in Chinese: the checks of `test_every_page`, in a module of its own so
the suite's workers run the two languages side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.console.test_every_page import check_every_page
from tests.support import Api

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_every_page_for_every_role_in_chinese(
    api: Api, session: Session, playwright_browser: Any, live_server: str, screenshots: Path
) -> None:
    check_every_page(api, session, playwright_browser, live_server, screenshots, "zh")
