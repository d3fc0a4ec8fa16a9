from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adstack.core.db import make_session_factory


@pytest.fixture
def session_factory(db: Engine) -> sessionmaker[Session]:
    return make_session_factory(db)
